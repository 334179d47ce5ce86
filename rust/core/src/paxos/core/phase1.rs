//! The proposer's Phase 1: a candidate picks the next ballot, collects promises (paginated ones
//! too) from a quorum of every configuration governing an undecided slot, keeps per slot the value
//! of the highest ballot reported, and becomes leader. Its state is [`Candidacy`].

use super::{Paxos, Progress};
use crate::limits::next_term;
use crate::paxos::message::{encode_transfer_marker, AcceptedSlot, Ballot, Message, MessageType, Value};
use crate::paxos::storage::PaxosStorage;
use crate::role::Role;

impl<S: PaxosStorage> Paxos<S> {
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
    pub(super) fn start_phase1(&mut self, transfer_from: Option<Ballot>) {
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
        self.candidacy.transfer_from = transfer_from;
        self.reset_election_timeout();
        self.heartbeat_elapsed = 0;
        self.candidacy.promises.insert(self.id);
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
    pub(super) fn phase1_complete(&mut self) -> bool {
        let mut tentative = self.membership.clone();
        for (slot, accepted) in &self.candidacy.highest_accepted {
            tentative.on_chosen(*slot, &accepted.value);
        }
        let nodes = tentative.nodes_from(self.commit + 1);
        for node in nodes {
            if node != self.id && self.candidacy.prepared.insert(node) {
                self.send_prepare(node, self.commit + 1);
            }
        }
        tentative.has_quorums_from(self.commit + 1, &self.candidacy.promises)
    }

    /// Asks `to` to promise this node's ballot and to report its accepted slots from `from_slot`.
    pub(super) fn send_prepare(&mut self, to: u64, from_slot: u64) {
        let mut msg = Message::new(MessageType::Prepare, self.id, to, self.promised);
        msg.index = from_slot;
        if let Some(leader) = self.candidacy.transfer_from {
            msg.context = encode_transfer_marker(leader);
        }
        self.send(msg);
    }

    pub(super) fn merge_phase1(&mut self, slot: AcceptedSlot) {
        if slot.slot <= self.commit {
            return;
        }
        match self.candidacy.highest_accepted.get(&slot.slot) {
            Some(held) if held.ballot >= slot.ballot => {}
            _ => {
                self.candidacy.highest_accepted.insert(slot.slot, slot);
            }
        }
    }

    pub(super) fn become_leader(&mut self) {
        let ballot = self.promised;
        debug_assert_eq!(ballot.node, self.id);
        let end = self.candidacy.highest_accepted.keys().next_back().copied().unwrap_or(0).max(self.commit);
        let phase1 = std::mem::take(&mut self.candidacy.highest_accepted);
        let by_transfer = self.candidacy.transfer_from.is_some();
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
            self.proposals.backlog.push_back(value);
        }
        for peer in self.peers() {
            self.progress.insert(peer, Progress { recent_active: true, ..Default::default() });
        }
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.assign_slots();
        self.broadcast_heartbeat();
    }

    /// Every heartbeat, asks again for the next page of every promise that arrived in part (a
    /// lost page or request would otherwise stall Phase 1 until the election timeout).
    pub(super) fn tick_candidate(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed < self.cfg.heartbeat_tick {
            return;
        }
        self.heartbeat_elapsed = 0;
        let pending: Vec<(u64, u64)> = self.candidacy.promise_pages.iter().map(|(id, next)| (*id, *next)).collect();
        for (to, from_slot) in pending {
            self.send_prepare(to, from_slot);
        }
    }

    /// A `Promise` (every accepted slot from `index` on) or a `PromisePage` (those of
    /// `index..=last_index`). Pages must follow each other without a gap from the candidate's
    /// first undecided slot; the acceptor counts toward the quorum only with its last page.
    pub(super) fn handle_promise(&mut self, m: Message) {
        // Only a promise for the ballot this node is campaigning with counts: a promise for an
        // older ballot says nothing about what the acceptor will refuse now.
        if self.role != Role::Candidate || m.ballot != self.promised || m.ballot.node != self.id {
            return;
        }
        if self.candidacy.promises.contains(&m.from) || !self.slots_within_lead(&m) {
            // A report with a slot far ahead of what this candidate knows is dropped whole (as if
            // lost): leaving that one slot out could let a new value overwrite a chosen one.
            return;
        }
        let asked = self.candidacy.promise_pages.get(&m.from).copied();
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
                self.candidacy.promise_pages.insert(m.from, next);
                self.send_prepare(m.from, next);
            }
            return;
        }
        self.candidacy.promise_pages.remove(&m.from);
        self.candidacy.promises.insert(m.from);
        if self.phase1_complete() {
            self.become_leader();
        }
    }

    pub(super) fn handle_nack(&mut self, m: Message) {
        if m.ballot > self.promised && (self.role == Role::Leader || self.role == Role::Candidate) {
            // A higher ballot exists: a leader steps down at once, a candidate backs off for a
            // fresh randomized election timeout.
            self.become_follower(0);
        }
    }
}
