//! The Multi-Paxos state machine: proposer, acceptor and learner in one node. Sans-IO: `tick`,
//! `step`, `propose_many` and `read_index` change state and queue messages in `msgs`; `RawNode`
//! turns that into Ready batches.
//!
//! `Paxos` holds what every role reads (the promise, the slots, the commit index, the membership)
//! and composes each role's own state (`core/state.rs`); each role's methods live in its file:
//! `core/acceptor.rs` (promises, accepts, learning decided slots), `core/phase1.rs` (a
//! candidacy), `core/phase2.rs` (the leader's proposals, decisions and catch-up), `core/reads.rs`
//! (read index and lease) and `core/transfer.rs` (leadership handover). This file keeps the
//! shared helpers, the ballot guards and reply builders every handler uses, `tick` and `step`.
//!
//! Invariants kept here (checked by the simulator's `PaxosChecker`, and the cheap ones by
//! `debug_assert_invariants` after every tick and step in debug builds):
//! - `promised` never decreases, and every slot in `slots` was accepted at a ballot `<= promised`;
//! - a node leads only its own ballot `promised`, computed from persisted state, so never reused;
//! - `commit` only grows, and every slot `<= commit` held in `slots` holds the chosen value.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

mod acceptor;
mod phase1;
mod phase2;
mod reads;
mod state;
mod transfer;

use self::state::{Candidacy, Handover, Proposals, Reads};
use super::config::Config;
use super::membership::Membership;
use super::message::{AcceptedSlot, Ballot, HardState, Message, MessageType, Snapshot, Value, ValueKind};
use super::storage::PaxosStorage;
use super::validate::{self};
use super::wire;
use crate::contract::ReadState;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::role::Role;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The follower's commit index, from its last reply. Invariant: at most the leader's commit
    /// once the follower caught up.
    pub decided: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// No snapshot is sent again before this tick (one is in flight).
    pub snapshot_until_tick: u64,
}

pub struct Paxos<S: PaxosStorage> {
    pub id: u64,
    pub cfg: Config,
    pub storage: S,
    /// The configuration of every slot from `first_slot` on, as far as decided slots tell.
    pub membership: Membership,
    pub role: Role,
    /// The leader this node follows (0: unknown). Equals `promised.node` once it heard that leader.
    pub leader: u64,
    /// The highest ballot promised. Invariant: never decreases, also across restarts.
    pub promised: Ballot,
    /// The highest round seen in any message (Nacks included): the next ballot is above it.
    pub max_round_seen: u64,
    /// Every slot up to here is chosen and held (or in the snapshot).
    pub commit: u64,
    /// Slots handed to the application and acknowledged by `advance`.
    pub applied: u64,
    /// The last slot handed to the application in an outstanding Ready. Invariant: `applied <= applying <= commit`.
    pub applying: u64,
    /// First slot held in memory: everything below is in the snapshot.
    pub first_slot: u64,
    /// Accepted (and decided) slots from `first_slot` on.
    pub slots: BTreeMap<u64, AcceptedSlot>,
    /// Slots changed since the last Ready: they must be persisted before its messages leave.
    pub unstable: BTreeMap<u64, AcceptedSlot>,
    /// A snapshot received from a leader (or a promiser) for the application to restore.
    pub pending_snapshot: Option<Snapshot>,
    pub msgs: Vec<Message>,
    pub read_states: Vec<ReadState>,
    rng: Rng,
    tick_count: u64,
    /// `tick_count` when this node last heard the leader it follows.
    heard_leader_at: Option<u64>,
    election_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_election_timeout: u64,
    /// Phase 1 of a candidacy (candidate state).
    candidacy: Candidacy,
    // Leader state.
    /// The next slot to assign. Invariant (leader): `commit < next_slot <= commit + max_inflight_slots + 1`.
    pub next_slot: u64,
    /// The last slot of the Phase 1 range; reads wait until `commit >= phase1_end`.
    pub phase1_end: u64,
    /// Payload bytes queued or in flight and not yet decided.
    pub uncommitted_bytes: u64,
    pub progress: BTreeMap<u64, Progress>,
    /// Values waiting for a slot and the slots in flight (leader state).
    proposals: Proposals,
    /// Read-index requests and the lease that may answer them.
    reads: Reads,
    /// A leadership transfer in progress.
    handover: Handover,
    /// The acceptor leadership is being handed to (0: none). Invariant: 0 unless leader. While
    /// set, proposals are dropped.
    pub transfer_target: u64,
    /// This leadership was handed over: the Phase 1 that won it started on `TimeoutNow`.
    pub leading_by_transfer: bool,
}

impl<S: PaxosStorage> Paxos<S> {
    /// Builds a node from its storage. `members` is used when the storage holds none.
    pub fn new(id: u64, cfg: Config, storage: S, members: &[u64]) -> Result<Self> {
        cfg.validate()?;
        if id == 0 {
            return Err(Error::config("id", "must not be 0"));
        }
        let hard_state = storage.hard_state();
        let snapshot = storage.snapshot();
        let mut membership = match storage.membership() {
            Some(membership) => membership,
            None => {
                if members.is_empty() {
                    return Err(Error::config("members", "must not be empty"));
                }
                if members.contains(&0) {
                    return Err(Error::config("members", "0 is not a node id"));
                }
                Membership::new(snapshot.index + 1, members)
            }
        };
        let slots: BTreeMap<u64, AcceptedSlot> = storage.accepted_slots().into_iter().map(|s| (s.slot, s)).collect();
        let commit = hard_state.commit.max(snapshot.index);
        for slot in snapshot.index + 1..=commit {
            match slots.get(&slot) {
                Some(accepted) => membership.on_chosen(slot, &accepted.value),
                None => {
                    return Err(Error::Protocol(format!("storage lacks slot {slot} below its commit index {commit}")))
                }
            }
        }
        let rng = Rng::from_pair(cfg.seed, id);
        let mut node = Paxos {
            id,
            storage,
            membership,
            role: Role::Follower,
            leader: 0,
            promised: hard_state.promised,
            max_round_seen: hard_state.promised.round,
            commit,
            applied: snapshot.index,
            applying: snapshot.index,
            first_slot: snapshot.index + 1,
            slots,
            unstable: BTreeMap::new(),
            pending_snapshot: None,
            msgs: Vec::new(),
            read_states: Vec::new(),
            rng,
            tick_count: 0,
            heard_leader_at: None,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            candidacy: Candidacy::default(),
            proposals: Proposals::default(),
            reads: Reads::default(),
            handover: Handover::default(),
            next_slot: commit + 1,
            phase1_end: 0,
            uncommitted_bytes: 0,
            progress: BTreeMap::new(),
            transfer_target: 0,
            leading_by_transfer: false,
            cfg,
        };
        node.reset_election_timeout();
        node.refresh_role();
        Ok(node)
    }

    pub fn hard_state(&self) -> HardState {
        HardState { promised: self.promised, commit: self.commit }
    }

    /// Every other node of a configuration governing an undecided slot.
    fn peers(&self) -> Vec<u64> {
        self.membership.nodes_from(self.commit + 1).into_iter().filter(|id| *id != self.id).collect()
    }

    /// Whether this node is an acceptor of a configuration governing an undecided slot.
    pub fn is_member(&self) -> bool {
        self.membership.is_node_from(self.commit + 1, self.id)
    }

    /// Whether `voters` (this node included when it is one) holds a quorum of every configuration
    /// governing an undecided slot: what confirms a leadership for reads and check-quorum.
    fn has_quorums(&self, voters: &BTreeSet<u64>) -> bool {
        self.membership.has_quorums_from(self.commit + 1, voters)
    }

    /// A follower or learner whose membership changed takes the matching role.
    fn refresh_role(&mut self) {
        if self.role == Role::Follower || self.role == Role::Learner {
            self.role = if self.is_member() { Role::Follower } else { Role::Learner };
        }
    }

    /// The commit index moved to `commit`: decided reconfigurations take effect (above their
    /// slot plus α), fences of decided slots fall, a removed leader steps down.
    fn on_commit_advanced(&mut self, before: u64) {
        let mut reconfigured = false;
        for slot in before + 1..=self.commit {
            if let Some(accepted) = self.slots.get(&slot) {
                if accepted.value.kind == ValueKind::Reconfig {
                    let value = accepted.value.clone();
                    self.membership.on_chosen(slot, &value);
                    reconfigured = true;
                }
            }
        }
        if !self.proposals.fences.is_empty() {
            self.proposals.fences = self.proposals.fences.split_off(&(self.commit + 1));
        }
        // The nodes of the configurations governing undecided slots change only when a
        // reconfiguration is decided or the commit point passes the first slot of a configuration.
        if !reconfigured && !self.membership.changes_within(before + 2, self.commit + 1) {
            return;
        }
        if self.role == Role::Leader {
            if !self.is_member() {
                self.become_follower(0);
            } else {
                for peer in self.peers() {
                    self.progress.entry(peer).or_insert(Progress { recent_active: true, ..Default::default() });
                }
                if self.transfer_target != 0 && !self.membership.latest().contains(&self.transfer_target) {
                    // The target left the configuration: it could not lead.
                    self.transfer_target = 0;
                }
            }
        }
        self.refresh_role();
    }

    fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        let e = self.cfg.election_tick;
        self.randomized_election_timeout = self.rng.range(e, 2 * e);
    }

    fn send(&mut self, mut msg: Message) {
        msg.from = self.id;
        self.msgs.push(msg);
    }

    /// The acceptor's ballot guard, for every message a leader sends: one whose ballot is below
    /// the promise, or is not led by its sender, is answered with a Nack (naming the promise) and
    /// changes nothing. Returns whether `m` was refused.
    fn refuses_ballot_of(&mut self, m: &Message) -> bool {
        let refused = m.ballot < self.promised || m.ballot.node != m.from;
        if refused {
            self.nack(m.from);
        }
        refused
    }

    /// The leader's guard on replies: only an answer to this leadership's own ballot counts.
    fn answers_this_leadership(&self, m: &Message) -> bool {
        self.role == Role::Leader && m.ballot == self.promised
    }

    /// A reply of type `msg_type` to `m`, at `m`'s ballot.
    fn reply_to(&self, m: &Message, msg_type: MessageType) -> Message {
        Message::new(msg_type, self.id, m.from, m.ballot)
    }

    /// The answer to a leader's commit, catch-up or snapshot: this node's commit index.
    fn commit_ack(&self, m: &Message) -> Message {
        let mut reply = self.reply_to(m, MessageType::CommitAck);
        reply.commit = self.commit;
        reply
    }

    /// Accepts `(ballot, value)` at `slot` (in memory; persisted by the next Ready).
    fn store(&mut self, slot: u64, ballot: Ballot, value: Value) {
        if slot < self.first_slot {
            return;
        }
        let accepted = AcceptedSlot { slot, ballot, value };
        self.unstable.insert(slot, accepted.clone());
        self.slots.insert(slot, accepted);
    }

    fn become_follower(&mut self, leader: u64) {
        // A fresh draw on every change of ballot, as Raft draws one on every new term: otherwise the
        // survivors of a leader keep the timeouts they drew before, which are the larger ones
        // (the smallest draw is the one that elected that leader), and a failover waits longer.
        self.reset_election_timeout();
        self.role = if self.is_member() { Role::Follower } else { Role::Learner };
        self.leader = leader;
        self.candidacy.promises.clear();
        self.candidacy.prepared.clear();
        self.candidacy.highest_accepted.clear();
        self.candidacy.promise_pages.clear();
        self.candidacy.transfer_from = None;
        self.proposals.backlog.clear();
        self.proposals.batches.clear();
        self.proposals.batch_bytes_last = 0;
        self.uncommitted_bytes = 0;
        self.proposals.acks.clear();
        self.proposals.fences.clear();
        self.reads.lease_acks.clear();
        self.progress.clear();
        self.reads.waiting.clear();
        self.reads.pending.clear();
        self.transfer_target = 0;
        self.handover.elapsed_ticks = 0;
        self.handover.lease_surrendered = false;
        self.leading_by_transfer = false;
    }

    pub fn tick(&mut self) {
        let before = self.monotonic_state();
        self.tick_untracked();
        self.debug_assert_invariants(before);
    }

    fn tick_untracked(&mut self) {
        self.tick_count += 1;
        self.trim_to_storage();
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            if self.role == Role::Candidate {
                self.tick_candidate();
            }
            self.election_elapsed += 1;
            if self.election_elapsed >= self.randomized_election_timeout && self.is_member() {
                self.campaign();
            }
        }
    }

    /// Steps a message from a peer. It is validated first (`validate::check_message`): a
    /// refused one is `Error::Protocol` and changes nothing.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let before = self.monotonic_state();
        let result = self.step_validated(m);
        self.debug_assert_invariants(before);
        result
    }

    /// The promise and the commit index: neither ever decreases.
    fn monotonic_state(&self) -> (Ballot, u64) {
        (self.promised, self.commit)
    }

    /// The invariants the field comments state, checked cheaply in debug builds after every tick
    /// and step: the promise and the commit index never decrease, `applied <= applying <= commit`,
    /// memory starts right after the snapshot, a leader's window and a transfer only while leading,
    /// and at most `max_pending_reads` reads.
    fn debug_assert_invariants(&self, before: (Ballot, u64)) {
        let (promised, commit) = before;
        debug_assert!(self.promised >= promised, "promise went back from {promised} to {}", self.promised);
        debug_assert!(self.commit >= commit, "commit went back from {commit} to {}", self.commit);
        debug_assert!(
            self.applied <= self.applying && self.applying <= self.commit,
            "applied {} <= applying {} <= commit {} broken",
            self.applied,
            self.applying,
            self.commit
        );
        debug_assert!(self.first_slot <= self.commit + 1, "slot {} missing below memory", self.commit + 1);
        debug_assert!(self.transfer_target == 0 || self.role == Role::Leader, "a transfer target while not leader");
        debug_assert!(
            self.reads.waiting.len() + self.reads.pending.len() <= self.cfg.max_pending_reads,
            "more reads pending than max_pending_reads"
        );
        if self.role == Role::Leader {
            debug_assert!(
                self.commit < self.next_slot && self.next_slot <= self.commit + self.cfg.max_inflight_slots + 1,
                "leader window broken: commit {}, next slot {}",
                self.commit,
                self.next_slot
            );
        }
    }

    fn step_validated(&mut self, m: Message) -> Result<()> {
        validate::check_message(&m)?;
        self.max_round_seen = self.max_round_seen.max(m.ballot.round);
        match m.msg_type {
            MessageType::Prepare => self.handle_prepare(m),
            MessageType::Promise | MessageType::PromisePage => self.handle_promise(m),
            MessageType::Accept => self.handle_accept(m),
            MessageType::Accepted => self.handle_accepted(m),
            MessageType::Commit => self.handle_commit(m),
            MessageType::CommitAck => self.handle_commit_ack(m),
            MessageType::Nack => self.handle_nack(m),
            MessageType::CatchUp => self.handle_catch_up(m),
            MessageType::Snapshot => self.handle_snapshot(m),
            MessageType::Propose => {
                if self.role == Role::Leader {
                    // A forwarded proposal that cannot be taken is dropped, as a lost message would be.
                    let _ = self.propose_many(m.commands);
                }
            }
            MessageType::ReadIndex => {
                if self.role == Role::Leader {
                    let _ = self.leader_read(m.context, m.from);
                }
            }
            MessageType::ReadIndexResponse => {
                self.read_states.push(ReadState { index: m.index, context: m.context });
            }
            MessageType::TimeoutNow => self.handle_timeout_now(m),
        }
        Ok(())
    }

    /// Decided slots `applying+1..` as entries (no-ops skipped), whole slots, at most
    /// `max_bytes` payload bytes (at least one slot). Returns the entries and the last slot.
    pub fn next_committed(&self, max_bytes: u64) -> (Vec<super::message::Entry>, u64) {
        use super::message::{Entry, EntryKind};
        let mut entries = Vec::new();
        let mut last = self.applying;
        let mut bytes = 0;
        for slot in self.applying + 1..=self.commit {
            let accepted = self.slots.get(&slot).expect("every decided slot above the snapshot is held");
            let size = accepted.value.payload_size();
            if slot > self.applying + 1 && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            let kind = match accepted.value.kind {
                ValueKind::Noop => None,
                ValueKind::Batch => Some(EntryKind::Normal),
                ValueKind::Reconfig => Some(EntryKind::ConfChange),
            };
            if let Some(kind) = kind {
                for data in &accepted.value.commands {
                    entries.push(Entry { index: slot, term: accepted.value.round, kind, data: data.clone() });
                }
            }
            last = slot;
        }
        (entries, last)
    }

    /// Encoded messages drained from the outbox.
    pub fn take_messages(&mut self) -> Vec<(u64, Bytes)> {
        self.msgs.drain(..).map(|m| (m.to, wire::encode(&m))).collect()
    }

    pub fn pending_reads(&self) -> usize {
        self.reads.waiting.len() + self.reads.pending.len()
    }

    pub fn queued_batches(&self) -> usize {
        self.proposals.batches.len() + self.proposals.backlog.len()
    }
}
