//! The acceptor: promises (Phase 1b) and accepts (Phase 2b) under the ballot guard, and learns
//! decided slots from the leader's commits, catch-up batches and snapshots. Its state is the
//! promise (`Paxos::promised`) and the accepted slots (`Paxos::slots`), both made durable by the
//! Ready before any reply that depends on them leaves (docs/design.md §2).

use super::Paxos;
use crate::paxos::config::ReadOnlyOption;
use crate::paxos::membership::Membership;
use crate::paxos::message::{Ballot, Message, MessageType, Snapshot};
use crate::paxos::storage::PaxosStorage;
use crate::paxos::validate::SLOT_LEAD_MAX;
use crate::paxos::wire;
use crate::role::Role;

impl<S: PaxosStorage> Paxos<S> {
    pub(super) fn nack(&mut self, to: u64) {
        let msg = Message::new(MessageType::Nack, self.id, to, self.promised);
        self.send(msg);
    }

    /// A message of the leader of `ballot` (at or above our promise): promise it and follow it.
    pub(super) fn follow(&mut self, ballot: Ballot) {
        if self.role == Role::Leader || self.role == Role::Candidate || ballot > self.promised {
            self.become_follower(ballot.node);
        }
        self.leader = ballot.node;
        self.promised = ballot;
        self.election_elapsed = 0;
        self.heard_leader_at = Some(self.tick_count);
    }

    /// Decides every slot up to `leader_commit` that this node holds at the leader's `ballot`.
    pub(super) fn advance_commit(&mut self, ballot: Ballot, leader_commit: u64) {
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

    pub(super) fn handle_prepare(&mut self, m: Message) {
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
        if self.refuses_ballot_of(&m) {
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
    pub(super) fn promise_page(&self, to: u64, ballot: Ballot, from_slot: u64) -> Message {
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

    /// Whether every slot of `m` lies within `SLOT_LEAD_MAX` of the highest slot known decided
    /// (this node's commit, or the snapshot `m` carries).
    pub(super) fn slots_within_lead(&self, m: &Message) -> bool {
        let decided = self.commit.max(m.snapshot.as_ref().map_or(0, |s| s.index));
        m.entries.last().is_none_or(|last| last.slot <= decided.saturating_add(SLOT_LEAD_MAX))
    }

    pub(super) fn handle_accept(&mut self, mut m: Message) {
        if self.refuses_ballot_of(&m) {
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
        for slot in std::mem::take(&mut m.entries) {
            if slot.slot > self.commit {
                self.store(slot.slot, m.ballot, slot.value);
            }
        }
        self.advance_commit(m.ballot, m.commit);
        let mut reply = self.reply_to(&m, MessageType::Accepted);
        reply.index = first;
        reply.last_index = last;
        reply.commit = self.commit;
        self.send(reply);
    }

    pub(super) fn handle_commit(&mut self, m: Message) {
        if self.refuses_ballot_of(&m) {
            return;
        }
        self.follow(m.ballot);
        self.advance_commit(m.ballot, m.commit);
        let mut reply = self.commit_ack(&m);
        reply.index = m.index;
        reply.context = m.context;
        self.send(reply);
    }

    pub(super) fn handle_catch_up(&mut self, mut m: Message) {
        if self.refuses_ballot_of(&m) {
            return;
        }
        self.follow(m.ballot);
        // Every slot sent is decided, and decided at a ballot at or below the leader's: holding it
        // at the leader's ballot keeps "accepted at a higher ballot means the chosen value".
        let before = self.commit;
        for slot in std::mem::take(&mut m.entries) {
            if slot.slot == self.commit + 1 && slot.slot <= m.commit {
                self.store(slot.slot, m.ballot, slot.value);
                self.commit += 1;
            }
        }
        if self.commit > before {
            self.on_commit_advanced(before);
        }
        self.advance_commit(m.ballot, m.commit);
        let reply = self.commit_ack(&m);
        self.send(reply);
    }

    pub(super) fn handle_snapshot(&mut self, mut m: Message) {
        if self.refuses_ballot_of(&m) {
            return;
        }
        self.follow(m.ballot);
        if let Some(snapshot) = m.snapshot.take() {
            if snapshot.index > self.commit {
                self.install_snapshot(snapshot);
            }
        }
        self.advance_commit(m.ballot, m.commit);
        let reply = self.commit_ack(&m);
        self.send(reply);
    }

    /// Replaces everything up to the snapshot's slot with the snapshot.
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.index;
        debug_assert!(index > self.commit);
        self.slots = self.slots.split_off(&(index + 1));
        self.unstable = self.unstable.split_off(&(index + 1));
        self.candidacy.highest_accepted = self.candidacy.highest_accepted.split_off(&(index + 1));
        self.commit = index;
        self.first_slot = index + 1;
        if self.next_slot <= index {
            self.next_slot = index + 1;
        }
        if !snapshot.members.is_empty() {
            self.membership = Membership::with_pending(index + 1, &snapshot.members, &snapshot.pending);
        }
        self.proposals.fences = self.proposals.fences.split_off(&(index + 1));
        self.refresh_role();
        self.pending_snapshot = Some(snapshot);
    }
}
