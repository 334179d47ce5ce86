//! The pure-Rust version of the Python benchmark loop (`benches/bench_cluster.py`), with the same
//! methodology as its `python benches/bench_cluster.py` table: a 3-node in-memory cluster commits
//! 128-byte entries in proposal batches of 1, 64 and 1024; each round commits a fixed number of
//! entries, storages are compacted between rounds (untimed), and the median round is reported.
//!
//! cargo run --release -p consensus-core --example cluster_loop [seconds_per_batch_size]

use std::time::Instant;

#[path = "../benches/support/cluster.rs"]
mod cluster;

const ENTRY_BYTES: usize = 128;

/// Entries committed per round, per batch size (the same constants as bench_cluster.py).
fn entries_per_round(batch: usize) -> usize {
    if batch == 1 {
        2_048
    } else {
        16_384
    }
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).map(|s| s.parse().expect("seconds")).unwrap_or(3.0);
    let block = cluster::payload_block(1024, ENTRY_BYTES);
    println!("{:>6} {:>16} {:>16} {:>7}", "batch", "median entries/s", "best entries/s", "rounds");
    for batch in [1usize, 64, 1024] {
        let mut cluster = cluster::Cluster::new(3);
        let batches = (entries_per_round(batch) / batch) as u64;
        // Warm-up round.
        cluster::timed_batches(&mut cluster, &block, batch, ENTRY_BYTES, batches);
        let mut rates = Vec::new();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds || rates.len() < 5 {
            cluster.compact();
            let elapsed = cluster::timed_batches(&mut cluster, &block, batch, ENTRY_BYTES, batches);
            rates.push(entries_per_round(batch) as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{:>6} {:>16.0} {:>16.0} {:>7}", batch, rates[rates.len() / 2], rates[rates.len() - 1], rates.len());
    }
}
