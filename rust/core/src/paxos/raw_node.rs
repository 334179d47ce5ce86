//! `RawNode`: the Ready / advance contract around the Multi-Paxos state machine (docs/design.md §2),
//! the same shape as `raft::RawNode`.
//!
//! ```text
//! rd = node.ready()          promise/commit + accepted slots (+ snapshot) to persist, messages to send
//! persist(rd)                durable first (fsync when rd.must_sync): Promise and Accepted replies
//!                            in rd.messages depend on it
//! send(rd.messages)          then send
//! apply(rd.committed_entries)
//! node.advance(rd.mark())
//! ```

use bytes::Bytes;

use super::config::Config;
use super::core::Paxos;
use super::message::{AcceptedSlot, Ballot, Entry, HardState, Message, Snapshot};
use super::storage::PaxosStorage;
use super::{validate, wire};
use crate::error::{Error, Result};
use crate::role::Role;

/// An answered read-index request: the caller may read once it applied `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub context: Bytes,
}

/// What the caller must do next: persist, send, apply, then `advance`.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    /// Identifies this Ready; `advance` must be given the outstanding one.
    pub number: u64,
    pub role: Option<Role>,
    pub leader: u64,
    /// The promised ballot.
    pub ballot: Ballot,
    /// `None` when unchanged since the previous Ready.
    pub hard_state: Option<HardState>,
    /// Slots accepted (or learned decided) since the previous Ready, to store; each replaces what
    /// its slot held and touches no other slot.
    pub accepted: Vec<AcceptedSlot>,
    /// A snapshot to install (storage) and restore (application) before applying.
    pub snapshot: Option<Snapshot>,
    /// One entry per client command of the decided slots, in slot order; no-op slots are skipped.
    pub committed_entries: Vec<Entry>,
    /// The first slot `committed_entries` covers (no-op slots included); 0 when none.
    pub committed_from: u64,
    /// The last slot `committed_entries` covers; 0 when none. Every slot of
    /// `committed_from..=committed_through` is applied once this Ready is advanced.
    pub committed_through: u64,
    /// Encoded frames with their destination, to send after persisting.
    pub messages: Vec<(u64, Bytes)>,
    pub read_states: Vec<ReadState>,
    /// Whether persisting needs an fsync: accepted slots, a snapshot or a new promise.
    pub must_sync: bool,
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

impl Ready {
    pub fn mark(&self) -> ReadyMark {
        ReadyMark {
            number: self.number,
            accepted: self.accepted.iter().map(|s| (s.slot, s.ballot)).collect(),
            snapshot_index: self.snapshot.as_ref().map(|s| s.index),
            committed_through: self.committed_through,
        }
    }
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
    prev_hard_state: HardState,
    prev_role: Role,
    prev_leader: u64,
    ready_number: u64,
    outstanding: Option<u64>,
}

impl<S: PaxosStorage> RawNode<S> {
    /// `applied` is the application's applied slot on restart: decided slots at or below it are
    /// not delivered again.
    pub fn new(id: u64, config: Config, storage: S, members: &[u64], applied: u64) -> Result<Self> {
        let mut paxos = Paxos::new(id, config, storage, members)?;
        let applied = applied.min(paxos.commit).max(paxos.applied);
        paxos.applied = applied;
        paxos.applying = applied;
        let prev_hard_state = paxos.hard_state();
        let (prev_role, prev_leader) = (paxos.role, paxos.leader);
        Ok(RawNode { paxos, prev_hard_state, prev_role, prev_leader, ready_number: 0, outstanding: None })
    }

    pub fn tick(&mut self) {
        self.paxos.tick();
    }

    pub fn campaign(&mut self) {
        self.paxos.campaign();
    }

    pub fn propose(&mut self, data: Bytes) -> Result<u64> {
        self.paxos.propose_many(vec![data])
    }

    pub fn propose_many(&mut self, batch: Vec<Bytes>) -> Result<u64> {
        self.paxos.propose_many(batch)
    }

    /// Proposes a new member list; see `Paxos::propose_reconfig` for when it takes effect.
    pub fn propose_reconfig(&mut self, members: &[u64]) -> Result<u64> {
        self.paxos.propose_reconfig(members)
    }

    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.paxos.read_index(context)
    }

    /// Hands the leadership to acceptor `to`; see `Paxos::transfer_leader`. `NotLeader` on a
    /// node that does not lead, `Config` for this node's own id or a node outside the latest
    /// configuration.
    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        self.paxos.transfer_leader(to)
    }

    /// Steps a decoded message from a peer.
    /// A message that fails validation (docs/wire-format.md, "Validation at the door") is
    /// refused with `Error::Protocol` and changes nothing.
    pub fn step_message(&mut self, message: Message) -> Result<()> {
        validate::check_addressing(&message, self.paxos.id)?;
        self.paxos.step(message)
    }

    /// Decodes and steps one frame from a peer.
    pub fn step(&mut self, frame: &Bytes) -> Result<()> {
        self.step_from(frame, None)
    }

    /// Decodes and steps one frame that arrived on a connection authenticated as `sender`: a
    /// frame whose `from` names another node is refused (`Error::Protocol`). `None` skips that
    /// check.
    pub fn step_from(&mut self, frame: &Bytes, sender: Option<u64>) -> Result<()> {
        let message = wire::decode(frame)?;
        if let Some(sender) = sender {
            if message.from != sender {
                return Err(Error::Protocol(format!(
                    "frame from node {} arrived on the connection of node {sender}",
                    message.from
                )));
            }
        }
        self.step_message(message)
    }

    /// Whether the ballot round reached `limits::TERM_MAX`: this node can no longer campaign.
    pub fn term_exhausted(&self) -> bool {
        self.paxos.next_round().is_none()
    }

    pub fn has_ready(&self) -> bool {
        let p = &self.paxos;
        if self.outstanding.is_some() {
            return false;
        }
        !p.msgs.is_empty()
            || !p.unstable.is_empty()
            || p.pending_snapshot.is_some()
            || p.hard_state() != self.prev_hard_state
            || p.commit > p.applying
            || !p.read_states.is_empty()
            || p.role != self.prev_role
            || p.leader != self.prev_leader
            || p.can_assign()
    }

    pub fn ready(&mut self) -> Result<Ready> {
        if self.outstanding.is_some() {
            return Err(Error::Protocol("the previous Ready was not advanced".into()));
        }
        let p = &mut self.paxos;
        p.assign_slots();
        self.ready_number += 1;
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
        let changed = hard_state != self.prev_hard_state;
        let must_sync =
            !accepted.is_empty() || snapshot.is_some() || hard_state.promised != self.prev_hard_state.promised;
        let messages = p.take_messages();
        let read_states = std::mem::take(&mut p.read_states);
        self.prev_hard_state = hard_state;
        self.prev_role = p.role;
        self.prev_leader = p.leader;
        self.outstanding = Some(self.ready_number);
        Ok(Ready {
            number: self.ready_number,
            role: Some(p.role),
            leader: p.leader,
            ballot: p.promised,
            hard_state: changed.then_some(hard_state),
            accepted,
            snapshot,
            committed_entries,
            committed_from: if committed_through > 0 { committed_from } else { 0 },
            committed_through,
            messages,
            read_states,
            must_sync,
        })
    }

    /// The caller persisted, sent and applied the Ready of `mark`.
    pub fn advance(&mut self, mark: ReadyMark) -> Result<()> {
        if self.outstanding != Some(mark.number) {
            return Err(Error::Protocol(format!(
                "advance of Ready {} but the outstanding Ready is {:?}",
                mark.number, self.outstanding
            )));
        }
        self.outstanding = None;
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
        Ok(())
    }

    /// A snapshot send to `to` finished; on failure the next one may go at once.
    pub fn report_snapshot(&mut self, to: u64, ok: bool) {
        if !ok {
            if let Some(p) = self.paxos.progress.get_mut(&to) {
                p.snapshot_until_tick = 0;
            }
        }
    }

    /// `to` could not be reached. Accepts are resent on every heartbeat anyway; nothing to do.
    pub fn report_unreachable(&mut self, _to: u64) {}

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
