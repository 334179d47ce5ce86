//! Linearizable reads: read-index requests wait until this leadership is confirmed by a quorum
//! of heartbeat acks (or, lease-based, by the acks' lease) and its Phase 1 range is decided. Its
//! state is [`Reads`].

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::PendingRead;
use super::Paxos;
use crate::contract::ReadState;
use crate::error::{DropReason, Error, Result};
use crate::paxos::config::ReadOnlyOption;
use crate::paxos::message::{decode_transfer_marker, Message, MessageType};
use crate::paxos::storage::PaxosStorage;
use crate::role::Role;

impl<S: PaxosStorage> Paxos<S> {
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

    pub(super) fn leader_read(&mut self, context: Bytes, from: u64) -> Result<()> {
        if self.reads.waiting.len() + self.reads.pending.len() >= self.cfg.max_pending_reads {
            return Err(Error::dropped(DropReason::TooManyPendingReads, "too many pending reads"));
        }
        self.reads.waiting.push_back((context, from));
        self.activate_reads();
        Ok(())
    }

    /// Once every slot of the Phase 1 range is decided, pending reads take the commit index and a
    /// heartbeat round with their context confirms the leadership.
    pub(super) fn activate_reads(&mut self) {
        if self.role != Role::Leader || self.commit < self.phase1_end || self.reads.waiting.is_empty() {
            return;
        }
        let lease = self.cfg.read_only_option == ReadOnlyOption::LeaseBased && self.lease_valid();
        while let Some((context, from)) = self.reads.waiting.pop_front() {
            self.reads.pending.push_back(PendingRead { context, from, index: self.commit, acks: BTreeSet::new() });
            if lease {
                // The lease stands for the heartbeat round: the read is confirmed at once.
                let holders = self.lease_holders();
                self.reads.pending.back_mut().expect("pushed").acks.extend(holders);
            }
        }
        if lease || self.has_quorums(&BTreeSet::from([self.id])) {
            self.answer_reads();
        } else {
            self.broadcast_heartbeat();
        }
    }

    pub(super) fn ack_reads(&mut self, from: u64, context: &Bytes) {
        if context.is_empty() {
            return;
        }
        let Some(position) = self.reads.pending.iter().position(|r| r.context == context) else { return };
        for read in self.reads.pending.iter_mut().take(position + 1) {
            read.acks.insert(from);
        }
        self.answer_reads();
    }

    pub(super) fn answer_reads(&mut self) {
        loop {
            let confirmed = match self.reads.pending.front() {
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
            let read = self.reads.pending.pop_front().expect("checked");
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

    /// A transfer election's Prepare names the leader that handed over (docs/paxos.md §7.1). The
    /// only lease this acceptor can still hold is for the ballot it promised, and a leader gives
    /// its lease up before it sends `TimeoutNow`: if the Prepare names that ballot, the lease no
    /// longer protects any read.
    pub(super) fn lease_released_by(&self, context: &[u8]) -> bool {
        decode_transfer_marker(context) == Some(self.promised)
    }

    /// With lease reads, an acceptor promises no other candidate while it heard its leader within
    /// `election_tick` ticks, nor in its first `election_tick` ticks after a start (it may have
    /// heard a leader before a crash); a leader promises nobody while it leads.
    pub(super) fn holds_lease_promise(&self, candidate: u64) -> bool {
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
    pub(super) fn lease_valid(&self) -> bool {
        !self.handover.lease_surrendered && self.has_quorums(&self.lease_holders())
    }

    /// The context heartbeats carry: the newest pending read's, acknowledged with it.
    pub(super) fn heartbeat_context(&self) -> Bytes {
        self.reads.pending.back().map(|r| r.context.clone()).unwrap_or_default()
    }

    /// This node and the followers whose lease promise still runs.
    pub(super) fn lease_holders(&self) -> BTreeSet<u64> {
        let mut voters: BTreeSet<u64> = self
            .reads
            .lease_acks
            .iter()
            .filter(|(_, sent)| self.tick_count + 1 < **sent + self.cfg.election_tick)
            .map(|(id, _)| *id)
            .collect();
        voters.insert(self.id);
        voters
    }
}
