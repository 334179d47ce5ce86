//! The Multi-Paxos adapter (`paxos::RawNode` on `paxos::MemStorage`) and the Paxos safety
//! properties as invariants (Paxos Made Simple §2): at most one value chosen per slot; a durable
//! promise never goes back; an acceptor never holds a slot accepted above its promise; once a value
//! is chosen at ballot b, every value accepted at a higher ballot for that slot is that value; one
//! ballot proposes one value per slot; chosen values were proposed by clients (or are no-ops).
//! Applied prefixes and persist-before-send are the generic checks of `invariants.rs`.
//!
//! The simulator's applied history is indexed by slot: each decided slot is one applied item
//! (a no-op is `(0, empty)`, a batch of one command is that command, a larger batch the
//! length-prefixed concatenation of its commands), so indexes stay contiguous.
//!
//! Every variant's workload also asks leaders for leadership transfers (every
//! `TRANSFER_EVERY_VALUES`th workload value proposed at a leader), and the small
//! `max_size_per_msg` makes most Phase 1 answers paginated (`PROMISE_PAGE`).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::engine::{self, ClusterView};
use super::invariants::DurableFacts;
use super::trace::{hash_bytes, mix};
use super::{Checks, NodeOptions, Protocol, Report, SimConfig};
use crate::contract::ProtocolNode;
use crate::paxos::{Ballot, Config, HardState, MemStorage, Message, RawNode, ReadOnlyOption, Ready, Value, ValueKind};
use crate::role::Role;

/// The data of the liveness phase's probe (see `engine.rs`).
const LIVENESS_VALUE: &[u8] = b"liveness-probe";

/// A workload value `v` proposed at a leader with `v % TRANSFER_EVERY_VALUES ==
/// TRANSFER_VALUE_REMAINDER` asks for a leadership transfer instead (never a reconfiguration
/// value, which is a multiple of 40).
const TRANSFER_EVERY_VALUES: u64 = 20;
const TRANSFER_VALUE_REMAINDER: u64 = 7;

/// Runs one simulation of Multi-Paxos.
pub fn run_paxos(cfg: &SimConfig) -> Report {
    engine::run::<PaxosAdapter>(cfg)
}

/// A ballot as one ordered number for the generic checks (term = ballot): unique per leader, so
/// "one leader per term" is "one leader per ballot". Node ids in the simulator are below 2^16.
pub fn ballot_term(ballot: Ballot) -> u64 {
    ballot.round << 16 | (ballot.node & 0xffff)
}

/// Runs one simulation of Multi-Paxos in which the leader also changes the membership: every 40th
/// workload value proposed at a leader becomes a reconfiguration that removes one node or restores
/// the full membership. Both have the same majority size for 5 nodes (3), so the checker's
/// "chosen" rule stays exact. Run it without the liveness phase: a removed node stops applying.
pub fn run_paxos_with_reconfiguration(cfg: &SimConfig) -> Report {
    engine::run::<PaxosReconfigAdapter>(cfg)
}

/// Runs one simulation of Multi-Paxos with lease-based reads. Leases rely on ticks advancing at
/// the same rate everywhere: a paused leader's clock stops while the others' run, which no lease
/// survives, so callers run it without pauses (as they would keep a real lease holder's clock
/// drift and stalls bounded).
pub fn run_paxos_with_lease_reads(cfg: &SimConfig) -> Report {
    engine::run::<PaxosLeaseAdapter>(cfg)
}

/// A Multi-Paxos node as the simulator drives it; `RECONFIG` turns on membership changes and
/// `LEASE` lease-based reads.
pub struct PaxosNodeAdapter<const RECONFIG: bool, const LEASE: bool = false> {
    node: RawNode<MemStorage>,
    all_members: Vec<u64>,
}

/// The adapter of `run_paxos`.
pub type PaxosAdapter = PaxosNodeAdapter<false>;
/// The adapter of `run_paxos_with_reconfiguration`.
pub type PaxosReconfigAdapter = PaxosNodeAdapter<true>;
/// The adapter of `run_paxos_with_lease_reads`.
pub type PaxosLeaseAdapter = PaxosNodeAdapter<false, true>;

impl<const RECONFIG: bool, const LEASE: bool> PaxosNodeAdapter<RECONFIG, LEASE> {
    pub fn raw_node(&self) -> &RawNode<MemStorage> {
        &self.node
    }
}

impl<const RECONFIG: bool, const LEASE: bool> Protocol for PaxosNodeAdapter<RECONFIG, LEASE> {
    type Node = RawNode<MemStorage>;
    type Durable = MemStorage;
    type Checker = PaxosChecker;

    const NAME: &'static str = "paxos";

    fn new_durable(_id: u64, members: &[u64]) -> MemStorage {
        MemStorage::new(members)
    }

    fn start(
        id: u64,
        members: &[u64],
        options: &NodeOptions,
        durable: &MemStorage,
        applied: u64,
    ) -> Result<Self, String> {
        let config = Config {
            election_tick: options.election_tick,
            heartbeat_tick: options.heartbeat_tick,
            check_quorum: options.check_quorum,
            seed: options.seed,
            // Small limits so that runs exercise batching, the window and message splitting.
            max_size_per_msg: 64,
            max_inflight_slots: 8,
            max_batch_commands: 4,
            read_only_option: if LEASE { ReadOnlyOption::LeaseBased } else { ReadOnlyOption::Safe },
            ..Config::default()
        };
        let node = RawNode::new(id, config, durable.clone(), members, applied).map_err(|e| e.to_string())?;
        Ok(PaxosNodeAdapter { node, all_members: members.to_vec() })
    }

    fn core(&self) -> &RawNode<MemStorage> {
        &self.node
    }

    fn core_mut(&mut self) -> &mut RawNode<MemStorage> {
        &mut self.node
    }

    /// At a leader, some workload values become a leadership transfer (every variant) or a
    /// membership change (`RECONFIG`) instead; the value itself is then reported dropped.
    fn propose(&mut self, data: Bytes) -> Result<(), String> {
        let value = <[u8; 8]>::try_from(data.as_ref()).map(u64::from_le_bytes).ok();
        if let (Some(value), Role::Leader) = (value, self.node.paxos.role) {
            if value % TRANSFER_EVERY_VALUES == TRANSFER_VALUE_REMAINDER && self.all_members.len() > 1 {
                let n = self.all_members.len();
                let mut pick = (value / TRANSFER_EVERY_VALUES) as usize % n;
                if self.all_members[pick] == self.node.paxos.id {
                    pick = (pick + 1) % n;
                }
                self.node.transfer_leader(self.all_members[pick]).map_err(|e| e.to_string())?;
                return Err(format!("value {value} asked for a leadership transfer to {}", self.all_members[pick]));
            }
        }
        if RECONFIG && self.node.paxos.role == Role::Leader {
            let value = value.unwrap_or(1);
            if value % 40 == 0 {
                let latest = self.node.status().members;
                let members: Vec<u64> = if latest.len() == self.all_members.len() {
                    let removed = self.all_members[(value / 40) as usize % self.all_members.len()];
                    self.all_members.iter().copied().filter(|id| *id != removed).collect()
                } else {
                    self.all_members.clone()
                };
                return self.node.propose_reconfig(&members).map(|_| ()).map_err(|e| e.to_string());
            }
        }
        self.node.propose(data).map(|_| ()).map_err(|e| e.to_string())
    }

    fn committed(ready: &Ready) -> Vec<(u64, u64, Bytes)> {
        if ready.committed_through == 0 {
            return Vec::new();
        }
        let mut by_slot: BTreeMap<u64, Vec<&crate::paxos::Entry>> = BTreeMap::new();
        for entry in &ready.committed_entries {
            by_slot.entry(entry.index).or_default().push(entry);
        }
        (ready.committed_from..=ready.committed_through)
            .map(|slot| match by_slot.get(&slot).map(Vec::as_slice) {
                None | Some([]) => (slot, 0, Bytes::new()),
                Some([one]) => (slot, one.term, one.data.clone()),
                Some(many) => {
                    let mut data = Vec::new();
                    for entry in many {
                        data.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
                        data.extend_from_slice(&entry.data);
                    }
                    (slot, many[0].term, Bytes::from(data))
                }
            })
            .collect()
    }

    fn leads_by_transfer(&self) -> bool {
        self.node.paxos.leading_by_transfer
    }

    /// A Paxos round is shared by every node that campaigns in it; the ballot (round and node)
    /// is unique per leader.
    fn term(&self) -> u64 {
        ballot_term(self.node.paxos.promised)
    }

    fn hard_state(&self) -> DurableFacts {
        facts(self.node.paxos.hard_state())
    }

    fn durable_hard_state(durable: &MemStorage) -> DurableFacts {
        facts(durable.rl().hard_state())
    }

    fn describe(&self) -> String {
        let s = self.node.status();
        let p = &self.node.paxos;
        let mut text = format!(
            "{} ballot {} leader {} commit {} applied {} slots [{}, {}] next {} queued {} transfer to {}",
            s.role.as_str(),
            s.ballot,
            s.leader,
            s.commit,
            s.applied,
            s.first_slot,
            s.last_slot,
            p.next_slot,
            p.queued_batches(),
            p.transfer_target
        );
        for peer in &s.progress {
            text += &format!(
                "; peer {} decided {}{}",
                peer.id,
                peer.decided,
                if peer.recent_active { "" } else { " inactive" }
            );
        }
        text
    }

    fn describe_message(m: &Message) -> String {
        let mut text = format!("{:?} b{} i{} l{} c{}", m.msg_type, m.ballot, m.index, m.last_index, m.commit);
        if let (Some(first), Some(last)) = (m.entries.first(), m.entries.last()) {
            text += &format!(" [{}@{}..{}@{}]", first.slot, first.ballot, last.slot, last.ballot);
        }
        if let Some(s) = &m.snapshot {
            text += &format!(" snapshot {}", s.index);
        }
        text
    }
}

/// A Paxos hard state as the generic checks read it: the promise is the term, and there is no vote.
fn facts(hs: HardState) -> DurableFacts {
    DurableFacts { term: ballot_term(hs.promised), vote: 0, commit: hs.commit }
}

/// The fingerprint of a slot value: kind, origin round and commands.
pub fn value_hash(value: &Value) -> u64 {
    let mut hash = mix(value.kind as u64, value.round);
    for command in &value.commands {
        hash = mix(hash, hash_bytes(command));
    }
    hash
}

/// One acceptor's durable slots as the checks see them: slot → (ballot, value fingerprint).
pub type AcceptorView = BTreeMap<u64, (Ballot, u64)>;

/// A chosen value: its fingerprint and the lowest ballot it was seen chosen at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    pub hash: u64,
    pub ballot: Ballot,
}

/// The Paxos invariants over the acceptors' durable state; chosen values are remembered forever.
#[derive(Debug, Default)]
pub struct PaxosChecker {
    /// The last durable promise seen per node (index `id - 1`).
    promises: Vec<Ballot>,
    /// Every slot seen chosen so far.
    pub chosen: BTreeMap<u64, Chosen>,
}

impl PaxosChecker {
    /// A durable promise never goes back (cheap: every step).
    pub fn observe_promise(&mut self, id: u64, promised: Ballot) -> Result<(), String> {
        let i = id as usize - 1;
        if self.promises.len() <= i {
            self.promises.resize(i + 1, Ballot::ZERO);
        }
        if promised < self.promises[i] {
            return Err(format!(
                "promise went back: node {id} durably promised {} after {}",
                promised, self.promises[i]
            ));
        }
        self.promises[i] = promised;
        Ok(())
    }

    /// The full check over every acceptor's durable `(promise, slots)`; `quorum` acceptors with
    /// the same ballot and value at a slot make it chosen.
    pub fn check_acceptors(&mut self, acceptors: &[(u64, Ballot, AcceptorView)], quorum: usize) -> Result<(), String> {
        let mut per_slot: BTreeMap<u64, Vec<(u64, Ballot, u64)>> = BTreeMap::new();
        for (id, promised, slots) in acceptors {
            for (slot, (ballot, hash)) in slots {
                if ballot > promised {
                    return Err(format!(
                        "accepted above promise: node {id} holds slot {slot} at ballot {ballot} but promised {promised}"
                    ));
                }
                per_slot.entry(*slot).or_default().push((*id, *ballot, *hash));
            }
        }
        for (slot, accepted) in &per_slot {
            let mut by_ballot: BTreeMap<Ballot, (u64, usize)> = BTreeMap::new();
            for (id, ballot, hash) in accepted {
                let entry = by_ballot.entry(*ballot).or_insert((*hash, 0));
                if entry.0 != *hash {
                    return Err(format!(
                        "one ballot, two values: ballot {ballot} has different values at slot {slot} (node {id})"
                    ));
                }
                entry.1 += 1;
            }
            for (ballot, (hash, count)) in &by_ballot {
                if *count < quorum {
                    continue;
                }
                match self.chosen.get_mut(slot) {
                    Some(known) if known.hash != *hash => {
                        return Err(format!(
                            "two values chosen at slot {slot}: {:#x} at ballot {} and {hash:#x} at ballot {ballot}",
                            known.hash, known.ballot
                        ));
                    }
                    Some(known) => known.ballot = known.ballot.min(*ballot),
                    None => {
                        self.chosen.insert(*slot, Chosen { hash: *hash, ballot: *ballot });
                    }
                }
            }
            if let Some(chosen) = self.chosen.get(slot) {
                for (id, ballot, hash) in accepted {
                    if *ballot > chosen.ballot && *hash != chosen.hash {
                        return Err(format!(
                            "value chosen at slot {slot} at ballot {} but node {id} accepted another value at \
                             the higher ballot {ballot}",
                            chosen.ballot
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl<const R: bool, const L: bool> Checks<PaxosNodeAdapter<R, L>> for PaxosChecker {
    fn check(&mut self, view: &ClusterView<'_, PaxosNodeAdapter<R, L>>, full: bool) -> Result<(), String> {
        for id in 1..=view.len() as u64 {
            let promised = view.durable(id).rl().hard_state().promised;
            self.observe_promise(id, promised)?;
        }
        if !full {
            return Ok(());
        }
        let mut acceptors = Vec::with_capacity(view.len());
        for id in 1..=view.len() as u64 {
            let core = view.durable(id).rl();
            let mut slots = AcceptorView::new();
            for (slot, accepted) in core.accepted() {
                check_proposed(id, *slot, &accepted.value)?;
                slots.insert(*slot, (accepted.ballot, value_hash(&accepted.value)));
            }
            acceptors.push((id, core.hard_state().promised, slots));
        }
        self.check_acceptors(&acceptors, view.len() / 2 + 1)
    }
}

/// Chosen values were proposed: every command is a workload value (8 bytes) or the liveness probe;
/// no-ops carry nothing.
fn check_proposed(id: u64, slot: u64, value: &Value) -> Result<(), String> {
    let ok = match value.kind {
        ValueKind::Noop => value.commands.is_empty(),
        ValueKind::Batch => {
            !value.commands.is_empty() && value.commands.iter().all(|c| c.len() == 8 || c.as_ref() == LIVENESS_VALUE)
        }
        ValueKind::Reconfig => crate::paxos::membership::reconfig_of(value).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("node {id} holds at slot {slot} a value no client proposed: {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(round: u64, node: u64) -> Ballot {
        Ballot::new(round, node)
    }

    #[test]
    fn two_values_chosen_at_one_slot_are_caught() {
        let mut checker = PaxosChecker::default();
        let acceptors = vec![
            (1, b(2, 1), AcceptorView::from([(1, (b(1, 1), 10))])),
            (2, b(2, 1), AcceptorView::from([(1, (b(1, 1), 10))])),
            (3, b(2, 1), AcceptorView::from([(1, (b(2, 1), 10))])),
        ];
        checker.check_acceptors(&acceptors, 2).unwrap();
        assert_eq!(checker.chosen[&1].hash, 10);
        let later = vec![
            (1, b(3, 2), AcceptorView::from([(1, (b(3, 2), 11))])),
            (2, b(3, 2), AcceptorView::from([(1, (b(3, 2), 11))])),
            (3, b(3, 2), AcceptorView::new()),
        ];
        assert!(checker.check_acceptors(&later, 2).is_err(), "chosen values are remembered");
    }

    #[test]
    fn higher_ballot_with_another_value_and_accept_above_promise_are_caught() {
        let mut checker = PaxosChecker::default();
        let acceptors = vec![
            (1, b(3, 1), AcceptorView::from([(1, (b(1, 1), 10))])),
            (2, b(3, 1), AcceptorView::from([(1, (b(1, 1), 10))])),
            (3, b(3, 1), AcceptorView::from([(1, (b(3, 1), 12))])),
        ];
        assert!(checker.check_acceptors(&acceptors, 2).unwrap_err().contains("higher ballot"));
        let above = vec![(1, b(1, 1), AcceptorView::from([(1, (b(2, 1), 10))]))];
        assert!(PaxosChecker::default().check_acceptors(&above, 1).unwrap_err().contains("above promise"));
    }

    #[test]
    fn promise_going_back_is_caught() {
        let mut checker = PaxosChecker::default();
        checker.observe_promise(1, b(2, 3)).unwrap();
        checker.observe_promise(1, b(3, 1)).unwrap();
        assert!(checker.observe_promise(1, b(3, 0)).is_err());
    }

    #[test]
    fn a_few_seeds_run_clean() {
        for seed in 0..5 {
            let report = run_paxos(&SimConfig::new(seed));
            assert!(report.ok, "{report}");
        }
    }
}
