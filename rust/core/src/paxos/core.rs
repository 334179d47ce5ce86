//! The Multi-Paxos state machine: proposer, acceptor and learner in one node. Sans-IO: `tick`,
//! `step`, `propose_many` and `read_index` change state and queue messages in `msgs`; `RawNode`
//! turns that into Ready batches.
//!
//! Invariants kept here (checked by the simulator's `PaxosChecker`):
//! - `promised` never decreases, and every slot in `slots` was accepted at a ballot `<= promised`;
//! - a node leads only its own ballot `promised`, computed from persisted state, so never reused;
//! - `commit` only grows, and every slot `<= commit` held in `slots` holds the chosen value.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::config::{Config, ReadOnlyOption};
use super::membership::{is_majority, reconfig_of, Membership};
use super::message::{
    decode_transfer_marker, encode_transfer_marker, AcceptedSlot, Ballot, HardState, Message, MessageType, Snapshot,
    Value, ValueKind,
};
use super::storage::PaxosStorage;
use super::validate::{self, SLOT_LEAD_MAX};
use super::wire;
use crate::contract::ReadState;
use crate::error::{DropReason, Error, Result};
use crate::limits::next_term;
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

/// A value waiting for a slot.
#[derive(Debug, Clone)]
enum Queued {
    /// Client commands batched into one slot.
    Batch(Vec<Bytes>),
    /// A reconfiguration.
    Value(Value),
}

/// A read-index request waiting for a quorum of heartbeat acks.
#[derive(Debug, Clone)]
struct PendingRead {
    context: Bytes,
    /// 0: this node asked; otherwise the follower that forwarded it.
    from: u64,
    /// The commit index when the read became active.
    index: u64,
    acks: BTreeSet<u64>,
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
    /// Per follower, the newest leader tick echoed by a heartbeat ack of this leadership: the
    /// follower promised nobody else for `election_tick` ticks from then (lease reads).
    lease_acks: BTreeMap<u64, u64>,
    election_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_election_timeout: u64,
    // Candidate state.
    promises: BTreeSet<u64>,
    /// Nodes sent this candidacy's Prepare.
    prepared: BTreeSet<u64>,
    /// Per slot, the accepted value of the highest ballot any promise (or this node) reported.
    phase1: BTreeMap<u64, AcceptedSlot>,
    /// Acceptors whose promise for this ballot arrived in part (paginated by `max_size_per_msg`):
    /// the next slot to ask each of them for. Invariant: disjoint from `promises`; an acceptor
    /// counts toward the Phase 1 quorum only once its last page arrived.
    promise_pages: BTreeMap<u64, u64>,
    /// The ballot of the leader whose `TimeoutNow` started this Phase 1 (a transfer election).
    /// The Prepares carry it, so that acceptors holding that leader's lease may promise.
    transfer_from: Option<Ballot>,
    // Leader state.
    /// The next slot to assign. Invariant (leader): `commit < next_slot <= commit + max_inflight_slots + 1`.
    pub next_slot: u64,
    /// The last slot of the Phase 1 range; reads wait until `commit >= phase1_end`.
    pub phase1_end: u64,
    /// Values of the Phase 1 range not yet assigned (slot order, starting at `next_slot`).
    backlog: VecDeque<Value>,
    /// Client commands (cut into slot-sized batches) and reconfigurations waiting for a slot.
    batches: VecDeque<Queued>,
    batch_bytes_last: u64,
    /// Payload bytes queued or in flight and not yet decided.
    pub uncommitted_bytes: u64,
    /// Acceptors that accepted each in-flight slot at this leader's ballot.
    acks: BTreeMap<u64, BTreeSet<u64>>,
    /// Undecided reconfiguration slots → the last slot whose configuration is known while they
    /// are undecided (`slot + α`). The leader assigns no slot beyond any of them.
    fences: BTreeMap<u64, u64>,
    pub progress: BTreeMap<u64, Progress>,
    waiting_reads: VecDeque<(Bytes, u64)>,
    reads: VecDeque<PendingRead>,
    /// The acceptor leadership is being handed to (0: none). Invariant: 0 unless leader. While
    /// set, proposals are dropped.
    pub transfer_target: u64,
    /// Ticks since the transfer started; it is abandoned after `election_tick` ticks.
    transfer_elapsed_ticks: u64,
    /// `TimeoutNow` left during this leadership: acceptors may promise the target inside this
    /// leader's lease, so this leadership answers no more lease reads.
    lease_surrendered: bool,
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
            lease_acks: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            promises: BTreeSet::new(),
            prepared: BTreeSet::new(),
            phase1: BTreeMap::new(),
            promise_pages: BTreeMap::new(),
            transfer_from: None,
            next_slot: commit + 1,
            phase1_end: 0,
            backlog: VecDeque::new(),
            batches: VecDeque::new(),
            batch_bytes_last: 0,
            uncommitted_bytes: 0,
            acks: BTreeMap::new(),
            fences: BTreeMap::new(),
            progress: BTreeMap::new(),
            waiting_reads: VecDeque::new(),
            reads: VecDeque::new(),
            transfer_target: 0,
            transfer_elapsed_ticks: 0,
            lease_surrendered: false,
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
        if !self.fences.is_empty() {
            self.fences = self.fences.split_off(&(self.commit + 1));
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

    /// Accepts `(ballot, value)` at `slot` (in memory; persisted by the next Ready).
    fn store(&mut self, slot: u64, ballot: Ballot, value: Value) {
        if slot < self.first_slot {
            return;
        }
        let accepted = AcceptedSlot { slot, ballot, value };
        self.unstable.insert(slot, accepted.clone());
        self.slots.insert(slot, accepted);
    }

    // ------------------------------------------------------------------ roles

    fn become_follower(&mut self, leader: u64) {
        // A fresh draw on every change of ballot, as Raft draws one on every new term: otherwise the
        // survivors of a leader keep the timeouts they drew before, which are the larger ones
        // (the smallest draw is the one that elected that leader), and a failover waits longer.
        self.reset_election_timeout();
        self.role = if self.is_member() { Role::Follower } else { Role::Learner };
        self.leader = leader;
        self.promises.clear();
        self.prepared.clear();
        self.phase1.clear();
        self.promise_pages.clear();
        self.transfer_from = None;
        self.backlog.clear();
        self.batches.clear();
        self.batch_bytes_last = 0;
        self.uncommitted_bytes = 0;
        self.acks.clear();
        self.fences.clear();
        self.lease_acks.clear();
        self.progress.clear();
        self.waiting_reads.clear();
        self.reads.clear();
        self.transfer_target = 0;
        self.transfer_elapsed_ticks = 0;
        self.lease_surrendered = false;
        self.leading_by_transfer = false;
    }

    /// The round of this node's next ballot: above everything it promised or saw, `None` once
    /// that would pass `limits::TERM_MAX`.
    pub fn next_round(&self) -> Option<u64> {
        next_term(self.promised.round.max(self.max_round_seen))
    }

    /// Starts Phase 1 with a ballot above everything this node promised or saw.
    pub fn campaign(&mut self) {
        self.start_phase1(None);
    }

    /// Starts Phase 1 now; `transfer_from` is the ballot of the leader that handed leadership
    /// over by `TimeoutNow` (a transfer election), `None` for an ordinary one.
    fn start_phase1(&mut self, transfer_from: Option<Ballot>) {
        if !self.is_member() {
            return;
        }
        // At TERM_MAX the node cannot campaign any more: its ballot never wraps below its promise.
        let Some(round) = self.next_round() else { return };
        let ballot = Ballot::new(round, self.id);
        self.become_follower(0);
        self.role = Role::Candidate;
        self.promised = ballot;
        self.max_round_seen = ballot.round;
        self.transfer_from = transfer_from;
        self.reset_election_timeout();
        self.heartbeat_elapsed = 0;
        self.promises.insert(self.id);
        let own: Vec<AcceptedSlot> = self.slots.range(self.commit + 1..).map(|(_, s)| s.clone()).collect();
        for slot in own {
            self.merge_phase1(slot);
        }
        if self.phase1_complete() {
            self.become_leader();
        }
    }

    /// Sends Prepare to every node of every configuration the Phase 1 range may be governed by
    /// (decided ones and those the merged values imply), then tells whether the promises hold a
    /// quorum of each.
    fn phase1_complete(&mut self) -> bool {
        let mut tentative = self.membership.clone();
        for (slot, accepted) in &self.phase1 {
            tentative.on_chosen(*slot, &accepted.value);
        }
        let nodes = tentative.nodes_from(self.commit + 1);
        for node in nodes {
            if node != self.id && self.prepared.insert(node) {
                self.send_prepare(node, self.commit + 1);
            }
        }
        tentative.has_quorums_from(self.commit + 1, &self.promises)
    }

    /// Asks `to` to promise this node's ballot and to report its accepted slots from `from_slot`.
    fn send_prepare(&mut self, to: u64, from_slot: u64) {
        let mut msg = Message::new(MessageType::Prepare, self.id, to, self.promised);
        msg.index = from_slot;
        if let Some(leader) = self.transfer_from {
            msg.context = encode_transfer_marker(leader);
        }
        self.send(msg);
    }

    fn merge_phase1(&mut self, slot: AcceptedSlot) {
        if slot.slot <= self.commit {
            return;
        }
        match self.phase1.get(&slot.slot) {
            Some(held) if held.ballot >= slot.ballot => {}
            _ => {
                self.phase1.insert(slot.slot, slot);
            }
        }
    }

    fn become_leader(&mut self) {
        let ballot = self.promised;
        debug_assert_eq!(ballot.node, self.id);
        let end = self.phase1.keys().next_back().copied().unwrap_or(0).max(self.commit);
        let phase1 = std::mem::take(&mut self.phase1);
        let by_transfer = self.transfer_from.is_some();
        self.become_follower(self.id);
        self.role = Role::Leader;
        self.leader = self.id;
        self.leading_by_transfer = by_transfer;
        self.next_slot = self.commit + 1;
        self.phase1_end = end;
        for slot in self.commit + 1..=end {
            let value = match phase1.get(&slot) {
                Some(accepted) => accepted.value.clone(),
                None => Value::noop(ballot.round),
            };
            self.uncommitted_bytes += value.payload_size();
            self.backlog.push_back(value);
        }
        for peer in self.peers() {
            self.progress.insert(peer, Progress { recent_active: true, ..Default::default() });
        }
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.assign_slots();
        self.broadcast_heartbeat();
    }

    // ------------------------------------------------------------------ ticks

    pub fn tick(&mut self) {
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

    /// Every heartbeat, asks again for the next page of every promise that arrived in part (a
    /// lost page or request would otherwise stall Phase 1 until the election timeout).
    fn tick_candidate(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed < self.cfg.heartbeat_tick {
            return;
        }
        self.heartbeat_elapsed = 0;
        let pending: Vec<(u64, u64)> = self.promise_pages.iter().map(|(id, next)| (*id, *next)).collect();
        for (to, from_slot) in pending {
            self.send_prepare(to, from_slot);
        }
    }

    fn tick_leader(&mut self) {
        if self.transfer_target != 0 {
            self.transfer_elapsed_ticks += 1;
            if self.transfer_elapsed_ticks >= self.cfg.election_tick {
                // The target did not take over within an election timeout: lead on.
                self.transfer_target = 0;
                self.transfer_elapsed_ticks = 0;
            }
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
            self.resend_unacked();
        }
        self.election_elapsed += 1;
        if self.cfg.check_quorum && self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            let mut active: BTreeSet<u64> =
                self.progress.iter().filter(|(_, p)| p.recent_active).map(|(id, _)| *id).collect();
            active.insert(self.id);
            for p in self.progress.values_mut() {
                p.recent_active = false;
            }
            if !self.has_quorums(&active) {
                self.become_follower(0);
            }
        }
    }

    /// Drops from memory the slots the storage compacted into its snapshot (never above `applied`).
    fn trim_to_storage(&mut self) {
        let compacted = self.storage.first_slot().saturating_sub(1).min(self.applied);
        if compacted >= self.first_slot {
            self.slots = self.slots.split_off(&(compacted + 1));
            self.first_slot = compacted + 1;
            self.membership.trim(self.first_slot);
        }
    }

    // ------------------------------------------------------------------ leader: proposals

    /// Queues client commands; returns the slot the first one will occupy (0 when forwarded).
    pub fn propose_many(&mut self, commands: Vec<Bytes>) -> Result<u64> {
        if commands.is_empty() {
            return Err(Error::dropped(DropReason::EmptyProposal, "empty proposal"));
        }
        if commands.iter().any(|c| c.len() as u64 > self.cfg.max_entry_bytes) {
            return Err(Error::dropped(DropReason::EntryTooLarge, "a command exceeds max_entry_bytes"));
        }
        if self.role != Role::Leader {
            if self.cfg.disable_proposal_forwarding {
                return Err(Error::NotLeader { leader_hint: self.leader });
            }
            if self.leader == 0 || self.leader == self.id {
                return Err(Error::dropped(DropReason::NoLeader, "no leader"));
            }
            let mut msg = Message::new(MessageType::Propose, self.id, self.leader, self.promised);
            msg.commands = commands;
            self.send(msg);
            return Ok(0);
        }
        if self.transfer_target != 0 {
            return Err(Error::dropped(DropReason::TransferInProgress, "a leadership transfer is in progress"));
        }
        let bytes: u64 = commands.iter().map(|c| c.len() as u64).sum();
        if self.uncommitted_bytes + bytes > self.cfg.max_uncommitted_bytes {
            return Err(Error::dropped(DropReason::UncommittedBytes, "too many uncommitted bytes"));
        }
        self.uncommitted_bytes += bytes;
        let mut first_slot = 0;
        for command in commands {
            let len = command.len() as u64;
            let fits = match self.batches.back() {
                Some(Queued::Batch(b)) => {
                    b.len() < self.cfg.max_batch_commands && self.batch_bytes_last + len <= self.cfg.max_batch_bytes
                }
                _ => false,
            };
            if !fits {
                self.batches.push_back(Queued::Batch(Vec::new()));
                self.batch_bytes_last = 0;
            }
            self.batch_bytes_last += len;
            if let Some(Queued::Batch(batch)) = self.batches.back_mut() {
                batch.push(command);
            }
            if first_slot == 0 {
                first_slot = self.next_slot + (self.backlog.len() + self.batches.len() - 1) as u64;
            }
        }
        Ok(first_slot)
    }

    /// Proposes a new membership (the complete member list). It governs the slots above the
    /// slot it is chosen at plus α (`max_inflight_slots`). One change at a time: a change not yet
    /// in effect makes another one `ProposalDropped`. Returns the slot it will occupy.
    pub fn propose_reconfig(&mut self, members: &[u64]) -> Result<u64> {
        if members.is_empty() || members.contains(&0) {
            return Err(Error::config("members", "must be non-empty node ids"));
        }
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader_hint: self.leader });
        }
        if self.transfer_target != 0 {
            return Err(Error::dropped(DropReason::TransferInProgress, "a leadership transfer is in progress"));
        }
        let queued = self.batches.iter().any(|q| matches!(q, Queued::Value(_)))
            || self.backlog.iter().any(|v| v.kind == ValueKind::Reconfig);
        if queued || !self.fences.is_empty() || !self.membership.pending_after(self.commit + 1).is_empty() {
            return Err(Error::dropped(DropReason::ConfChangePending, "a reconfiguration is in progress"));
        }
        let record = super::membership::encode_reconfig(self.cfg.max_inflight_slots, members);
        let value = Value { kind: ValueKind::Reconfig, round: self.promised.round, commands: vec![record] };
        self.batches.push_back(Queued::Value(value));
        Ok(self.next_slot + (self.backlog.len() + self.batches.len() - 1) as u64)
    }

    /// Whether the leader can put a queued value into a slot now: within the window, and not past
    /// the last slot whose configuration an undecided reconfiguration leaves known.
    pub fn can_assign(&self) -> bool {
        self.role == Role::Leader
            && (!self.backlog.is_empty() || !self.batches.is_empty())
            && self.next_slot <= self.commit + self.cfg.max_inflight_slots
            && self.fences.values().all(|last| self.next_slot <= *last)
    }

    /// Puts queued values (Phase 1 range first, then client batches) into slots within the
    /// window and sends their Accepts.
    pub fn assign_slots(&mut self) {
        let first = self.next_slot;
        while self.can_assign() {
            let value = match self.backlog.pop_front() {
                Some(value) => value,
                None => {
                    let queued = self.batches.pop_front().expect("can_assign");
                    if self.batches.is_empty() {
                        self.batch_bytes_last = 0;
                    }
                    match queued {
                        Queued::Batch(commands) => Value::batch(self.promised.round, commands),
                        Queued::Value(value) => value,
                    }
                }
            };
            let slot = self.next_slot;
            if let Some((alpha, _)) = reconfig_of(&value) {
                self.fences.insert(slot, slot.saturating_add(alpha));
            }
            self.store(slot, self.promised, value);
            self.acks.insert(slot, BTreeSet::new());
            self.next_slot += 1;
        }
        if self.next_slot > first {
            for peer in self.peers() {
                self.send_accepts(peer, first, self.next_slot - 1, usize::MAX);
            }
        }
    }

    /// Sends slots `from..=to` to `peer` as Accepts of at most `max_size_per_msg` payload bytes
    /// each (at least one slot each), at most `max_messages` messages.
    fn send_accepts(&mut self, peer: u64, from: u64, to: u64, max_messages: usize) {
        let mut slot = from;
        let mut sent = 0;
        while slot <= to && sent < max_messages {
            let mut msg = Message::new(MessageType::Accept, self.id, peer, self.promised);
            msg.commit = self.commit;
            let mut bytes = 0;
            while slot <= to {
                let Some(accepted) = self.slots.get(&slot) else { break };
                let size = accepted.value.payload_size();
                if !msg.entries.is_empty() && bytes + size > self.cfg.max_size_per_msg {
                    break;
                }
                bytes += size;
                msg.entries.push(accepted.clone());
                slot += 1;
            }
            if msg.entries.is_empty() {
                return;
            }
            self.send(msg);
            sent += 1;
        }
    }

    fn resend_unacked(&mut self) {
        for peer in self.peers() {
            let first = self.acks.iter().find(|(_, acks)| !acks.contains(&peer)).map(|(slot, _)| *slot);
            if let Some(first) = first {
                self.send_accepts(peer, first, self.next_slot - 1, 1);
            }
        }
    }

    /// Heartbeats also go to nodes of configurations that governed slots still held, so that a
    /// removed member learns the decided slots that end its membership and stops campaigning.
    fn broadcast_heartbeat(&mut self) {
        let context = self.reads.back().map(|r| r.context.clone()).unwrap_or_default();
        let targets: Vec<u64> =
            self.membership.nodes_from(self.first_slot).into_iter().filter(|id| *id != self.id).collect();
        for peer in targets {
            let mut msg = Message::new(MessageType::Commit, self.id, peer, self.promised);
            msg.commit = self.commit;
            msg.index = self.tick_count;
            msg.context = context.clone();
            self.send(msg);
        }
    }

    /// Decides the slots above `commit` that a quorum accepted at this ballot, in order.
    fn maybe_commit(&mut self) -> bool {
        let before = self.commit;
        while let Some(acks) = self.acks.get(&(self.commit + 1)) {
            if !is_majority(self.membership.at(self.commit + 1), acks) {
                break;
            }
            self.commit += 1;
            self.acks.remove(&self.commit);
            let size = self.slots.get(&self.commit).map_or(0, |s| s.value.payload_size());
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(size);
        }
        if self.commit > before {
            self.on_commit_advanced(before);
            self.activate_reads();
            true
        } else {
            false
        }
    }

    /// The leader's own acceptance of `slot` became durable.
    pub fn on_persisted(&mut self, slot: u64, ballot: Ballot) {
        if self.role == Role::Leader && ballot == self.promised {
            if let Some(acks) = self.acks.get_mut(&slot) {
                acks.insert(self.id);
            }
        }
    }

    pub fn after_persist(&mut self) {
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    // ------------------------------------------------------------------ leadership transfer

    /// Hands the leadership to acceptor `to` (docs/paxos.md §7.1): new proposals are dropped while
    /// the transfer lasts; once `to` holds every decided and every in-flight slot (and no queued
    /// value waits for a slot), it gets `TimeoutNow` and starts Phase 1 at once with a higher
    /// ballot. The transfer is abandoned after an election timeout. Asking again for the same
    /// target changes nothing; another target replaces the current one.
    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader_hint: self.leader });
        }
        if to == self.id {
            return Err(Error::config("to", "names this node, which already leads"));
        }
        if !self.membership.latest().contains(&to) {
            return Err(Error::config("to", format!("node {to} is not an acceptor of the latest configuration")));
        }
        if self.transfer_target != to {
            self.transfer_target = to;
            self.transfer_elapsed_ticks = 0;
            // Push the in-flight slots the target has not acknowledged now rather than one
            // message per heartbeat; decided slots it lacks follow by catch-up on its replies.
            let first_unacked = self.acks.iter().find(|(_, acks)| !acks.contains(&to)).map(|(slot, _)| *slot);
            if let Some(first) = first_unacked {
                self.send_accepts(to, first, self.next_slot - 1, usize::MAX);
            }
        }
        self.maybe_send_timeout_now();
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer target if it holds every decided slot and has accepted
    /// every in-flight one at this ballot, and no queued value waits for a slot. Sent again on
    /// each later reply of the target while the transfer lasts, in case one was lost. Returns
    /// whether it was sent.
    fn maybe_send_timeout_now(&mut self) -> bool {
        let to = self.transfer_target;
        if to == 0 || !self.backlog.is_empty() || !self.batches.is_empty() {
            return false;
        }
        let holds_decided = self.progress.get(&to).is_some_and(|p| p.decided >= self.commit);
        if !holds_decided || !self.acks.values().all(|acks| acks.contains(&to)) {
            return false;
        }
        // From here on acceptors that hold this leader's lease may promise the target (its
        // Prepares name this ballot), so no read may rely on the lease any more.
        self.lease_surrendered = true;
        let msg = Message::new(MessageType::TimeoutNow, self.id, to, self.promised);
        self.send(msg);
        true
    }

    /// The leader of `m.ballot` hands its leadership to this node: start Phase 1 now, without the
    /// randomized wait.
    fn handle_timeout_now(&mut self, m: Message) {
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        self.follow(m.ballot);
        self.start_phase1(Some(m.ballot));
    }

    // ------------------------------------------------------------------ reads

    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        if self.role != Role::Leader {
            if self.leader == 0 || self.leader == self.id {
                return Err(Error::dropped(DropReason::NoLeader, "no leader"));
            }
            let mut msg = Message::new(MessageType::ReadIndex, self.id, self.leader, self.promised);
            msg.context = context;
            self.send(msg);
            return Ok(());
        }
        self.leader_read(context, 0)
    }

    fn leader_read(&mut self, context: Bytes, from: u64) -> Result<()> {
        if self.waiting_reads.len() + self.reads.len() >= self.cfg.max_pending_reads {
            return Err(Error::dropped(DropReason::TooManyPendingReads, "too many pending reads"));
        }
        self.waiting_reads.push_back((context, from));
        self.activate_reads();
        Ok(())
    }

    /// Once every slot of the Phase 1 range is decided, pending reads take the commit index and a
    /// heartbeat round with their context confirms the leadership.
    fn activate_reads(&mut self) {
        if self.role != Role::Leader || self.commit < self.phase1_end || self.waiting_reads.is_empty() {
            return;
        }
        let lease = self.cfg.read_only_option == ReadOnlyOption::LeaseBased && self.lease_valid();
        while let Some((context, from)) = self.waiting_reads.pop_front() {
            self.reads.push_back(PendingRead { context, from, index: self.commit, acks: BTreeSet::new() });
            if lease {
                // The lease stands for the heartbeat round: the read is confirmed at once.
                let holders = self.lease_holders();
                self.reads.back_mut().expect("pushed").acks.extend(holders);
            }
        }
        if lease || self.has_quorums(&BTreeSet::from([self.id])) {
            self.answer_reads();
        } else {
            self.broadcast_heartbeat();
        }
    }

    fn ack_reads(&mut self, from: u64, context: &Bytes) {
        if context.is_empty() {
            return;
        }
        let Some(position) = self.reads.iter().position(|r| r.context == context) else { return };
        for read in self.reads.iter_mut().take(position + 1) {
            read.acks.insert(from);
        }
        self.answer_reads();
    }

    fn answer_reads(&mut self) {
        loop {
            let confirmed = match self.reads.front() {
                Some(read) => {
                    let mut voters = read.acks.clone();
                    voters.insert(self.id);
                    self.has_quorums(&voters)
                }
                None => false,
            };
            if !confirmed {
                break;
            }
            let read = self.reads.pop_front().expect("checked");
            if read.from == 0 || read.from == self.id {
                self.read_states.push(ReadState { index: read.index, context: read.context });
            } else {
                let mut msg = Message::new(MessageType::ReadIndexResponse, self.id, read.from, self.promised);
                msg.index = read.index;
                msg.context = read.context;
                self.send(msg);
            }
        }
    }

    // ------------------------------------------------------------------ messages

    /// Steps a message from a peer. It is validated first (`validate::check_message`): a
    /// refused one is `Error::Protocol` and changes nothing.
    pub fn step(&mut self, m: Message) -> Result<()> {
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

    fn nack(&mut self, to: u64) {
        let msg = Message::new(MessageType::Nack, self.id, to, self.promised);
        self.send(msg);
    }

    /// A message of the leader of `ballot` (at or above our promise): promise it and follow it.
    fn follow(&mut self, ballot: Ballot) {
        if self.role == Role::Leader || self.role == Role::Candidate || ballot > self.promised {
            self.become_follower(ballot.node);
        }
        self.leader = ballot.node;
        self.promised = ballot;
        self.election_elapsed = 0;
        self.heard_leader_at = Some(self.tick_count);
    }

    /// Decides every slot up to `leader_commit` that this node holds at the leader's `ballot`.
    fn advance_commit(&mut self, ballot: Ballot, leader_commit: u64) {
        let before = self.commit;
        while self.commit < leader_commit {
            match self.slots.get(&(self.commit + 1)) {
                Some(slot) if slot.ballot == ballot => self.commit += 1,
                _ => break,
            }
        }
        if self.commit > before {
            self.on_commit_advanced(before);
        }
    }

    fn handle_prepare(&mut self, m: Message) {
        if !self.membership.is_node_from(self.commit + 1, m.from) {
            // A node removed from the configuration (which may not know it yet) gets no promise,
            // so it cannot disrupt the cluster with ever higher ballots.
            return;
        }
        if self.cfg.read_only_option == ReadOnlyOption::LeaseBased
            && self.holds_lease_promise(m.from)
            && !self.lease_released_by(&m.context)
        {
            return;
        }
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        if m.ballot > self.promised {
            self.become_follower(0);
            self.promised = m.ballot;
        }
        self.election_elapsed = 0;
        let reply = self.promise_page(m.from, m.ballot, m.index.max(1));
        self.send(reply);
    }

    /// The answer to a Prepare: the accepted slots from `from_slot` on, at most
    /// `max_size_per_msg` payload bytes (at least one slot) and `MAX_SLOTS_PER_MESSAGE` slots. A
    /// `Promise` when they all fit; otherwise a `PromisePage` ending at `last_index`, and the
    /// candidate asks for the rest with another Prepare. A page reports every slot this acceptor
    /// holds in its range, so the candidate knows the range as well as from a whole promise.
    fn promise_page(&self, to: u64, ballot: Ballot, from_slot: u64) -> Message {
        let mut reply = Message::new(MessageType::Promise, self.id, to, ballot);
        reply.index = from_slot;
        reply.commit = self.commit;
        if self.first_slot > from_slot && self.first_slot > 1 {
            // The storage may not hold the snapshot this node installed yet (its Ready is not
            // persisted): an empty one tells the candidate nothing and is not sent.
            let snapshot = self.storage.snapshot();
            reply.snapshot = (snapshot.index > 0).then_some(snapshot);
        }
        let mut bytes = 0;
        for (slot, accepted) in self.slots.range(from_slot..) {
            let size = accepted.value.payload_size();
            let full = reply.entries.len() >= wire::MAX_SLOTS_PER_MESSAGE
                || (!reply.entries.is_empty() && bytes + size > self.cfg.max_size_per_msg);
            if full {
                // At least one slot below `slot` is in the page, so `slot - 1 >= from_slot`.
                reply.msg_type = MessageType::PromisePage;
                reply.last_index = slot - 1;
                break;
            }
            bytes += size;
            reply.entries.push(accepted.clone());
        }
        reply
    }

    /// A transfer election's Prepare names the leader that handed over (docs/paxos.md §7.1). The
    /// only lease this acceptor can still hold is for the ballot it promised, and a leader gives
    /// its lease up before it sends `TimeoutNow`: if the Prepare names that ballot, the lease no
    /// longer protects any read.
    fn lease_released_by(&self, context: &[u8]) -> bool {
        decode_transfer_marker(context) == Some(self.promised)
    }

    /// With lease reads, an acceptor promises no other candidate while it heard its leader within
    /// `election_tick` ticks, nor in its first `election_tick` ticks after a start (it may have
    /// heard a leader before a crash); a leader promises nobody while it leads.
    fn holds_lease_promise(&self, candidate: u64) -> bool {
        if self.role == Role::Leader || self.tick_count < self.cfg.election_tick {
            return true;
        }
        self.leader != 0
            && self.leader != candidate
            && self.heard_leader_at.is_some_and(|at| self.tick_count < at + self.cfg.election_tick)
    }

    /// Whether a quorum of every configuration governing an undecided slot acknowledged a
    /// heartbeat sent less than `election_tick - 1` ticks ago (one tick of margin for ticks that
    /// do not line up): none of them can promise another candidate yet.
    fn lease_valid(&self) -> bool {
        !self.lease_surrendered && self.has_quorums(&self.lease_holders())
    }

    /// This node and the followers whose lease promise still runs.
    fn lease_holders(&self) -> BTreeSet<u64> {
        let mut voters: BTreeSet<u64> = self
            .lease_acks
            .iter()
            .filter(|(_, sent)| self.tick_count + 1 < **sent + self.cfg.election_tick)
            .map(|(id, _)| *id)
            .collect();
        voters.insert(self.id);
        voters
    }

    /// A `Promise` (every accepted slot from `index` on) or a `PromisePage` (those of
    /// `index..=last_index`). Pages must follow each other without a gap from the candidate's
    /// first undecided slot; the acceptor counts toward the quorum only with its last page.
    fn handle_promise(&mut self, m: Message) {
        // Only a promise for the ballot this node is campaigning with counts: a promise for an
        // older ballot says nothing about what the acceptor will refuse now.
        if self.role != Role::Candidate || m.ballot != self.promised || m.ballot.node != self.id {
            return;
        }
        if self.promises.contains(&m.from) || !self.slots_within_lead(&m) {
            // A report with a slot far ahead of what this candidate knows is dropped whole (as if
            // lost): leaving that one slot out could let a new value overwrite a chosen one.
            return;
        }
        let asked = self.promise_pages.get(&m.from).copied();
        let last = match m.msg_type {
            MessageType::PromisePage => m.last_index,
            _ => u64::MAX,
        };
        if m.index > asked.unwrap_or(self.commit + 1) || last < m.index {
            // A gap before this page (a page of an earlier request, reordered) or a malformed one.
            return;
        }
        if let Some(snapshot) = m.snapshot {
            if snapshot.index > self.commit {
                self.install_snapshot(snapshot);
            }
        }
        for slot in m.entries {
            if (m.index..=last).contains(&slot.slot) {
                self.merge_phase1(slot);
            }
        }
        if let Some(after) = last.checked_add(1) {
            // A page: the acceptor's report is complete through `last` only. Ask for the next
            // page (unless this one repeats an earlier one); the promise does not count yet.
            let next = after.max(self.commit + 1);
            if asked.is_none_or(|asked| next > asked) {
                self.promise_pages.insert(m.from, next);
                self.send_prepare(m.from, next);
            }
            return;
        }
        self.promise_pages.remove(&m.from);
        self.promises.insert(m.from);
        if self.phase1_complete() {
            self.become_leader();
        }
    }

    /// Whether every slot of `m` lies within `SLOT_LEAD_MAX` of the highest slot known decided
    /// (this node's commit, or the snapshot `m` carries).
    fn slots_within_lead(&self, m: &Message) -> bool {
        let decided = self.commit.max(m.snapshot.as_ref().map_or(0, |s| s.index));
        m.entries.last().is_none_or(|last| last.slot <= decided.saturating_add(SLOT_LEAD_MAX))
    }

    fn handle_accept(&mut self, m: Message) {
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        if !self.slots_within_lead(&m) {
            // Far ahead of what this replica knows: dropped as if lost (the leader resends).
            return;
        }
        self.follow(m.ballot);
        let (first, last) = match (m.entries.first(), m.entries.last()) {
            (Some(first), Some(last)) => (first.slot, last.slot),
            _ => return,
        };
        for slot in m.entries {
            if slot.slot > self.commit {
                self.store(slot.slot, m.ballot, slot.value);
            }
        }
        self.advance_commit(m.ballot, m.commit);
        let mut reply = Message::new(MessageType::Accepted, self.id, m.from, m.ballot);
        reply.index = first;
        reply.last_index = last;
        reply.commit = self.commit;
        self.send(reply);
    }

    fn handle_accepted(&mut self, m: Message) {
        if self.role != Role::Leader || m.ballot != self.promised {
            return;
        }
        if let Some(p) = self.progress.get_mut(&m.from) {
            p.recent_active = true;
            p.decided = p.decided.max(m.commit);
        } else {
            return;
        }
        if m.last_index >= m.index {
            let slots: Vec<u64> = self.acks.range(m.index..=m.last_index).map(|(s, _)| *s).collect();
            for slot in slots {
                self.acks.get_mut(&slot).expect("listed").insert(m.from);
            }
        }
        self.maybe_commit();
        if m.from == self.transfer_target {
            self.maybe_send_timeout_now();
        }
    }

    fn handle_commit(&mut self, m: Message) {
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        self.follow(m.ballot);
        self.advance_commit(m.ballot, m.commit);
        let mut reply = Message::new(MessageType::CommitAck, self.id, m.from, m.ballot);
        reply.commit = self.commit;
        reply.index = m.index;
        reply.context = m.context;
        self.send(reply);
    }

    fn handle_commit_ack(&mut self, m: Message) {
        if self.role != Role::Leader || m.ballot != self.promised {
            return;
        }
        let tick = self.tick_count;
        let Some(p) = self.progress.get_mut(&m.from) else { return };
        p.recent_active = true;
        p.decided = m.commit;
        if m.index > 0 && m.index <= tick {
            let echoed = self.lease_acks.entry(m.from).or_insert(0);
            *echoed = (*echoed).max(m.index);
        }
        let decided = p.decided;
        let snapshot_blocked = p.snapshot_until_tick > tick;
        self.ack_reads(m.from, &m.context);
        if m.from == self.transfer_target {
            self.maybe_send_timeout_now();
        }
        if decided >= self.commit {
            return;
        }
        if decided + 1 < self.first_slot {
            if !snapshot_blocked {
                let snapshot = self.storage.snapshot();
                if snapshot.index > decided {
                    if let Some(p) = self.progress.get_mut(&m.from) {
                        p.snapshot_until_tick = tick + self.cfg.election_tick;
                    }
                    let mut msg = Message::new(MessageType::Snapshot, self.id, m.from, self.promised);
                    msg.commit = self.commit;
                    msg.snapshot = Some(snapshot);
                    self.send(msg);
                }
            }
            return;
        }
        let mut msg = Message::new(MessageType::CatchUp, self.id, m.from, self.promised);
        msg.commit = self.commit;
        let mut bytes = 0;
        for (_, slot) in self.slots.range(decided + 1..=self.commit) {
            let size = slot.value.payload_size();
            if !msg.entries.is_empty() && bytes + size > self.cfg.max_size_per_msg {
                break;
            }
            bytes += size;
            msg.entries.push(slot.clone());
        }
        self.send(msg);
    }

    fn handle_nack(&mut self, m: Message) {
        if m.ballot > self.promised && (self.role == Role::Leader || self.role == Role::Candidate) {
            // A higher ballot exists: a leader steps down at once, a candidate backs off for a
            // fresh randomized election timeout.
            self.become_follower(0);
        }
    }

    fn handle_catch_up(&mut self, m: Message) {
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        self.follow(m.ballot);
        // Every slot sent is decided, and decided at a ballot at or below the leader's: holding it
        // at the leader's ballot keeps "accepted at a higher ballot means the chosen value".
        let before = self.commit;
        for slot in m.entries {
            if slot.slot == self.commit + 1 && slot.slot <= m.commit {
                self.store(slot.slot, m.ballot, slot.value);
                self.commit += 1;
            }
        }
        if self.commit > before {
            self.on_commit_advanced(before);
        }
        self.advance_commit(m.ballot, m.commit);
        let mut reply = Message::new(MessageType::CommitAck, self.id, m.from, m.ballot);
        reply.commit = self.commit;
        self.send(reply);
    }

    fn handle_snapshot(&mut self, m: Message) {
        if m.ballot < self.promised || m.ballot.node != m.from {
            self.nack(m.from);
            return;
        }
        self.follow(m.ballot);
        if let Some(snapshot) = m.snapshot {
            if snapshot.index > self.commit {
                self.install_snapshot(snapshot);
            }
        }
        self.advance_commit(m.ballot, m.commit);
        let mut reply = Message::new(MessageType::CommitAck, self.id, m.from, m.ballot);
        reply.commit = self.commit;
        self.send(reply);
    }

    /// Replaces everything up to the snapshot's slot with the snapshot.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.index;
        debug_assert!(index > self.commit);
        self.slots = self.slots.split_off(&(index + 1));
        self.unstable = self.unstable.split_off(&(index + 1));
        self.phase1 = self.phase1.split_off(&(index + 1));
        self.commit = index;
        self.first_slot = index + 1;
        if self.next_slot <= index {
            self.next_slot = index + 1;
        }
        if !snapshot.members.is_empty() {
            self.membership = Membership::with_pending(index + 1, &snapshot.members, &snapshot.pending);
        }
        self.fences = self.fences.split_off(&(index + 1));
        self.refresh_role();
        self.pending_snapshot = Some(snapshot);
    }

    // ------------------------------------------------------------------ Ready support

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
        self.waiting_reads.len() + self.reads.len()
    }

    pub fn queued_batches(&self) -> usize {
        self.batches.len() + self.backlog.len()
    }
}
