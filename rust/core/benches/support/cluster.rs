//! The 3-node in-memory cluster loop shared by the criterion bench (`benches/core.rs`) and the
//! `cluster_loop` example. It is the pure-Rust twin of the loop in `benches/bench_cluster.py`:
//! propose a batch on the leader, then, until every node has applied it, for each node with a
//! Ready: persist it into that node's `MemStorage` (append entries, set hard state), deliver its
//! encoded frames with `step(&Bytes)`, count its committed entries, `advance(rd.mark())`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use consensus_core::raft::{Config, RawNode};
use consensus_core::storage::MemStorage;
use consensus_core::Role;

/// Upper bound on Ready rounds without progress before the loop declares the cluster stuck.
const IDLE_ROUNDS_MAX: u32 = 1_000;

pub struct Cluster {
    /// `nodes[i]` is node `i + 1`; `storages[i]` is the storage it was built on (shared handle).
    pub nodes: Vec<RawNode<MemStorage>>,
    pub storages: Vec<MemStorage>,
}

impl Cluster {
    /// `size` voters with node 1 elected leader and one entry already committed everywhere.
    pub fn new(size: u64) -> Cluster {
        let voters: Vec<u64> = (1..=size).collect();
        let mut nodes = Vec::new();
        let mut storages = Vec::new();
        for &id in &voters {
            let storage = MemStorage::new();
            let config = Config { seed: id, ..Config::default() };
            let node = RawNode::new(id, config, storage.clone(), &voters, &[], 0).expect("valid config");
            // What the Python binding does on a fresh storage: record the bootstrap configuration.
            storage.wl().set_conf_state(0, node.raft.conf_state());
            nodes.push(node);
            storages.push(storage);
        }
        let mut cluster = Cluster { nodes, storages };
        cluster.nodes[0].campaign();
        cluster.settle();
        assert_eq!(cluster.nodes[0].raft.role, Role::Leader);
        // Commit the leader's empty entry (and one payload) before anything is measured.
        cluster.nodes[0].propose(Bytes::from_static(b"warm-up")).expect("propose");
        cluster.settle();
        let last = cluster.nodes[0].raft.log.last_index();
        assert!(cluster.nodes.iter().all(|n| n.raft.log.applied == last), "warm-up entry not applied everywhere");
        cluster
    }

    /// One pass over the nodes: each node with a Ready is persisted, sent, counted, advanced.
    /// Returns the committed entries handed out in this pass.
    #[inline]
    fn pass(&mut self) -> usize {
        let mut committed = 0;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].has_ready() {
                continue;
            }
            let rd = self.nodes[i].ready().expect("ready");
            {
                let mut core = self.storages[i].wl();
                core.append(&rd.entries).expect("append");
                if let Some(hard_state) = rd.hard_state {
                    core.set_hard_state(hard_state);
                }
            }
            for (to, frame) in &rd.messages {
                self.nodes[(*to - 1) as usize].step(frame).expect("step");
            }
            committed += rd.committed_entries.len();
            self.nodes[i].advance(rd.mark()).expect("advance");
        }
        committed
    }

    /// Runs passes until no node has a Ready.
    pub fn settle(&mut self) {
        while self.nodes.iter().any(|n| n.has_ready()) {
            self.pass();
        }
    }

    /// Proposes `batch` on the leader and runs the Ready loop until every node applied it.
    pub fn commit_batch(&mut self, batch: Vec<Bytes>) {
        let mut pending = batch.len() * self.nodes.len();
        self.nodes[0].propose_many(batch).expect("propose");
        let mut idle_rounds = 0;
        while pending > 0 {
            let committed = self.pass();
            pending = pending.checked_sub(committed).expect("a node applied more than was proposed");
            idle_rounds = if committed == 0 { idle_rounds + 1 } else { 0 };
            assert!(idle_rounds < IDLE_ROUNDS_MAX, "cluster stuck with {pending} entries pending");
        }
    }

    /// Drops every node's applied log prefix from its storage (never timed: it only bounds the
    /// memory of long runs).
    pub fn compact(&mut self) {
        for (node, storage) in self.nodes.iter().zip(&self.storages) {
            let applied = node.raft.log.applied;
            if applied > storage.rl().first_index() {
                storage.wl().compact(applied, Bytes::new()).expect("compact");
            }
        }
    }
}

/// A proposal batch of `count` entries of `entry_bytes` bytes, built the way the binding builds
/// one from a 2-D NumPy array: one copy of the whole block, then one zero-copy slice per row.
pub fn make_batch(block: &[u8], count: usize, entry_bytes: usize) -> Vec<Bytes> {
    let whole = Bytes::copy_from_slice(&block[..count * entry_bytes]);
    (0..count).map(|r| whole.slice(r * entry_bytes..(r + 1) * entry_bytes)).collect()
}

/// The payload block every batch is cut from (deterministic, not all one byte value).
pub fn payload_block(count: usize, entry_bytes: usize) -> Vec<u8> {
    (0..count * entry_bytes).map(|i| (i * 31 + 7) as u8).collect()
}

/// Commits `batches` batches of `batch` entries, compacting (untimed) every `compact_every`
/// batches. Returns the time spent in `commit_batch` (proposal construction included).
pub fn timed_batches(cluster: &mut Cluster, block: &[u8], batch: usize, entry_bytes: usize, batches: u64) -> Duration {
    let compact_every = (65_536 / batch as u64).max(1);
    let mut total = Duration::ZERO;
    for i in 0..batches {
        if i % compact_every == compact_every - 1 {
            cluster.compact();
        }
        let start = Instant::now();
        cluster.commit_batch(make_batch(block, batch, entry_bytes));
        total += start.elapsed();
    }
    total
}
