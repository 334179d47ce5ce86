//! The pure-Rust version of the Python benchmark loop (`benches/bench_cluster.py`), with the same
//! methodology as its `python benches/bench_cluster.py` table: a 3-node in-memory cluster commits
//! 128-byte entries in proposal batches of 1, 64 and 1024; each round commits a fixed number of
//! entries, storages are compacted between rounds (untimed), and the median round is reported.
//! Raft and Multi-Paxos run the same loop, one after the other.
//!
//! cargo run --release -p consensus-core --example cluster_loop [seconds_per_batch_size] [raft|paxos|all] [batch size]
//!     [--leader]   (a batch is done once the leader applied it, not once every node did)

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

fn run<N: cluster::BenchProtocol>(seconds: f64, block: &[u8], batch: usize, until_leader_applied: bool) {
    let mut cluster = cluster::Cluster::<N>::new(3);
    cluster.until_leader_applied = until_leader_applied;
    let batches = (entries_per_round(batch) / batch) as u64;
    // Warm-up round.
    cluster::timed_batches(&mut cluster, block, batch, ENTRY_BYTES, batches);
    let mut rates = Vec::new();
    let (messages_before, ticks_before) = (cluster.messages, cluster.ticks);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || rates.len() < 5 {
        cluster.compact();
        let elapsed = cluster::timed_batches(&mut cluster, block, batch, ENTRY_BYTES, batches);
        rates.push(entries_per_round(batch) as f64 / elapsed.as_secs_f64());
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let proposals = (rates.len() * entries_per_round(batch) / batch) as f64;
    println!(
        "{:>8} {:>6} {:>16.0} {:>16.0} {:>7} {:>13.2} {:>13.2}",
        N::NAME,
        batch,
        rates[rates.len() / 2],
        rates[rates.len() - 1],
        rates.len(),
        (cluster.messages - messages_before) as f64 / proposals,
        (cluster.ticks - ticks_before) as f64 / proposals,
    );
}

fn main() {
    let flags: Vec<String> = std::env::args().skip(1).filter(|a| a.starts_with("--")).collect();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let until_leader_applied = flags.iter().any(|f| f == "--leader");
    let seconds: f64 = args.first().map(|s| s.parse().expect("seconds")).unwrap_or(3.0);
    let only = args.get(1).filter(|p| p.as_str() != "all");
    let runs = |name: &str| only.is_none_or(|o| o == name);
    let block = cluster::payload_block(1024, ENTRY_BYTES);
    println!(
        "{:>8} {:>6} {:>16} {:>16} {:>7} {:>13} {:>13}",
        "protocol", "batch", "median entries/s", "best entries/s", "rounds", "msgs/proposal", "ticks/proposal"
    );
    let sizes: Vec<usize> = match args.get(2) {
        Some(size) => vec![size.parse().expect("batch size")],
        None => vec![1, 64, 1024],
    };
    for batch in sizes {
        if runs("raft") {
            run::<cluster::RaftBench>(seconds, &block, batch, until_leader_applied);
        }
        if runs("paxos") {
            run::<cluster::PaxosBench>(seconds, &block, batch, until_leader_applied);
        }
    }
}
