//! The 3-node in-memory cluster loop shared by the criterion bench (`benches/core.rs`) and the
//! `cluster_loop` example, for Raft and for Multi-Paxos. It is the pure-Rust twin of the loop in
//! `benches/bench_cluster.py`: propose a batch on the leader, then, until every node has applied
//! it, for each node with a Ready: persist it into that node's `MemStorage`, deliver its encoded
//! frames with `step(&Bytes)`, count its committed entries, `advance(rd.mark())`. When no node has
//! a Ready and followers still lag, the leader gets one heartbeat tick: Raft never needs it (its
//! leader broadcasts a new commit index at once); a Paxos leader piggybacks the decide point on
//! its next Accept and sends it on its own only on a heartbeat.

use consensus_core::ProtocolNode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use consensus_core::paxos::PaxosStorage;
use consensus_core::raft::storage::MemStorage;
use consensus_core::{paxos, raft, Role};

/// Upper bound on Ready rounds without progress before the loop declares the cluster stuck.
const IDLE_ROUNDS_MAX: u32 = 1_000;

/// What the loop needs of one node (with its storage) of either protocol.
pub trait BenchNode: Sized {
    const NAME: &'static str;
    /// The members of a new `size`-node cluster, unelected.
    fn cluster(size: u64) -> Vec<Self>;
    fn campaign(&mut self);
    fn role(&self) -> Role;
    fn propose_many(&mut self, batch: Vec<Bytes>);
    fn tick(&mut self);
    fn has_ready(&self) -> bool;
    /// Takes the Ready, persists it, advances; returns its messages and its committed entries.
    fn cycle(&mut self) -> (Vec<(u64, Bytes)>, usize);
    fn step(&mut self, frame: &Bytes);
    fn applied(&self) -> u64;
    fn commit(&self) -> u64;
    /// Drops the applied prefix from the storage.
    fn compact(&mut self);
}

pub struct RaftBench {
    node: raft::RawNode<MemStorage>,
    storage: MemStorage,
}

impl BenchNode for RaftBench {
    const NAME: &'static str = "raft";

    fn cluster(size: u64) -> Vec<Self> {
        let voters: Vec<u64> = (1..=size).collect();
        voters
            .iter()
            .map(|&id| {
                let storage = MemStorage::new();
                let config = raft::Config { seed: id, ..raft::Config::default() };
                let node = raft::RawNode::new(id, config, storage.clone(), &voters, &[], 0).expect("valid config");
                // What the Python binding does on a fresh storage: record the bootstrap configuration.
                storage.wl().set_conf_state(0, node.raft.conf_state());
                RaftBench { node, storage }
            })
            .collect()
    }
    fn campaign(&mut self) {
        self.node.campaign();
    }
    fn role(&self) -> Role {
        self.node.raft.role
    }
    fn propose_many(&mut self, batch: Vec<Bytes>) {
        self.node.propose_many(batch).expect("propose");
    }
    fn tick(&mut self) {
        self.node.tick();
    }
    fn has_ready(&self) -> bool {
        self.node.has_ready()
    }
    #[inline]
    fn cycle(&mut self) -> (Vec<(u64, Bytes)>, usize) {
        let mut rd = self.node.ready().expect("ready");
        {
            let mut core = self.storage.wl();
            core.append(&rd.entries).expect("append");
            if let Some(hard_state) = rd.hard_state {
                core.set_hard_state(hard_state);
            }
        }
        let mark = rd.mark();
        let committed = rd.committed_entries.len();
        let mut messages = std::mem::take(&mut rd.messages);
        messages.append(&mut rd.persisted_messages);
        self.node.advance(mark).expect("advance");
        (messages, committed)
    }
    fn step(&mut self, frame: &Bytes) {
        self.node.step(frame).expect("step");
    }
    fn applied(&self) -> u64 {
        self.node.raft.log.applied
    }
    fn commit(&self) -> u64 {
        self.node.raft.log.committed
    }
    fn compact(&mut self) {
        let applied = self.applied();
        if applied > self.storage.rl().first_index() {
            self.storage.wl().compact(applied, Bytes::new()).expect("compact");
        }
    }
}

pub struct PaxosBench {
    node: paxos::RawNode<paxos::MemStorage>,
    storage: paxos::MemStorage,
}

impl BenchNode for PaxosBench {
    const NAME: &'static str = "paxos";

    fn cluster(size: u64) -> Vec<Self> {
        let members: Vec<u64> = (1..=size).collect();
        members
            .iter()
            .map(|&id| {
                let storage = paxos::MemStorage::new(&members);
                let config = paxos::Config { seed: id, ..paxos::Config::default() };
                let node = paxos::RawNode::new(id, config, storage.clone(), &members, 0).expect("valid config");
                PaxosBench { node, storage }
            })
            .collect()
    }
    fn campaign(&mut self) {
        self.node.campaign();
    }
    fn role(&self) -> Role {
        self.node.status().role
    }
    fn propose_many(&mut self, batch: Vec<Bytes>) {
        self.node.propose_many(batch).expect("propose");
    }
    fn tick(&mut self) {
        self.node.tick();
    }
    fn has_ready(&self) -> bool {
        self.node.has_ready()
    }
    #[inline]
    fn cycle(&mut self) -> (Vec<(u64, Bytes)>, usize) {
        let mut rd = self.node.ready().expect("ready");
        {
            let mut core = self.storage.wl();
            if let Some(snapshot) = &rd.snapshot {
                core.apply_snapshot(snapshot.clone()).expect("snapshot");
            }
            core.put_accepted(&rd.accepted);
            if let Some(hard_state) = rd.hard_state {
                core.set_hard_state(hard_state);
            }
        }
        let mark = rd.mark();
        let committed = rd.committed_entries.len();
        let mut messages = std::mem::take(&mut rd.messages);
        messages.append(&mut rd.persisted_messages);
        self.node.advance(mark).expect("advance");
        (messages, committed)
    }
    fn step(&mut self, frame: &Bytes) {
        self.node.step(frame).expect("step");
    }
    fn applied(&self) -> u64 {
        self.node.status().applied
    }
    fn commit(&self) -> u64 {
        self.node.status().commit
    }
    fn compact(&mut self) {
        let applied = self.applied();
        if applied > self.storage.first_slot() {
            self.storage.compact(applied, Bytes::new()).expect("compact");
        }
    }
}

pub struct Cluster<N: BenchNode> {
    /// `nodes[i]` is node `i + 1`.
    pub nodes: Vec<N>,
    /// Frames delivered and leader heartbeat ticks given by `commit_batch`, since `new`.
    pub messages: u64,
    pub ticks: u64,
    /// `commit_batch` returns once the leader applied the batch (what a client waits for)
    /// instead of once every node did; followers catch up during later batches.
    pub until_leader_applied: bool,
}

impl<N: BenchNode> Cluster<N> {
    /// `size` members with node 1 elected leader and one entry already committed everywhere.
    pub fn new(size: u64) -> Cluster<N> {
        let mut cluster = Cluster { nodes: N::cluster(size), messages: 0, ticks: 0, until_leader_applied: false };
        cluster.nodes[0].campaign();
        cluster.settle();
        assert_eq!(cluster.nodes[0].role(), Role::Leader);
        // Commit the leader's first entry (and one payload) before anything is measured.
        cluster.nodes[0].propose_many(vec![Bytes::from_static(b"warm-up")]);
        cluster.settle();
        let commit = cluster.nodes[0].commit();
        assert!(cluster.nodes.iter().all(|n| n.applied() == commit), "warm-up entry not applied everywhere");
        cluster
    }

    /// One pass over the nodes: each node with a Ready is persisted, sent, counted, advanced.
    /// Returns the committed entries handed out in this pass (by the leader only, when
    /// `until_leader_applied`).
    #[inline]
    fn pass(&mut self) -> usize {
        let mut committed = 0;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].has_ready() {
                continue;
            }
            let (messages, count) = self.nodes[i].cycle();
            self.messages += messages.len() as u64;
            for (to, frame) in &messages {
                self.nodes[(*to - 1) as usize].step(frame);
            }
            if i == 0 || !self.until_leader_applied {
                committed += count;
            }
        }
        committed
    }

    /// Runs passes until no node has a Ready, with heartbeat ticks of the leader in between so
    /// that every node learns the last decided point.
    pub fn settle(&mut self) {
        for _ in 0..4 {
            while self.nodes.iter().any(|n| n.has_ready()) {
                self.pass();
            }
            self.nodes[0].tick();
        }
    }

    /// Proposes `batch` on the leader and runs the Ready loop until every node (or the leader,
    /// with `until_leader_applied`) applied it.
    pub fn commit_batch(&mut self, batch: Vec<Bytes>) {
        let nodes = if self.until_leader_applied { 1 } else { self.nodes.len() };
        let mut pending = batch.len() * nodes;
        self.nodes[0].propose_many(batch);
        let mut idle_rounds = 0;
        while pending > 0 {
            let committed = self.pass();
            pending = pending.checked_sub(committed).expect("a node applied more than was proposed");
            idle_rounds = if committed == 0 { idle_rounds + 1 } else { 0 };
            if idle_rounds > 0 && !self.nodes.iter().any(|n| n.has_ready()) {
                self.nodes[0].tick();
                self.ticks += 1;
            }
            assert!(idle_rounds < IDLE_ROUNDS_MAX, "cluster stuck with {pending} entries pending");
        }
    }

    /// Drops every node's applied prefix from its storage (never timed: it only bounds the memory
    /// of long runs).
    pub fn compact(&mut self) {
        for node in &mut self.nodes {
            node.compact();
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
pub fn timed_batches<N: BenchNode>(
    cluster: &mut Cluster<N>,
    block: &[u8],
    batch: usize,
    entry_bytes: usize,
    batches: u64,
) -> Duration {
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
