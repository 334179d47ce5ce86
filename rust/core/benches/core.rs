//! Criterion benchmarks of the cores: the Raft and Multi-Paxos wire codecs, quorum arithmetic, the
//! log, and the full Ready cycle of a 3-node in-memory cluster of each protocol (the pure-Rust twin
//! of `benches/bench_cluster.py`).
//!
//! `cargo bench -p consensus-core` (release profile); one group: `cargo bench -p consensus-core -- cluster`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use consensus_core::paxos;
use consensus_core::raft::log::RaftLog;
use consensus_core::raft::quorum::MajorityConfig;
use consensus_core::raft::storage::MemStorage;
use consensus_core::raft::{wire, Entry, EntryKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/cluster.rs"]
mod cluster;

/// The entry size of every published number.
const ENTRY_BYTES: usize = 128;

fn codec(c: &mut Criterion) {
    let message = wire::bench_append_entries_message(64, ENTRY_BYTES);
    let frame = wire::encode(&message);
    let mut group = c.benchmark_group("codec/append_entries_64x128");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| b.iter(|| wire::encode(black_box(&message))));
    group.bench_function("decode", |b| b.iter(|| wire::decode(black_box(&frame)).expect("decodes")));
    group.bench_function("encode+decode", |b| {
        b.iter(|| wire::decode(&wire::encode(black_box(&message))).expect("decodes"))
    });
    group.finish();
}

fn quorum(c: &mut Criterion) {
    let mut group = c.benchmark_group("quorum/committed_index");
    for voters in [3u64, 5, 7] {
        let config = MajorityConfig::new(1..=voters);
        // Acknowledged indexes all different, in an order the sort has to work on.
        let acked: Vec<u64> = (1..=voters).map(|id| 1_000 + (id * 7919) % 97).collect();
        group.bench_with_input(BenchmarkId::from_parameter(voters), &config, |b, config| {
            b.iter(|| black_box(config).committed_index(|id| Some(acked[(id - 1) as usize])))
        });
    }
    group.finish();
}

fn log_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/append+stable_to");
    let payload = Bytes::from(vec![0x5a; ENTRY_BYTES]);
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            // One log per sample; each iteration appends one batch at the tail and marks it stable
            // (the log's unstable tail is drained, so its length stays bounded).
            let mut log = RaftLog::new(MemStorage::new());
            let mut next_index = log.last_index() + 1;
            b.iter(|| {
                let entries: Vec<Entry> = (0..batch as u64)
                    .map(|i| Entry::new(next_index + i, 1, EntryKind::Normal, payload.clone()))
                    .collect();
                let last = log.append(&entries);
                log.stable_to(last, 1);
                next_index = last + 1;
                last
            })
        });
    }
    group.finish();
}

fn cluster_ready_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster3/commit_128B");
    group.measurement_time(Duration::from_secs(5));
    let block = cluster::payload_block(1024, ENTRY_BYTES);
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        bench_protocol::<cluster::RaftBench>(&mut group, &block, batch);
        bench_protocol::<cluster::PaxosBench>(&mut group, &block, batch);
    }
    group.finish();
}

fn bench_protocol<N: cluster::BenchProtocol>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    block: &[u8],
    batch: usize,
) {
    let mut cluster = cluster::Cluster::<N>::new(3);
    group.bench_with_input(BenchmarkId::new(N::NAME, batch), &batch, |b, &batch| {
        b.iter_custom(|iters| cluster::timed_batches(&mut cluster, block, batch, ENTRY_BYTES, iters))
    });
}

fn paxos_codec(c: &mut Criterion) {
    let slots: Vec<paxos::AcceptedSlot> = (1..=64)
        .map(|slot| paxos::AcceptedSlot {
            slot,
            ballot: paxos::Ballot::new(3, 1),
            value: paxos::Value::batch(3, vec![Bytes::from(vec![0x5a; ENTRY_BYTES])]),
        })
        .collect();
    let message = paxos::Message {
        msg_type: paxos::MessageType::Accept,
        from: 1,
        to: 2,
        ballot: paxos::Ballot::new(3, 1),
        commit: 10,
        entries: slots,
        ..Default::default()
    };
    let frame = paxos::wire::encode(&message);
    let mut group = c.benchmark_group("codec/paxos_accept_64x128");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| b.iter(|| paxos::wire::encode(black_box(&message))));
    group.bench_function("decode", |b| b.iter(|| paxos::wire::decode(black_box(&frame)).expect("decodes")));
    group.finish();
}

criterion_group!(benches, codec, paxos_codec, quorum, log_append, cluster_ready_cycle);
criterion_main!(benches);
