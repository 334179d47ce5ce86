//! Hostile peers: structure-aware fuzzing of both cores with well-formed messages whose every
//! field may hold any value (issue 9; docs/wire-format.md, "Validation at the door").
//!
//! A run drives a small cluster of real `RawNode`s on `MemStorage` by hand (every Ready is
//! persisted, sent, applied and advanced) and interleaves its normal traffic with hostile frames
//! of any type, any term or ballot (0, stale, current, near and past `TERM_MAX`, `u64::MAX`), any
//! `from`/`to`, arbitrary entries, ranges, snapshots and payloads, sent under any claimed sender.
//! It checks, at every step:
//! - no panic (a panic fails the caller);
//! - a refused frame is `Error::Protocol` and changes nothing, sends nothing;
//! - terms and promised ballots never decrease and never pass `TERM_MAX`;
//! - storage accepts everything a node hands it (nothing it could not read back);
//!
//! and at the end that every node rebuilt from its storage starts. In [`Mode::Door`] the hostile
//! frames are limited to what cannot forge a leader's authority (those are refused, stale, or
//! requests any member may make), so the cluster must also elect and commit again after the
//! restart; [`Mode::Chaos`] sends anything, including forged leaders at valid terms (which a peer
//! without TLS can do, docs/security.md), and checks only the rest.
//!
//! Every draw comes from a [`Source`]: a seeded `Rng` for `cargo test`, libFuzzer's bytes for the
//! cargo-fuzz target in `rust/core/fuzz`.

mod paxos;
mod raft;

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};

use bytes::Bytes;

pub use self::paxos::Paxos;
pub use self::raft::Raft;
use super::memory::MemDurable;
use crate::contract::{ProtocolNode, ReadyView};
use crate::error::{Error, Result};
use crate::limits::{INDEX_MAX, TERM_MAX};
use crate::rng::Rng;
use crate::role::Role;
use crate::StorageError;

/// Where a run's random choices come from.
pub trait Source {
    fn next_u64(&mut self) -> u64;

    /// A value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

impl Source for Rng {
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
}

/// Fuzzer bytes read as little-endian `u64`s; zeros once they run out.
pub struct ByteSource<'a> {
    data: &'a [u8],
}

impl<'a> ByteSource<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteSource { data }
    }
}

impl Source for ByteSource<'_> {
    fn next_u64(&mut self) -> u64 {
        let take = self.data.len().min(8);
        let mut word = [0u8; 8];
        word[..take].copy_from_slice(&self.data[..take]);
        self.data = &self.data[take..];
        u64::from_le_bytes(word)
    }
}

/// What the hostile frames may be (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Door,
    Chaos,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub injected: u64,
    pub refused: u64,
    /// Whether the cluster elected a leader and committed a write after the restart.
    pub recovered: bool,
}

/// What the harness needs of a protocol besides its core (`ProtocolNode`): how a node starts on
/// in-memory storage, what its application does with a Ready, what a refused frame must leave
/// alone, and how to build a hostile frame for it.
pub trait Target: Sized {
    type Node: ProtocolNode<Message = Self::Message>;
    type Message: Debug;
    /// The storage a node reads (a disk plugged in with [`Cluster::with_durable`] hands back
    /// what it reopened in this form).
    type Storage: MemDurable<Ready = <Self::Node as ProtocolNode>::Ready>;
    type Config: Clone;
    /// A configuration the application records apart from the log (Raft's `ConfState`).
    type ConfState;
    /// What must never go back or pass `TERM_MAX`: the term, the promised ballot.
    type Promise: Ord + Copy + Debug + Display;
    /// The state a refused frame must leave as it was.
    type Fingerprint: PartialEq;

    /// The name of `Promise` in a violation.
    const PROMISE: &'static str;

    fn config(seed: u64) -> Self::Config;
    /// Empty storage for a member of a new cluster of `ids`.
    fn new_storage(ids: &[u64]) -> Self::Storage;
    fn start(id: u64, config: &Self::Config, storage: Self::Storage, ids: &[u64]) -> Result<Self::Node>;
    fn set_conf_state(storage: &Self::Storage, index: u64, cs: Self::ConfState);
    /// Applies the committed entries of node `id`'s Ready.
    fn apply(c: &mut Cluster<Self>, id: u64, rd: &<Self::Node as ProtocolNode>::Ready);
    fn promise(node: &Self::Node) -> Self::Promise;
    /// The term or round of a promise, bounded by `TERM_MAX`.
    fn promise_round(promise: &Self::Promise) -> u64;
    fn fingerprint(node: &Self::Node) -> Self::Fingerprint;
    /// A hostile frame for `core` (node `target`), decoded.
    fn hostile_message(src: &mut impl Source, core: &Self::Node, target: u64, mode: Mode) -> Self::Message;
    fn encode(message: &Self::Message) -> Bytes;
}

/// Where a cluster's nodes persist (the default keeps it in their in-memory storage; the storage
/// crate's tests plug the write-ahead log in, to check that it takes and reopens what hostile
/// frames leave).
pub trait Durable<P: Target> {
    /// Persists node `id`'s Ready; the node reads the result through its in-memory storage.
    fn persist(&mut self, id: u64, rd: &<P::Node as ProtocolNode>::Ready) -> std::result::Result<(), StorageError>;
    /// Records the configuration in force from `index` (a conf change was applied). Protocols
    /// that keep no configuration apart (`ConfState = ()`) never call it.
    fn set_conf_state(&mut self, _id: u64, _index: u64, _cs: P::ConfState) -> std::result::Result<(), StorageError> {
        Ok(())
    }
    /// Closes node `id`'s storage and opens it again, as after a crash; returns what it reads.
    fn reopen(&mut self, id: u64) -> std::result::Result<P::Storage, StorageError>;
}

/// Durable state kept in each node's in-memory storage only.
pub struct InMemory<S>(pub BTreeMap<u64, S>);

impl<P: Target> Durable<P> for InMemory<P::Storage> {
    fn persist(&mut self, id: u64, rd: &<P::Node as ProtocolNode>::Ready) -> std::result::Result<(), StorageError> {
        self.0[&id].persist(rd)
    }

    fn set_conf_state(&mut self, id: u64, index: u64, cs: P::ConfState) -> std::result::Result<(), StorageError> {
        P::set_conf_state(&self.0[&id], index, cs);
        Ok(())
    }

    fn reopen(&mut self, id: u64) -> std::result::Result<P::Storage, StorageError> {
        Ok(self.0[&id].clone())
    }
}

/// Deliveries per `stabilize` before giving up (a cluster under attack may never go quiet).
const STABILIZE_ROUNDS: usize = 100;
/// Ticks allowed for a leader to appear, and then for a write to commit, after the restart.
const RECOVERY_TICKS: usize = 400;
const IDS: [u64; 3] = [1, 2, 3];

// ------------------------------------------------------------------------------------ draws

/// A number near `near` or at an edge of the range.
fn any_number(src: &mut impl Source, near: u64) -> u64 {
    match src.below(12) {
        9..=11 => near_number(src, near),
        0 => 0,
        1 => near,
        2 => near.saturating_add(1 + src.below(3)),
        3 => near.saturating_sub(1 + src.below(3)),
        4 => INDEX_MAX - src.below(2),
        5 => INDEX_MAX + 1,
        6 => u64::MAX - src.below(2),
        7 => src.next_u64(),
        _ => src.below(16),
    }
}

/// A number within a few of `near` (no edge values): what a plausible frame carries.
fn near_number(src: &mut impl Source, near: u64) -> u64 {
    near.saturating_add(src.below(3)).saturating_sub(src.below(3))
}

/// A term (or round) for a frame to a node at term `now`. `dangerous` marks types that carry a
/// leader's authority: in `Mode::Door` they come only refused or stale.
fn any_term(src: &mut impl Source, now: u64, mode: Mode, dangerous: bool) -> u64 {
    let refused = match src.below(3) {
        0 => 0,
        1 => TERM_MAX + 1 + src.below(1000),
        _ => u64::MAX,
    };
    let stale = src.below(now);
    match mode {
        Mode::Chaos => match src.below(7) {
            0 => refused,
            1 => stale,
            2 => now,
            3 => now + 1 + src.below(3),
            4 => TERM_MAX - src.below(2),
            5 => src.next_u64(),
            _ => src.below(8),
        },
        Mode::Door if dangerous => {
            if src.chance(50) {
                refused
            } else {
                stale
            }
        }
        Mode::Door => match src.below(4) {
            0 => refused,
            1 => stale,
            2 => now,
            _ => now + 1 + src.below(2),
        },
    }
}

/// A node id: mostly a member, sometimes 0, the receiver itself or a stranger.
fn any_id(src: &mut impl Source, target: u64) -> u64 {
    match src.below(10) {
        0..=6 => IDS[src.below(3) as usize],
        7 => 0,
        8 => target,
        _ => [4, 99, u64::MAX][src.below(3) as usize],
    }
}

fn any_bytes(src: &mut impl Source, max: u64) -> Bytes {
    let len = src.below(max + 1);
    Bytes::from((0..len).map(|_| src.next_u64() as u8).collect::<Vec<u8>>())
}

fn any_ids(src: &mut impl Source, target: u64) -> Vec<u64> {
    (0..src.below(4)).map(|_| any_id(src, target)).collect()
}

/// The sender the connection claims: mostly the frame's own `from`.
fn any_sender(src: &mut impl Source, from: u64, target: u64) -> Option<u64> {
    match src.below(20) {
        0 => None,
        1 => Some(any_id(src, target)),
        _ => Some(from),
    }
}

/// A member other than `target`.
fn other_member(src: &mut impl Source, target: u64) -> u64 {
    let others: Vec<u64> = IDS.iter().copied().filter(|id| *id != target).collect();
    others[src.below(others.len() as u64) as usize]
}

// ------------------------------------------------------------------------------------ the cluster

/// A cluster of real nodes on in-memory storage driven by hand.
pub struct Cluster<P: Target> {
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, P::Node>,
    pub storages: BTreeMap<u64, P::Storage>,
    /// Frames sent and not yet delivered: (from, to, frame).
    pub network: Vec<(u64, u64, Bytes)>,
    /// Non-empty normal entries each node applied: (index, data).
    pub applied: BTreeMap<u64, Vec<(u64, Bytes)>>,
    pub config: P::Config,
    /// Broken guarantees found so far (a storage refusal; a correct frame refused when strict).
    pub violations: Vec<String>,
    /// Whether a frame between the cluster's own nodes may never be refused.
    pub strict: bool,
    durable: Box<dyn Durable<P>>,
}

/// A Raft cluster on `MemStorage`.
pub type RaftCluster = Cluster<Raft>;
/// A Multi-Paxos cluster on `paxos::MemStorage`.
pub type PaxosCluster = Cluster<Paxos>;

impl<P: Target + 'static> Cluster<P> {
    /// Nodes `1..=n` of a new cluster, persisting into their in-memory storage.
    pub fn new(n: u64, seed: u64) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let storages: BTreeMap<u64, P::Storage> = ids.iter().map(|id| (*id, P::new_storage(&ids))).collect();
        Self::with_durable(storages.clone(), Box::new(InMemory(storages)), seed)
    }
}

impl<P: Target> Cluster<P> {
    /// A new cluster of the nodes of `storages` (empty, or knowing the members where the protocol
    /// keeps them there), persisting through `durable`.
    pub fn with_durable(storages: BTreeMap<u64, P::Storage>, durable: Box<dyn Durable<P>>, seed: u64) -> Self {
        let ids: Vec<u64> = storages.keys().copied().collect();
        let config = P::config(seed);
        let nodes = ids
            .iter()
            .map(|id| (*id, P::start(*id, &config, storages[id].clone(), &ids).expect("a valid configuration")))
            .collect();
        Cluster {
            ids,
            nodes,
            storages,
            network: Vec::new(),
            applied: BTreeMap::new(),
            config,
            violations: Vec::new(),
            strict: true,
            durable,
        }
    }

    pub fn node(&mut self, id: u64) -> &mut P::Node {
        self.nodes.get_mut(&id).expect("a node of the cluster")
    }

    /// Persists, sends, applies and advances every Ready of node `id`.
    pub fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().expect("no Ready is outstanding");
            if let Err(e) = self.durable.persist(id, &rd) {
                self.violations.push(format!("node {id}: storage refused a Ready: {e}"));
            }
            for (to, frame) in rd.messages().iter().chain(rd.persisted_messages()) {
                self.network.push((id, *to, frame.clone()));
            }
            P::apply(self, id, &rd);
            self.node(id).advance(rd.mark()).expect("the outstanding Ready");
        }
    }

    pub fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    /// Steps one frame into `to` and processes it.
    pub fn deliver(&mut self, to: u64, frame: &Bytes) -> Result<()> {
        self.deliver_from(to, frame, None)
    }

    /// Steps one frame into `to` as sent by `sender` (when given) and processes it.
    pub fn deliver_from(&mut self, to: u64, frame: &Bytes, sender: Option<u64>) -> Result<()> {
        let Some(node) = self.nodes.get_mut(&to) else { return Ok(()) };
        let outcome = node.step_from(frame, sender);
        self.process(to);
        outcome
    }

    /// Delivers until the network is quiet (or a round limit).
    pub fn stabilize(&mut self) {
        for _ in 0..STABILIZE_ROUNDS {
            self.process_all();
            let batch = std::mem::take(&mut self.network);
            if batch.is_empty() {
                return;
            }
            for (from, to, frame) in batch {
                if let Err(e) = self.deliver_from(to, &frame, Some(from)) {
                    if self.strict {
                        self.violations.push(format!("a frame from node {from} to node {to} was refused: {e}"));
                    }
                }
            }
        }
    }

    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.node(id).tick();
        }
        self.stabilize();
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes.values().find(|n| n.role() == Role::Leader).map(|n| n.id())
    }

    pub fn elect(&mut self, id: u64) {
        self.node(id).campaign();
        self.stabilize();
    }

    /// Ticks until some node leads (at most `max_ticks`).
    pub fn await_leader(&mut self, max_ticks: usize) -> Option<u64> {
        for _ in 0..max_ticks {
            if self.leader().is_some() {
                break;
            }
            self.tick_all();
        }
        self.leader()
    }

    /// Whether a majority of the nodes applied `data`.
    pub fn committed_on_majority(&self, data: &[u8]) -> bool {
        let count = self.applied.values().filter(|entries| entries.iter().any(|(_, d)| d.as_ref() == data)).count();
        count > self.ids.len() / 2
    }

    /// Rebuilds node `id` from its storage, reopened as after a crash (unpersisted state is lost).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.applied.remove(&id);
        let storage = self.durable.reopen(id)?;
        let node = P::start(id, &self.config, storage.clone(), &self.ids)?;
        self.storages.insert(id, storage);
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Promises (terms, ballots) never decrease and never pass `TERM_MAX`.
    fn check_promises(&self, before: &BTreeMap<u64, P::Promise>) -> std::result::Result<(), String> {
        for (id, node) in &self.nodes {
            let now = P::promise(node);
            if P::promise_round(&now) > TERM_MAX || before.get(id).is_some_and(|b| now < *b) {
                return Err(format!("node {id}: {} went from {:?} to {now}", P::PROMISE, before.get(id)));
            }
        }
        Ok(())
    }

    /// Steps one hostile frame into a random node; a refusal must be a protocol error that
    /// changed nothing.
    fn inject(&mut self, src: &mut impl Source, mode: Mode, out: &mut Outcome) -> std::result::Result<(), String> {
        let target = IDS[src.below(3) as usize];
        let m = P::hostile_message(src, &self.nodes[&target], target, mode);
        let sender = any_sender(src, P::Node::sender(&m), target);
        let before = P::fingerprint(&self.nodes[&target]);
        out.injected += 1;
        match self.node(target).step_from(&P::encode(&m), sender) {
            Ok(()) => {}
            Err(Error::Protocol(_)) => {
                out.refused += 1;
                if P::fingerprint(&self.nodes[&target]) != before {
                    return Err(format!("refused {m:?} changed node {target}"));
                }
            }
            Err(other) => return Err(format!("{m:?} gave {other:?}, not a protocol error")),
        }
        self.process(target);
        Ok(())
    }

    /// Ticks for at most `RECOVERY_TICKS`, proposing [`AFTER`] on the leader every few ticks,
    /// until a majority applied it.
    fn recover(&mut self) -> bool {
        for tick in 0..RECOVERY_TICKS {
            if self.committed_on_majority(AFTER) {
                return true;
            }
            if tick % 20 == 0 {
                if let Some(id) = self.leader() {
                    let _ = self.node(id).propose(Bytes::from_static(AFTER));
                }
            }
            self.tick_all();
        }
        self.committed_on_majority(AFTER)
    }
}

/// The write every run must commit after the restart (in `Mode::Door`).
const AFTER: &[u8] = b"after the attack";

// ------------------------------------------------------------------------------------ the run

/// One structure-aware fuzz run against a 3-node Raft cluster: `steps` actions, then a restart of
/// every node from its storage. `Err` names the broken guarantee.
pub fn run_raft_hostile(src: &mut impl Source, mode: Mode, steps: usize) -> std::result::Result<Outcome, String> {
    run_hostile_on(src, mode, steps, |seed| RaftCluster::new(3, seed))
}

/// One structure-aware fuzz run against a 3-node Multi-Paxos cluster (see [`run_raft_hostile`]).
pub fn run_paxos_hostile(src: &mut impl Source, mode: Mode, steps: usize) -> std::result::Result<Outcome, String> {
    run_hostile_on(src, mode, steps, |seed| PaxosCluster::new(3, seed))
}

/// One structure-aware fuzz run on the 3-node cluster `make(seed)` builds (nodes 1, 2 and 3):
/// `steps` actions (ticks, proposals, hostile frames), then a restart of every node from its
/// storage and, in `Mode::Door`, a recovery. `Err` names the broken guarantee.
pub fn run_hostile_on<P: Target>(
    src: &mut impl Source,
    mode: Mode,
    steps: usize,
    make: impl FnOnce(u64) -> Cluster<P>,
) -> std::result::Result<Outcome, String> {
    let mut c = make(src.next_u64());
    c.strict = mode == Mode::Door;
    let mut out = Outcome::default();
    c.elect(1);
    for step in 0..steps {
        let promises: BTreeMap<u64, P::Promise> = c.nodes.iter().map(|(id, n)| (*id, P::promise(n))).collect();
        match src.below(10) {
            0..=2 => c.tick_all(),
            3 => {
                let id = IDS[src.below(3) as usize];
                let _ = c.node(id).propose(Bytes::from(format!("w{step}")));
                c.stabilize();
            }
            _ => {
                c.inject(src, mode, &mut out)?;
                if src.chance(50) {
                    c.stabilize();
                }
            }
        }
        c.check_promises(&promises)?;
        if let Some(v) = c.violations.first() {
            return Err(v.clone());
        }
    }
    c.stabilize();
    c.network.clear();
    for id in c.ids.clone() {
        c.restart(id).map_err(|e| format!("node {id} does not restart from its storage: {e}"))?;
    }
    out.recovered = c.recover();
    if let Some(v) = c.violations.first() {
        return Err(v.clone());
    }
    if mode == Mode::Door && !out.recovered {
        return Err("after the restart the cluster did not elect a leader and commit a write".into());
    }
    Ok(out)
}
