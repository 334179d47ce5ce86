//! `RawNode`: the Ready / advance contract around the Multi-Paxos state machine (docs/design.md §2),
//! the same shape as `raft::RawNode`.
//!
//! ```text
//! rd = node.ready()              promise/commit + accepted slots (+ snapshot) to persist, messages to send
//! send(rd.messages)              a leader's accepts may leave before its own write
//! persist(rd)                    durable first (fsync when rd.must_sync)
//! send(rd.persisted_messages)    Promise and Accepted replies depend on what was persisted
//! apply(rd.committed_entries)
//! node.advance(rd.mark())
//! ```
//!
//! The numbering and the send-early rule are the contract's (`crate::contract`).

use bytes::Bytes;

use super::config::Config;
use super::core::Paxos;
use super::message::{AcceptedSlot, Ballot, Entry, HardState, Message, Snapshot};
use super::storage::PaxosStorage;
use super::{validate, wire};
use crate::contract::{split_frames, ProtocolNode, ReadyBook};
use crate::error::Result;
use crate::role::Role;

crate::protocol_ready! {
    /// What the caller must do next: send `messages`, persist, send `persisted_messages`, apply,
    /// then `advance`. `must_sync`: accepted slots, a snapshot or a new promise. `applied_through`
    /// is `committed_through`, or the snapshot's index.
    pub struct Ready {
        /// The promised ballot.
        pub ballot: Ballot,
        /// `None` when unchanged since the previous Ready.
        pub hard_state: Option<HardState>,
        /// Slots accepted (or learned decided) since the previous Ready, to store; each replaces
        /// what its slot held and touches no other slot.
        pub accepted: Vec<AcceptedSlot>,
        /// A snapshot to install (storage) and restore (application) before applying.
        pub snapshot: Option<Snapshot>,
        /// One entry per client command of the decided slots, in slot order; no-op slots are
        /// skipped.
        pub committed_entries: Vec<Entry>,
        /// The first slot `committed_entries` covers (no-op slots included); 0 when none.
        pub committed_from: u64,
        /// The last slot `committed_entries` covers; 0 when none. Every slot of
        /// `committed_from..=committed_through` is applied once this Ready is advanced.
        pub committed_through: u64,
    }
    fn mark(&self) -> ReadyMark {
        ReadyMark {
            number: self.number,
            accepted: self.accepted.iter().map(|s| (s.slot, s.ballot)).collect(),
            snapshot_index: self.snapshot.as_ref().map(|s| s.index),
            committed_through: self.committed_through,
        }
    }
}

/// What `advance` needs to know about a Ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadyMark {
    pub number: u64,
    /// `(slot, ballot)` of every accepted slot the Ready persisted.
    pub accepted: Vec<(u64, Ballot)>,
    pub snapshot_index: Option<u64>,
    pub committed_through: u64,
}

/// Follower progress as reported by `status()` on the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: u64,
    pub decided: u64,
    pub recent_active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub role: Role,
    pub ballot: Ballot,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_slot: u64,
    /// The highest slot held (0 when none).
    pub last_slot: u64,
    /// The latest configuration known (it may take effect at a later slot).
    pub members: Vec<u64>,
    pub progress: Vec<PeerStatus>,
    pub uncommitted_bytes: u64,
    /// The acceptor leadership is being handed to (0: none; only on the leader).
    pub transfer_target: u64,
}

pub struct RawNode<S: PaxosStorage> {
    pub paxos: Paxos<S>,
    book: ReadyBook<HardState>,
}

impl<S: PaxosStorage> RawNode<S> {
    /// `applied` is the application's applied slot on restart: decided slots at or below it are
    /// not delivered again.
    pub fn new(id: u64, config: Config, storage: S, members: &[u64], applied: u64) -> Result<Self> {
        let mut paxos = Paxos::new(id, config, storage, members)?;
        let applied = applied.min(paxos.commit).max(paxos.applied);
        paxos.applied = applied;
        paxos.applying = applied;
        let book = ReadyBook::new(paxos.hard_state(), paxos.role, paxos.leader);
        Ok(RawNode { paxos, book })
    }

    /// Proposes a new member list; see `Paxos::propose_reconfig` for when it takes effect.
    pub fn propose_reconfig(&mut self, members: &[u64]) -> Result<u64> {
        self.paxos.propose_reconfig(members)
    }

    /// The latest configuration known (it may take effect at a later slot).
    pub fn members(&self) -> &[u64] {
        self.paxos.membership.latest()
    }

    pub fn status(&self) -> Status {
        let p = &self.paxos;
        let progress = if p.role == Role::Leader {
            p.progress
                .iter()
                .map(|(id, pr)| PeerStatus { id: *id, decided: pr.decided, recent_active: pr.recent_active })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: p.id,
            role: p.role,
            ballot: p.promised,
            leader: p.leader,
            commit: p.commit,
            applied: p.applied,
            first_slot: p.first_slot,
            last_slot: p.slots.keys().next_back().copied().unwrap_or(0),
            members: p.membership.latest().to_vec(),
            progress,
            uncommitted_bytes: p.uncommitted_bytes,
            transfer_target: p.transfer_target,
        }
    }
}

impl<S: PaxosStorage> ProtocolNode for RawNode<S> {
    type Message = Message;
    type Ready = Ready;
    type Mark = ReadyMark;
    type Status = Status;

    fn id(&self) -> u64 {
        self.paxos.id
    }
    fn role(&self) -> Role {
        self.paxos.role
    }
    fn leader(&self) -> u64 {
        self.paxos.leader
    }
    fn term(&self) -> u64 {
        self.paxos.promised.round
    }
    fn commit_index(&self) -> u64 {
        self.paxos.commit
    }
    fn applied_index(&self) -> u64 {
        self.paxos.applied
    }
    fn last_index(&self) -> u64 {
        self.paxos.slots.keys().next_back().copied().unwrap_or(0)
    }
    fn term_exhausted(&self) -> bool {
        self.paxos.next_round().is_none()
    }
    fn status(&self) -> Status {
        RawNode::status(self)
    }

    fn tick(&mut self) {
        self.paxos.tick();
    }
    fn campaign(&mut self) {
        self.paxos.campaign();
    }
    fn propose(&mut self, data: Bytes) -> Result<u64> {
        self.paxos.propose_many(vec![data])
    }
    fn propose_many(&mut self, batch: Vec<Bytes>) -> Result<u64> {
        self.paxos.propose_many(batch)
    }
    fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.paxos.read_index(context)
    }
    /// Hands the leadership to acceptor `to`; see `Paxos::transfer_leader`. `NotLeader` on a
    /// node that does not lead, `Config` for this node's own id or a node outside the latest
    /// configuration.
    fn transfer_leader(&mut self, to: u64) -> Result<()> {
        self.paxos.transfer_leader(to)
    }
    /// `to` could not be reached. Accepts are resent on every heartbeat anyway; nothing to do.
    fn report_unreachable(&mut self, _to: u64) {}
    /// A snapshot send to `to` finished; on failure the next one may go at once.
    fn report_snapshot(&mut self, to: u64, ok: bool) {
        if !ok {
            if let Some(p) = self.paxos.progress.get_mut(&to) {
                p.snapshot_until_tick = 0;
            }
        }
    }

    fn decode(frame: &Bytes) -> Result<Message> {
        Ok(wire::decode(frame)?)
    }
    fn sender(message: &Message) -> u64 {
        message.from
    }
    fn step_message(&mut self, message: Message) -> Result<()> {
        validate::check_addressing(&message, self.paxos.id)?;
        self.paxos.step(message)
    }

    fn has_ready(&self) -> bool {
        let p = &self.paxos;
        if self.book.outstanding() {
            return false;
        }
        !p.msgs.is_empty()
            || !p.unstable.is_empty()
            || p.pending_snapshot.is_some()
            || p.commit > p.applying
            || !p.read_states.is_empty()
            || p.can_assign()
            || self.book.changed(&p.hard_state(), p.role, p.leader)
    }

    fn ready(&mut self) -> Result<Ready> {
        self.book.check_idle()?;
        let p = &mut self.paxos;
        p.assign_slots();
        let accepted: Vec<AcceptedSlot> = std::mem::take(&mut p.unstable).into_values().collect();
        let snapshot = p.pending_snapshot.take();
        let committed_from = p.applying + 1;
        let (committed_entries, committed_through) = if snapshot.is_some() || p.commit <= p.applying {
            (Vec::new(), 0)
        } else {
            p.next_committed(p.cfg.max_committed_bytes_per_ready)
        };
        if let Some(snapshot) = &snapshot {
            p.applying = p.applying.max(snapshot.index);
        }
        if committed_through > 0 {
            p.applying = committed_through;
        }
        let hard_state = p.hard_state();
        let promise_changed = hard_state.promised != self.book.durable().promised;
        let must_sync = !accepted.is_empty() || snapshot.is_some() || promise_changed;
        let (messages, persisted_messages) =
            split_frames(p.role, !promise_changed, snapshot.is_some(), p.take_messages());
        let read_states = std::mem::take(&mut p.read_states);
        let applied_through =
            if committed_through > 0 { committed_through } else { snapshot.as_ref().map_or(0, |s| s.index) };
        let (number, hard_state) = self.book.hand_out(hard_state, p.role, p.leader);
        Ok(Ready {
            number,
            role: Some(p.role),
            leader: p.leader,
            ballot: p.promised,
            hard_state,
            accepted,
            snapshot,
            committed_entries,
            committed_from: if committed_through > 0 { committed_from } else { 0 },
            committed_through,
            messages,
            persisted_messages,
            read_states,
            must_sync,
            applied_through,
        })
    }

    fn advance(&mut self, mark: ReadyMark) -> Result<()> {
        self.book.finish(mark.number)?;
        let p = &mut self.paxos;
        if let Some(index) = mark.snapshot_index {
            p.applied = p.applied.max(index);
            p.applying = p.applying.max(index);
        }
        if mark.committed_through > 0 {
            p.applied = p.applied.max(mark.committed_through);
        }
        for (slot, ballot) in mark.accepted {
            p.on_persisted(slot, ballot);
        }
        p.after_persist();
        debug_assert!(p.applied <= p.applying, "applied beyond what was handed out to apply");
        Ok(())
    }
}
