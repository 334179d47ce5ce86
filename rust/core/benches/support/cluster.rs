//! The 3-node in-memory cluster loop shared by the criterion bench (`benches/core.rs`) and the
//! `cluster_loop` example, for Raft and for Multi-Paxos. It is the pure-Rust twin of the loop in
//! `benches/bench_cluster.py`: propose a batch on the leader, then, until every node has applied
//! it, for each node with a Ready: persist it into that node's `MemStorage`, deliver its encoded
//! frames with `step(&Bytes)`, count its committed entries, `advance(rd.mark())`. When no node has
//! a Ready and followers still lag, the leader gets one heartbeat tick: Raft never needs it (its
//! leader broadcasts a new commit index at once); a Paxos leader piggybacks the decide point on
//! its next Accept and sends it on its own only on a heartbeat.

use std::time::{Duration, Instant};

use bytes::Bytes;
use consensus_core::raft::storage::MemStorage;
use consensus_core::sim::MemDurable;
use consensus_core::{paxos, raft, ProtocolNode, ReadyView, Role};

/// Upper bound on Ready rounds without progress before the loop declares the cluster stuck.
const IDLE_ROUNDS_MAX: u32 = 1_000;

/// What the loop needs of a protocol besides its core (`ProtocolNode`): a new member on its
/// in-memory storage, and how many entries a Ready commits.
pub trait BenchProtocol {
    type Node: ProtocolNode;
    type Storage: MemDurable<Ready = <Self::Node as ProtocolNode>::Ready>;
    const NAME: &'static str;
    /// Member `id` of a new cluster of `members`, unelected, and its storage.
    fn start(id: u64, members: &[u64]) -> (Self::Node, Self::Storage);
    fn committed_entries(rd: &<Self::Node as ProtocolNode>::Ready) -> usize;
}

pub struct RaftBench;

impl BenchProtocol for RaftBench {
    type Node = raft::RawNode<MemStorage>;
    type Storage = MemStorage;
    const NAME: &'static str = "raft";

    fn start(id: u64, voters: &[u64]) -> (Self::Node, MemStorage) {
        let storage = MemStorage::new();
        let config = raft::Config { seed: id, ..raft::Config::default() };
        let node = raft::RawNode::new(id, config, storage.clone(), voters, &[], 0).expect("valid config");
        // What the Python binding does on a fresh storage: record the bootstrap configuration.
        storage.wl().set_conf_state(0, node.raft.conf_state());
        (node, storage)
    }

    fn committed_entries(rd: &raft::Ready) -> usize {
        rd.committed_entries.len()
    }
}

pub struct PaxosBench;

impl BenchProtocol for PaxosBench {
    type Node = paxos::RawNode<paxos::MemStorage>;
    type Storage = paxos::MemStorage;
    const NAME: &'static str = "paxos";

    fn start(id: u64, members: &[u64]) -> (Self::Node, paxos::MemStorage) {
        let storage = paxos::MemStorage::new(members);
        let config = paxos::Config { seed: id, ..paxos::Config::default() };
        (paxos::RawNode::new(id, config, storage.clone(), members, 0).expect("valid config"), storage)
    }

    fn committed_entries(rd: &paxos::Ready) -> usize {
        rd.committed_entries.len()
    }
}

/// One node of the cluster and the storage it persists into.
pub struct Member<P: BenchProtocol> {
    pub node: P::Node,
    storage: P::Storage,
}

impl<P: BenchProtocol> Member<P> {
    /// Takes the Ready, persists it and advances; returns it (its frames are still to be sent).
    #[inline]
    fn cycle(&mut self) -> <P::Node as ProtocolNode>::Ready {
        let rd = self.node.ready().expect("ready");
        self.storage.persist(&rd).expect("persist");
        self.node.advance(rd.mark()).expect("advance");
        rd
    }

    /// Drops the applied prefix from the storage.
    fn compact(&mut self) {
        let applied = self.node.applied_index();
        if applied > self.storage.first_index() {
            self.storage.compact(applied, Bytes::new()).expect("compact");
        }
    }
}

pub struct Cluster<P: BenchProtocol> {
    /// `nodes[i]` is node `i + 1`.
    pub nodes: Vec<Member<P>>,
    /// Frames delivered and leader heartbeat ticks given by `commit_batch`, since `new`.
    pub messages: u64,
    pub ticks: u64,
    /// `commit_batch` returns once the leader applied the batch (what a client waits for)
    /// instead of once every node did; followers catch up during later batches.
    pub until_leader_applied: bool,
}

impl<P: BenchProtocol> Cluster<P> {
    /// `size` members with node 1 elected leader and one entry already committed everywhere.
    pub fn new(size: u64) -> Cluster<P> {
        let members: Vec<u64> = (1..=size).collect();
        let nodes = members
            .iter()
            .map(|&id| {
                let (node, storage) = P::start(id, &members);
                Member { node, storage }
            })
            .collect();
        let mut cluster = Cluster::<P> { nodes, messages: 0, ticks: 0, until_leader_applied: false };
        cluster.nodes[0].node.campaign();
        cluster.settle();
        assert_eq!(cluster.nodes[0].node.role(), Role::Leader);
        // Commit the leader's first entry (and one payload) before anything is measured.
        cluster.nodes[0].node.propose_many(vec![Bytes::from_static(b"warm-up")]).expect("propose");
        cluster.settle();
        let commit = cluster.nodes[0].node.commit_index();
        assert!(cluster.nodes.iter().all(|n| n.node.applied_index() == commit), "warm-up entry not applied everywhere");
        cluster
    }

    /// One pass over the nodes: each node with a Ready is persisted, sent, counted, advanced.
    /// Returns the committed entries handed out in this pass (by the leader only, when
    /// `until_leader_applied`).
    #[inline]
    fn pass(&mut self) -> usize {
        let mut committed = 0;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].node.has_ready() {
                continue;
            }
            let rd = self.nodes[i].cycle();
            for (to, frame) in rd.messages().iter().chain(rd.persisted_messages()) {
                self.nodes[(*to - 1) as usize].node.step(frame).expect("step");
                self.messages += 1;
            }
            if i == 0 || !self.until_leader_applied {
                committed += P::committed_entries(&rd);
            }
        }
        committed
    }

    /// Runs passes until no node has a Ready, with heartbeat ticks of the leader in between so
    /// that every node learns the last decided point.
    pub fn settle(&mut self) {
        for _ in 0..4 {
            while self.nodes.iter().any(|n| n.node.has_ready()) {
                self.pass();
            }
            self.nodes[0].node.tick();
        }
    }

    /// Proposes `batch` on the leader and runs the Ready loop until every node (or the leader,
    /// with `until_leader_applied`) applied it.
    pub fn commit_batch(&mut self, batch: Vec<Bytes>) {
        let nodes = if self.until_leader_applied { 1 } else { self.nodes.len() };
        let mut pending = batch.len() * nodes;
        self.nodes[0].node.propose_many(batch).expect("propose");
        let mut idle_rounds = 0;
        while pending > 0 {
            let committed = self.pass();
            pending = pending.checked_sub(committed).expect("a node applied more than was proposed");
            idle_rounds = if committed == 0 { idle_rounds + 1 } else { 0 };
            if idle_rounds > 0 && !self.nodes.iter().any(|n| n.node.has_ready()) {
                self.nodes[0].node.tick();
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
pub fn timed_batches<P: BenchProtocol>(
    cluster: &mut Cluster<P>,
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
