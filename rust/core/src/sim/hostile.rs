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

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::contract::ProtocolNode;
use crate::error::{Error, Result};
use crate::limits::{INDEX_MAX, TERM_MAX};
use crate::paxos;
use crate::raft;
use crate::raft::storage::MemStorage;
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

/// Where a Raft cluster's nodes persist (the default keeps it in their `MemStorage`; the storage
/// crate's tests plug the write-ahead log in, to check that it takes and reopens what hostile
/// frames leave).
pub trait RaftDurable {
    /// Persists node `id`'s Ready; the node reads the result through its `MemStorage`.
    fn persist(&mut self, id: u64, rd: &raft::Ready) -> std::result::Result<(), StorageError>;
    /// Records the configuration in force from `index` (a conf change was applied).
    fn set_conf_state(&mut self, id: u64, index: u64, cs: raft::ConfState) -> std::result::Result<(), StorageError>;
    /// Closes node `id`'s storage and opens it again, as after a crash; returns what it reads.
    fn reopen(&mut self, id: u64) -> std::result::Result<MemStorage, StorageError>;
}

/// Durable state kept in each node's `MemStorage` only.
pub struct InMemory(pub BTreeMap<u64, MemStorage>);

impl RaftDurable for InMemory {
    fn persist(&mut self, id: u64, rd: &raft::Ready) -> std::result::Result<(), StorageError> {
        let mut core = self.0[&id].wl();
        if let Some(snapshot) = &rd.snapshot {
            core.apply_snapshot(snapshot.clone())?;
        }
        core.append(&rd.entries)?;
        if let Some(hs) = rd.hard_state {
            core.set_hard_state(hs);
        }
        Ok(())
    }

    fn set_conf_state(&mut self, id: u64, index: u64, cs: raft::ConfState) -> std::result::Result<(), StorageError> {
        self.0[&id].wl().set_conf_state(index, cs);
        Ok(())
    }

    fn reopen(&mut self, id: u64) -> std::result::Result<MemStorage, StorageError> {
        Ok(self.0[&id].clone())
    }
}

/// Where a Multi-Paxos cluster's nodes persist (see [`RaftDurable`]).
pub trait PaxosDurable {
    fn persist(&mut self, id: u64, rd: &paxos::Ready) -> std::result::Result<(), StorageError>;
    fn reopen(&mut self, id: u64) -> std::result::Result<paxos::MemStorage, StorageError>;
}

/// Durable state kept in each node's `paxos::MemStorage` only.
pub struct PaxosInMemory(pub BTreeMap<u64, paxos::MemStorage>);

impl PaxosDurable for PaxosInMemory {
    fn persist(&mut self, id: u64, rd: &paxos::Ready) -> std::result::Result<(), StorageError> {
        let mut core = self.0[&id].wl();
        if let Some(snapshot) = &rd.snapshot {
            core.apply_snapshot(snapshot.clone())?;
        }
        core.put_accepted(&rd.accepted);
        if let Some(hs) = rd.hard_state {
            core.set_hard_state(hs);
        }
        Ok(())
    }

    fn reopen(&mut self, id: u64) -> std::result::Result<paxos::MemStorage, StorageError> {
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

// ------------------------------------------------------------------------------------ Raft

/// A cluster of Raft nodes on `MemStorage` driven by hand.
pub struct RaftCluster {
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, raft::RawNode<MemStorage>>,
    pub storages: BTreeMap<u64, MemStorage>,
    /// Frames sent and not yet delivered: (from, to, frame).
    pub network: Vec<(u64, u64, Bytes)>,
    /// Non-empty normal entries each node applied: (index, data).
    pub applied: BTreeMap<u64, Vec<(u64, Bytes)>>,
    pub config: raft::Config,
    /// Broken guarantees found so far (a storage refusal; a correct frame refused when strict).
    pub violations: Vec<String>,
    /// Whether a frame between the cluster's own nodes may never be refused.
    pub strict: bool,
    durable: Box<dyn RaftDurable>,
}

impl RaftCluster {
    /// Nodes `1..=n` of a new cluster, persisting into their `MemStorage`.
    pub fn new(n: u64, seed: u64) -> Self {
        let storages: BTreeMap<u64, MemStorage> = (1..=n).map(|id| (id, MemStorage::new())).collect();
        Self::with_durable(storages.clone(), Box::new(InMemory(storages)), seed)
    }

    /// A new cluster of the nodes of `storages` (empty), persisting through `durable`.
    pub fn with_durable(storages: BTreeMap<u64, MemStorage>, durable: Box<dyn RaftDurable>, seed: u64) -> Self {
        let ids: Vec<u64> = storages.keys().copied().collect();
        let config = raft::Config { election_tick: 10, heartbeat_tick: 1, seed, ..raft::Config::default() };
        let nodes = ids
            .iter()
            .map(|id| {
                let node = raft::RawNode::new(*id, config.clone(), storages[id].clone(), &ids, &[], 0);
                (*id, node.expect("a valid configuration"))
            })
            .collect();
        RaftCluster {
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

    pub fn node(&mut self, id: u64) -> &mut raft::RawNode<MemStorage> {
        self.nodes.get_mut(&id).expect("a node of the cluster")
    }

    /// Persists, sends, applies and advances every Ready of node `id`.
    pub fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().expect("no Ready is outstanding");
            if let Err(e) = self.durable.persist(id, &rd) {
                self.violations.push(format!("node {id}: storage refused a Ready: {e}"));
            }
            for (to, frame) in rd.messages.iter().chain(&rd.persisted_messages) {
                self.network.push((id, *to, frame.clone()));
            }
            for entry in &rd.committed_entries {
                self.apply(id, entry);
            }
            self.node(id).advance(rd.mark()).expect("the outstanding Ready");
        }
    }

    fn apply(&mut self, id: u64, entry: &raft::Entry) {
        match entry.kind {
            raft::EntryKind::Normal if !entry.data.is_empty() => {
                self.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
            }
            raft::EntryKind::Normal => {}
            raft::EntryKind::ConfChange => {
                // A change that does not apply is logged and skipped by the runtime; so here.
                if let Ok(cs) = self.node(id).apply_conf_change_entry(entry) {
                    if let Err(e) = self.durable.set_conf_state(id, entry.index, cs) {
                        self.violations.push(format!("node {id}: storage refused a configuration: {e}"));
                    }
                }
            }
        }
    }

    pub fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    /// Steps one frame into `to` (as sent by `sender` when given) and processes it.
    pub fn deliver(&mut self, to: u64, frame: &Bytes) -> Result<()> {
        self.deliver_from(to, frame, None)
    }

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
        self.nodes.values().find(|n| n.raft.role == Role::Leader).map(|n| n.raft.id)
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
        let node = raft::RawNode::new(id, self.config.clone(), storage.clone(), &self.ids, &[], 0)?;
        self.storages.insert(id, storage);
        self.nodes.insert(id, node);
        Ok(())
    }

    /// What a refused frame must leave as it was.
    fn fingerprint(&self, id: u64) -> (u64, u64, u64, u64, Role, u64, usize) {
        let r = &self.nodes[&id].raft;
        (r.term, r.vote, r.log.committed, r.leader, r.role, r.log.last_index(), r.msgs.len())
    }
}

/// The message types that carry a leader's (or a voter's) authority.
fn raft_dangerous(msg_type: raft::MessageType) -> bool {
    use raft::MessageType as T;
    matches!(
        msg_type,
        T::AppendEntries | T::Heartbeat | T::InstallSnapshot | T::RequestVoteResponse | T::AppendEntriesResponse
    )
}

/// A member other than `target`.
fn other_member(src: &mut impl Source, target: u64) -> u64 {
    let others: Vec<u64> = IDS.iter().copied().filter(|id| *id != target).collect();
    others[src.below(others.len() as u64) as usize]
}

/// Half of the hostile frames are plausible: from another member, to the target, every number
/// near the target's own; only their type, term and a few fields stray. The rest are wild.
fn raft_message(src: &mut impl Source, c: &RaftCluster, target: u64, mode: Mode) -> raft::Message {
    let mut m = raft_wild_message(src, c, target, mode);
    if src.chance(50) {
        let node = &c.nodes[&target].raft;
        m.from = other_member(src, target);
        m.to = target;
        m.index = near_number(src, node.log.last_index());
        m.commit = near_number(src, node.log.committed);
        m.reject_hint = near_number(src, node.log.last_index());
        m.log_term = match node.log.term(m.index) {
            Ok(term) if src.chance(70) => term,
            _ => m.log_term.min(m.term),
        };
        m.entries.clear();
        if m.msg_type == raft::MessageType::AppendEntries && src.chance(70) {
            m.entries = raft_entries(src, &m, mode);
        }
        m.snapshot = match m.msg_type {
            raft::MessageType::InstallSnapshot if src.chance(60) => Some(raft_snapshot(src, &m, target)),
            raft::MessageType::InstallSnapshot => m.snapshot.take(),
            _ => None,
        };
    }
    m
}

fn raft_wild_message(src: &mut impl Source, c: &RaftCluster, target: u64, mode: Mode) -> raft::Message {
    let node = &c.nodes[&target].raft;
    let msg_type = raft::MessageType::ALL[src.below(14) as usize];
    let dangerous = raft_dangerous(msg_type);
    let to = if src.chance(90) { target } else { any_id(src, target) };
    let mut m = raft::Message::new(msg_type, any_id(src, target), to, any_term(src, node.term, mode, dangerous));
    m.log_term = match src.below(4) {
        0 => m.term,
        1 => src.below(m.term.saturating_add(1)),
        _ => any_number(src, node.log.last_term()),
    };
    m.index = any_number(src, node.log.last_index());
    m.commit = any_number(src, node.log.committed);
    m.reject_hint = any_number(src, node.log.last_index());
    m.reject = src.chance(50);
    m.context = match src.below(5) {
        0 => Bytes::from_static(raft::core::CAMPAIGN_TRANSFER),
        1 => any_bytes(src, 16),
        _ => Bytes::new(),
    };
    if src.chance(40) {
        m.entries = raft_entries(src, &m, mode);
    }
    if src.chance(15) {
        m.snapshot = Some(raft_snapshot(src, &m, target));
    }
    m
}

/// Entries after `m.index`: in order from `index + 1` as a correct leader sends them, or in a
/// shape no correct leader sends: starting elsewhere, with a gap, with a term going down, wild.
fn raft_entries(src: &mut impl Source, m: &raft::Message, mode: Mode) -> Vec<raft::Entry> {
    let shape = src.below(5);
    let mut index = if shape == 1 { near_number(src, m.index) } else { m.index };
    let mut term = m.log_term.max(1);
    (0..1 + src.below(4))
        .map(|i| {
            index = match shape {
                4 => any_number(src, index),
                2 if i == 1 => index.saturating_add(2),
                _ => index.saturating_add(1),
            };
            term = match shape {
                4 => any_number(src, term),
                3 if i > 0 => term.saturating_sub(1),
                _ => term.saturating_add(src.below(2)).min(m.term.max(1)),
            };
            let (kind, data) = match src.below(7) {
                0 => (raft::EntryKind::ConfChange, any_bytes(src, 12)),
                1 if mode == Mode::Chaos => (raft::EntryKind::ConfChange, raft_conf_change(src)),
                _ => (raft::EntryKind::Normal, any_bytes(src, 8)),
            };
            raft::Entry::new(index, term, kind, data)
        })
        .collect()
}

fn raft_conf_change(src: &mut impl Source) -> Bytes {
    let change = raft::ConfChange {
        add_voters: any_ids(src, 0),
        remove_voters: any_ids(src, 0),
        add_learners: any_ids(src, 0),
        remove_learners: any_ids(src, 0),
    };
    raft::wire::encode_conf_change(&change)
}

fn raft_snapshot(src: &mut impl Source, m: &raft::Message, target: u64) -> raft::Snapshot {
    let conf_state = raft::ConfState {
        voters: if src.chance(70) { vec![1, 2, 3] } else { any_ids(src, target) },
        learners: any_ids(src, target),
        voters_outgoing: if src.chance(20) { any_ids(src, target) } else { Vec::new() },
        learners_next: Vec::new(),
        auto_leave: src.chance(50),
    };
    raft::Snapshot {
        index: any_number(src, m.commit),
        term: if src.chance(70) { m.term } else { any_number(src, m.term) },
        conf_state,
        data: any_bytes(src, 8),
    }
}

/// Terms never decrease and never pass `TERM_MAX`.
fn check_raft_terms(c: &RaftCluster, before: &BTreeMap<u64, u64>) -> std::result::Result<(), String> {
    for (id, node) in &c.nodes {
        let term = node.raft.term;
        if term > TERM_MAX || term < before.get(id).copied().unwrap_or(0) {
            return Err(format!("node {id}: term went from {:?} to {term}", before.get(id)));
        }
    }
    Ok(())
}

/// Steps one hostile frame into a random node; a refusal must be a protocol error that changed
/// nothing.
fn inject_raft(
    src: &mut impl Source,
    c: &mut RaftCluster,
    mode: Mode,
    out: &mut Outcome,
) -> std::result::Result<(), String> {
    let target = IDS[src.below(3) as usize];
    let m = raft_message(src, c, target, mode);
    let sender = any_sender(src, m.from, target);
    let before = c.fingerprint(target);
    out.injected += 1;
    match c.nodes.get_mut(&target).expect("a node").step_from(&raft::wire::encode(&m), sender) {
        Ok(()) => {}
        Err(Error::Protocol(_)) => {
            out.refused += 1;
            if c.fingerprint(target) != before {
                return Err(format!("refused {m:?} changed node {target}"));
            }
        }
        Err(other) => return Err(format!("{m:?} gave {other:?}, not a protocol error")),
    }
    c.process(target);
    Ok(())
}

/// One structure-aware fuzz run against a 3-node Raft cluster: `steps` actions, then a restart of
/// every node from its storage. `Err` names the broken guarantee.
pub fn run_raft_hostile(src: &mut impl Source, mode: Mode, steps: usize) -> std::result::Result<Outcome, String> {
    run_raft_hostile_on(src, mode, steps, |seed| RaftCluster::new(3, seed))
}

/// [`run_raft_hostile`] on the 3-node cluster `make(seed)` builds (nodes 1, 2 and 3).
pub fn run_raft_hostile_on(
    src: &mut impl Source,
    mode: Mode,
    steps: usize,
    make: impl FnOnce(u64) -> RaftCluster,
) -> std::result::Result<Outcome, String> {
    let mut c = make(src.next_u64());
    c.strict = mode == Mode::Door;
    let mut out = Outcome::default();
    c.elect(1);
    for step in 0..steps {
        let terms: BTreeMap<u64, u64> = c.nodes.iter().map(|(id, n)| (*id, n.raft.term)).collect();
        match src.below(10) {
            0..=2 => c.tick_all(),
            3 => {
                let id = IDS[src.below(3) as usize];
                let _ = c.node(id).propose(Bytes::from(format!("w{step}")));
                c.stabilize();
            }
            _ => {
                inject_raft(src, &mut c, mode, &mut out)?;
                if src.chance(50) {
                    c.stabilize();
                }
            }
        }
        check_raft_terms(&c, &terms)?;
        if let Some(v) = c.violations.first() {
            return Err(v.clone());
        }
    }
    c.stabilize();
    c.network.clear();
    for id in c.ids.clone() {
        c.restart(id).map_err(|e| format!("node {id} does not restart from its storage: {e}"))?;
    }
    out.recovered = recover_with(
        &mut c,
        |c| c.leader(),
        |c, leader| {
            let _ = c.node(leader).propose(Bytes::from_static(AFTER));
        },
    );
    if let Some(v) = c.violations.first() {
        return Err(v.clone());
    }
    if mode == Mode::Door && !out.recovered {
        return Err("after the restart the cluster did not elect a leader and commit a write".into());
    }
    Ok(out)
}

/// The write every run must commit after the restart (in `Mode::Door`).
const AFTER: &[u8] = b"after the attack";

/// What the recovery check needs of a cluster.
trait Recoverable {
    fn tick_all(&mut self);
    fn committed_on_majority(&self, data: &[u8]) -> bool;
}

impl Recoverable for RaftCluster {
    fn tick_all(&mut self) {
        RaftCluster::tick_all(self);
    }
    fn committed_on_majority(&self, data: &[u8]) -> bool {
        RaftCluster::committed_on_majority(self, data)
    }
}

impl Recoverable for PaxosCluster {
    fn tick_all(&mut self) {
        PaxosCluster::tick_all(self);
    }
    fn committed_on_majority(&self, data: &[u8]) -> bool {
        PaxosCluster::committed_on_majority(self, data)
    }
}

/// Ticks for at most `RECOVERY_TICKS`, proposing [`AFTER`] on the leader every few ticks, until a
/// majority applied it.
fn recover_with<C: Recoverable>(c: &mut C, leader: impl Fn(&C) -> Option<u64>, propose: impl Fn(&mut C, u64)) -> bool {
    for tick in 0..RECOVERY_TICKS {
        if c.committed_on_majority(AFTER) {
            return true;
        }
        if tick % 20 == 0 {
            if let Some(id) = leader(c) {
                propose(c, id);
            }
        }
        c.tick_all();
    }
    c.committed_on_majority(AFTER)
}

// ------------------------------------------------------------------------------------ Multi-Paxos

/// A cluster of Multi-Paxos nodes on `MemStorage` driven by hand.
pub struct PaxosCluster {
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, paxos::RawNode<paxos::MemStorage>>,
    pub storages: BTreeMap<u64, paxos::MemStorage>,
    pub network: Vec<(u64, u64, Bytes)>,
    pub applied: BTreeMap<u64, Vec<(u64, Bytes)>>,
    pub config: paxos::Config,
    pub violations: Vec<String>,
    pub strict: bool,
    durable: Box<dyn PaxosDurable>,
}

impl PaxosCluster {
    /// Nodes `1..=n` of a new cluster, persisting into their `MemStorage`.
    pub fn new(n: u64, seed: u64) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let storages: BTreeMap<u64, paxos::MemStorage> =
            ids.iter().map(|id| (*id, paxos::MemStorage::new(&ids))).collect();
        Self::with_durable(storages.clone(), Box::new(PaxosInMemory(storages)), seed)
    }

    /// A new cluster of the nodes of `storages` (which know the members), persisting through
    /// `durable`.
    pub fn with_durable(storages: BTreeMap<u64, paxos::MemStorage>, durable: Box<dyn PaxosDurable>, seed: u64) -> Self {
        let ids: Vec<u64> = storages.keys().copied().collect();
        let config = paxos::Config { election_tick: 10, heartbeat_tick: 1, seed, ..paxos::Config::default() };
        let nodes = ids
            .iter()
            .map(|id| {
                let node = paxos::RawNode::new(*id, config.clone(), storages[id].clone(), &ids, 0);
                (*id, node.expect("a valid configuration"))
            })
            .collect();
        PaxosCluster {
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

    pub fn node(&mut self, id: u64) -> &mut paxos::RawNode<paxos::MemStorage> {
        self.nodes.get_mut(&id).expect("a node of the cluster")
    }

    pub fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().expect("no Ready is outstanding");
            if let Err(e) = self.durable.persist(id, &rd) {
                self.violations.push(format!("node {id}: storage refused a Ready: {e}"));
            }
            for (to, frame) in rd.messages.iter().chain(&rd.persisted_messages) {
                self.network.push((id, *to, frame.clone()));
            }
            for entry in &rd.committed_entries {
                if entry.kind == paxos::EntryKind::Normal {
                    self.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
                }
            }
            self.node(id).advance(rd.mark()).expect("the outstanding Ready");
        }
    }

    pub fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    pub fn deliver(&mut self, to: u64, frame: &Bytes) -> Result<()> {
        self.deliver_from(to, frame, None)
    }

    pub fn deliver_from(&mut self, to: u64, frame: &Bytes, sender: Option<u64>) -> Result<()> {
        let Some(node) = self.nodes.get_mut(&to) else { return Ok(()) };
        let outcome = node.step_from(frame, sender);
        self.process(to);
        outcome
    }

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
        self.nodes.values().find(|n| n.paxos.role == Role::Leader).map(|n| n.paxos.id)
    }

    pub fn elect(&mut self, id: u64) {
        self.node(id).campaign();
        self.stabilize();
    }

    pub fn await_leader(&mut self, max_ticks: usize) -> Option<u64> {
        for _ in 0..max_ticks {
            if self.leader().is_some() {
                break;
            }
            self.tick_all();
        }
        self.leader()
    }

    pub fn committed_on_majority(&self, data: &[u8]) -> bool {
        let count = self.applied.values().filter(|entries| entries.iter().any(|(_, d)| d.as_ref() == data)).count();
        count > self.ids.len() / 2
    }

    /// Rebuilds node `id` from its storage, reopened as after a crash.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.applied.remove(&id);
        let storage = self.durable.reopen(id)?;
        let node = paxos::RawNode::new(id, self.config.clone(), storage.clone(), &self.ids, 0)?;
        self.storages.insert(id, storage);
        self.nodes.insert(id, node);
        Ok(())
    }

    fn fingerprint(&self, id: u64) -> (paxos::Ballot, u64, u64, u64, Role, usize, usize) {
        let p = &self.nodes[&id].paxos;
        (p.promised, p.max_round_seen, p.commit, p.leader, p.role, p.slots.len(), p.msgs.len())
    }
}

/// The message types that carry a leader's (or an acceptor's) authority.
fn paxos_dangerous(msg_type: paxos::MessageType) -> bool {
    use paxos::MessageType as T;
    matches!(
        msg_type,
        T::Accept | T::Commit | T::CatchUp | T::Snapshot | T::Promise | T::PromisePage | T::Accepted | T::CommitAck
    )
}

/// Half plausible, half wild, as for Raft (see `raft_message`).
fn paxos_message(src: &mut impl Source, c: &PaxosCluster, target: u64, mode: Mode) -> paxos::Message {
    let mut m = paxos_wild_message(src, c, target, mode);
    if src.chance(50) {
        let node = &c.nodes[&target].paxos;
        m.from = other_member(src, target);
        m.to = target;
        m.ballot.node = m.from;
        m.index = near_number(src, node.commit + 1);
        m.last_index = near_number(src, m.index);
        m.commit = near_number(src, node.commit);
        let carries_slots = matches!(
            m.msg_type,
            paxos::MessageType::Accept | paxos::MessageType::CatchUp | paxos::MessageType::Promise
        );
        m.entries = if carries_slots { paxos_slots(src, &m, node.commit, true) } else { Vec::new() };
        let carries_snapshot = matches!(m.msg_type, paxos::MessageType::Snapshot | paxos::MessageType::Promise);
        m.snapshot = (carries_snapshot && src.chance(50)).then(|| paxos_snapshot(src, &m, target));
    }
    m
}

fn paxos_wild_message(src: &mut impl Source, c: &PaxosCluster, target: u64, mode: Mode) -> paxos::Message {
    let node = &c.nodes[&target].paxos;
    let msg_type = paxos::MessageType::ALL[src.below(14) as usize];
    let to = if src.chance(90) { target } else { any_id(src, target) };
    let from = any_id(src, target);
    let round = any_term(src, node.promised.round, mode, paxos_dangerous(msg_type));
    let ballot_node = if src.chance(80) { from } else { any_id(src, target) };
    let mut m = paxos::Message::new(msg_type, from, to, paxos::Ballot::new(round, ballot_node));
    m.index = any_number(src, node.commit + 1);
    m.last_index = any_number(src, m.index);
    m.commit = any_number(src, node.commit);
    m.context = if src.chance(20) { any_bytes(src, 16) } else { Bytes::new() };
    if src.chance(50) {
        m.entries = paxos_slots(src, &m, node.commit, false);
    }
    if src.chance(20) {
        m.commands = (0..src.below(3)).map(|_| any_bytes(src, 8)).collect();
    }
    if src.chance(10) {
        m.snapshot = Some(paxos_snapshot(src, &m, target));
    }
    m
}

fn paxos_slots(src: &mut impl Source, m: &paxos::Message, commit: u64, plausible: bool) -> Vec<paxos::AcceptedSlot> {
    let contiguous = plausible || src.chance(60);
    let mut slot = if plausible || src.chance(70) { commit } else { any_number(src, commit) };
    (0..1 + src.below(4))
        .map(|_| {
            slot = if contiguous { slot.saturating_add(1) } else { any_number(src, slot) };
            let ballot = if plausible || src.chance(80) {
                m.ballot
            } else {
                paxos::Ballot::new(any_number(src, 1), any_id(src, 0))
            };
            let round = if plausible || src.chance(80) { ballot.round.min(m.ballot.round) } else { any_number(src, 1) };
            let value = match src.below(6) {
                0 => paxos::Value::noop(round),
                1 => paxos::Value {
                    kind: paxos::ValueKind::Reconfig,
                    round,
                    commands: vec![paxos::encode_reconfig(any_number(src, 4), &any_ids(src, 0))],
                },
                2 => paxos::Value { kind: paxos::ValueKind::Reconfig, round, commands: vec![any_bytes(src, 12)] },
                _ => paxos::Value::batch(round, vec![any_bytes(src, 8)]),
            };
            paxos::AcceptedSlot { slot, ballot, value }
        })
        .collect()
}

fn paxos_snapshot(src: &mut impl Source, m: &paxos::Message, target: u64) -> paxos::Snapshot {
    let index = any_number(src, m.commit);
    paxos::Snapshot {
        index,
        term: any_number(src, m.ballot.round),
        members: if src.chance(70) { vec![1, 2, 3] } else { any_ids(src, target) },
        pending: if src.chance(20) { vec![(index.saturating_add(2), any_ids(src, target))] } else { Vec::new() },
        data: any_bytes(src, 8),
    }
}

/// Promised ballots never decrease and their rounds never pass `TERM_MAX`.
fn check_paxos_ballots(c: &PaxosCluster, before: &BTreeMap<u64, paxos::Ballot>) -> std::result::Result<(), String> {
    for (id, node) in &c.nodes {
        let promised = node.paxos.promised;
        if promised.round > TERM_MAX || before.get(id).is_some_and(|b| promised < *b) {
            return Err(format!("node {id}: promise went from {:?} to {promised}", before.get(id)));
        }
    }
    Ok(())
}

fn inject_paxos(
    src: &mut impl Source,
    c: &mut PaxosCluster,
    mode: Mode,
    out: &mut Outcome,
) -> std::result::Result<(), String> {
    let target = IDS[src.below(3) as usize];
    let m = paxos_message(src, c, target, mode);
    let sender = any_sender(src, m.from, target);
    let before = c.fingerprint(target);
    out.injected += 1;
    match c.nodes.get_mut(&target).expect("a node").step_from(&paxos::wire::encode(&m), sender) {
        Ok(()) => {}
        Err(Error::Protocol(_)) => {
            out.refused += 1;
            if c.fingerprint(target) != before {
                return Err(format!("refused {m:?} changed node {target}"));
            }
        }
        Err(other) => return Err(format!("{m:?} gave {other:?}, not a protocol error")),
    }
    c.process(target);
    Ok(())
}

/// One structure-aware fuzz run against a 3-node Multi-Paxos cluster (see [`run_raft_hostile`]).
pub fn run_paxos_hostile(src: &mut impl Source, mode: Mode, steps: usize) -> std::result::Result<Outcome, String> {
    run_paxos_hostile_on(src, mode, steps, |seed| PaxosCluster::new(3, seed))
}

/// [`run_paxos_hostile`] on the 3-node cluster `make(seed)` builds (nodes 1, 2 and 3).
pub fn run_paxos_hostile_on(
    src: &mut impl Source,
    mode: Mode,
    steps: usize,
    make: impl FnOnce(u64) -> PaxosCluster,
) -> std::result::Result<Outcome, String> {
    let mut c = make(src.next_u64());
    c.strict = mode == Mode::Door;
    let mut out = Outcome::default();
    c.elect(1);
    for step in 0..steps {
        let ballots: BTreeMap<u64, paxos::Ballot> = c.nodes.iter().map(|(id, n)| (*id, n.paxos.promised)).collect();
        match src.below(10) {
            0..=2 => c.tick_all(),
            3 => {
                let id = IDS[src.below(3) as usize];
                let _ = c.node(id).propose(Bytes::from(format!("w{step}")));
                c.stabilize();
            }
            _ => {
                inject_paxos(src, &mut c, mode, &mut out)?;
                if src.chance(50) {
                    c.stabilize();
                }
            }
        }
        check_paxos_ballots(&c, &ballots)?;
        if let Some(v) = c.violations.first() {
            return Err(v.clone());
        }
    }
    c.stabilize();
    c.network.clear();
    for id in c.ids.clone() {
        c.restart(id).map_err(|e| format!("node {id} does not restart from its storage: {e}"))?;
    }
    out.recovered = recover_with(
        &mut c,
        |c| c.leader(),
        |c, leader| {
            let _ = c.node(leader).propose(Bytes::from_static(AFTER));
        },
    );
    if let Some(v) = c.violations.first() {
        return Err(v.clone());
    }
    if mode == Mode::Door && !out.recovered {
        return Err("after the restart the cluster did not elect a leader and commit a write".into());
    }
    Ok(out)
}
