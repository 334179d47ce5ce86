//! The proposer's Phase 2, as leader: client commands are batched into slot values, assigned
//! slots within the window of `max_inflight_slots`, sent as Accepts, counted as Accepted replies
//! arrive and decided; lagging acceptors get decided slots by catch-up or a snapshot. Its state is
//! [`Proposals`] (plus the leader fields of `Paxos` the Ready reads).

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::Queued;
use super::Paxos;
use crate::error::{DropReason, Error, Result};
use crate::paxos::membership::{is_majority, reconfig_of};
use crate::paxos::message::{Ballot, Message, MessageType, Value, ValueKind};
use crate::paxos::storage::PaxosStorage;
use crate::role::Role;

impl<S: PaxosStorage> Paxos<S> {
    pub(super) fn tick_leader(&mut self) {
        if self.transfer_target != 0 {
            self.handover.elapsed_ticks += 1;
            if self.handover.elapsed_ticks >= self.cfg.election_tick {
                // The target did not take over within an election timeout: lead on.
                self.transfer_target = 0;
                self.handover.elapsed_ticks = 0;
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
    pub(super) fn trim_to_storage(&mut self) {
        let compacted = self.storage.first_slot().saturating_sub(1).min(self.applied);
        if compacted >= self.first_slot {
            self.slots = self.slots.split_off(&(compacted + 1));
            self.first_slot = compacted + 1;
            self.membership.trim(self.first_slot);
        }
    }

    /// Queues client commands; returns the slot the first one will occupy (0 when forwarded).
    pub fn propose_many(&mut self, commands: Vec<Bytes>) -> Result<u64> {
        if commands.is_empty() {
            return Err(Error::dropped(DropReason::EmptyProposal, "empty proposal"));
        }
        if commands.iter().any(|c| c.len() as u64 > self.cfg.max_entry_bytes) {
            return Err(Error::dropped(DropReason::EntryTooLarge, "a command exceeds max_entry_bytes"));
        }
        if self.role != Role::Leader {
            // No leader known (a candidate knows none either): nobody could take it, whether or
            // not forwarding is on. `NotLeader` is for a follower that can name the leader.
            if self.leader == 0 || self.leader == self.id {
                return Err(Error::dropped(DropReason::NoLeader, "no leader"));
            }
            if self.cfg.disable_proposal_forwarding {
                return Err(Error::NotLeader { leader_hint: self.leader });
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
            let fits = match self.proposals.batches.back() {
                Some(Queued::Batch(b)) => {
                    b.len() < self.cfg.max_batch_commands
                        && self.proposals.batch_bytes_last + len <= self.cfg.max_batch_bytes
                }
                _ => false,
            };
            if !fits {
                self.proposals.batches.push_back(Queued::Batch(Vec::new()));
                self.proposals.batch_bytes_last = 0;
            }
            self.proposals.batch_bytes_last += len;
            if let Some(Queued::Batch(batch)) = self.proposals.batches.back_mut() {
                batch.push(command);
            }
            if first_slot == 0 {
                first_slot = self.next_slot + (self.proposals.backlog.len() + self.proposals.batches.len() - 1) as u64;
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
        let queued = self.proposals.batches.iter().any(|q| matches!(q, Queued::Value(_)))
            || self.proposals.backlog.iter().any(|v| v.kind == ValueKind::Reconfig);
        // A decided change whose window is closed (every slot before it takes effect assigned)
        // no longer blocks: the new change gets a slot the decided one governs, and is decided
        // only after every slot below it, so after the decided one took effect.
        if queued || !self.proposals.fences.is_empty() || self.window_to_close() {
            return Err(Error::dropped(DropReason::ConfChangePending, "a reconfiguration is in progress"));
        }
        let record = crate::paxos::membership::encode_reconfig(self.cfg.max_inflight_slots, members);
        let value = Value { kind: ValueKind::Reconfig, round: self.promised.round, commands: vec![record] };
        self.proposals.batches.push_back(Queued::Value(value));
        Ok(self.next_slot + (self.proposals.backlog.len() + self.proposals.batches.len() - 1) as u64)
    }

    /// Whether a decided reconfiguration has not taken effect and some slot before the one it
    /// takes effect at has no value yet: the leader closes that window with no-ops
    /// (docs/paxos.md §9). Never true without a decided change pending, so runs without
    /// reconfigurations assign exactly what they did before.
    pub(super) fn window_to_close(&self) -> bool {
        self.next_slot < self.membership.latest_first_slot()
    }

    /// Whether the leader can put a value into a slot now (a queued one, or a no-op closing the
    /// window of a decided reconfiguration): within the window, and not past the last slot whose
    /// configuration an undecided reconfiguration leaves known.
    pub fn can_assign(&self) -> bool {
        self.role == Role::Leader
            && (!self.proposals.backlog.is_empty() || !self.proposals.batches.is_empty() || self.window_to_close())
            && self.next_slot <= self.commit + self.cfg.max_inflight_slots
            && self.proposals.fences.values().all(|last| self.next_slot <= *last)
    }

    /// Puts queued values (Phase 1 range first, then client batches) into slots within the
    /// window, then no-ops up to the slot before a decided reconfiguration takes effect, and
    /// sends their Accepts together (no-ops carry no payload, so they add no Accept message).
    pub fn assign_slots(&mut self) {
        let first = self.next_slot;
        while self.can_assign() {
            let value = if let Some(value) = self.proposals.backlog.pop_front() {
                value
            } else if let Some(queued) = self.proposals.batches.pop_front() {
                if self.proposals.batches.is_empty() {
                    self.proposals.batch_bytes_last = 0;
                }
                match queued {
                    Queued::Batch(commands) => Value::batch(self.promised.round, commands),
                    Queued::Value(value) => value,
                }
            } else {
                // Nothing queued, and a decided change waits for the slots before it takes effect.
                Value::noop(self.promised.round)
            };
            let slot = self.next_slot;
            if let Some((alpha, _)) = reconfig_of(&value) {
                self.proposals.fences.insert(slot, slot.saturating_add(alpha));
            }
            self.store(slot, self.promised, value);
            self.proposals.acks.insert(slot, BTreeSet::new());
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
    pub(super) fn send_accepts(&mut self, peer: u64, from: u64, to: u64, max_messages: usize) {
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

    pub(super) fn resend_unacked(&mut self) {
        for peer in self.peers() {
            let first = self.proposals.acks.iter().find(|(_, acks)| !acks.contains(&peer)).map(|(slot, _)| *slot);
            if let Some(first) = first {
                self.send_accepts(peer, first, self.next_slot - 1, 1);
            }
        }
    }

    /// Heartbeats also go to nodes of configurations that governed slots still held, so that a
    /// removed member learns the decided slots that end its membership and stops campaigning.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let context = self.heartbeat_context();
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
    pub(super) fn maybe_commit(&mut self) -> bool {
        let before = self.commit;
        while let Some(acks) = self.proposals.acks.get(&(self.commit + 1)) {
            if !is_majority(self.membership.at(self.commit + 1), acks) {
                break;
            }
            self.commit += 1;
            self.proposals.acks.remove(&self.commit);
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
            if let Some(acks) = self.proposals.acks.get_mut(&slot) {
                acks.insert(self.id);
            }
        }
    }

    pub fn after_persist(&mut self) {
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    pub(super) fn handle_accepted(&mut self, m: Message) {
        if !self.answers_this_leadership(&m) {
            return;
        }
        if let Some(p) = self.progress.get_mut(&m.from) {
            p.recent_active = true;
            p.decided = p.decided.max(m.commit);
        } else {
            return;
        }
        if m.last_index >= m.index {
            let slots: Vec<u64> = self.proposals.acks.range(m.index..=m.last_index).map(|(s, _)| *s).collect();
            for slot in slots {
                self.proposals.acks.get_mut(&slot).expect("listed").insert(m.from);
            }
        }
        self.maybe_commit();
        if m.from == self.transfer_target {
            self.maybe_send_timeout_now();
        }
    }

    pub(super) fn handle_commit_ack(&mut self, m: Message) {
        if !self.answers_this_leadership(&m) {
            return;
        }
        let tick = self.tick_count;
        let Some(p) = self.progress.get_mut(&m.from) else { return };
        p.recent_active = true;
        p.decided = m.commit;
        if m.index > 0 && m.index <= tick {
            let echoed = self.reads.lease_acks.entry(m.from).or_insert(0);
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
}
