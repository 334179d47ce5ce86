//! `RawNode`: the Ready / advance contract around the Raft state machine (docs/design.md §2).
//!
//! ```text
//! rd = node.ready()          entries + hard state (+ snapshot) to persist, messages to send
//! persist(rd)                durable first (fsync when rd.must_sync)
//! send(rd.messages)          then send
//! apply(rd.committed_entries)
//! node.advance(rd)
//! ```

use bytes::Bytes;

use super::config::Config;
use super::core::Raft;
use super::message::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, Snapshot};
use super::read_only::ReadState;
use super::{validate, wire};
use crate::error::{Error, Result};
use crate::raft::storage::Storage;
use crate::role::Role;

/// What the caller must do next: persist, send, apply, then `advance`.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    /// Identifies this Ready; `advance` must be given the outstanding one.
    pub number: u64,
    pub role: Option<Role>,
    pub leader: u64,
    pub term: u64,
    /// `None` when unchanged since the previous Ready.
    pub hard_state: Option<HardState>,
    /// Entries to append to stable storage (replacing any conflicting suffix).
    pub entries: Vec<Entry>,
    pub snapshot: Option<Snapshot>,
    /// Entries to apply, in order. They may include entries of `entries` above: those are
    /// applied after being persisted.
    pub committed_entries: Vec<Entry>,
    /// Encoded frames with their destination, to send after persisting.
    pub messages: Vec<(u64, Bytes)>,
    pub read_states: Vec<ReadState>,
    /// Whether persisting needs an fsync: entries, a snapshot, or a new term or vote.
    pub must_sync: bool,
}

/// What `advance` needs to know about a Ready (kept apart so callers may move the Ready's
/// vectors out before advancing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadyMark {
    pub number: u64,
    pub last_entry: Option<(u64, u64)>,
    pub snapshot_index: Option<u64>,
    pub last_committed: Option<u64>,
}

impl Ready {
    pub fn mark(&self) -> ReadyMark {
        ReadyMark {
            number: self.number,
            last_entry: self.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: self.snapshot.as_ref().map(|s| s.index),
            last_committed: self.committed_entries.last().map(|e| e.index),
        }
    }
}

/// Peer progress as reported by `status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: u64,
    pub matched: u64,
    pub next: u64,
    pub state: &'static str,
    pub is_learner: bool,
    pub recent_active: bool,
    pub inflight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub vote: u64,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub conf_state: ConfState,
    pub progress: Vec<PeerStatus>,
    pub lead_transferee: u64,
    pub uncommitted_bytes: u64,
}

pub struct RawNode<S: Storage> {
    pub raft: Raft<S>,
    prev_hard_state: HardState,
    prev_role: Role,
    prev_leader: u64,
    ready_number: u64,
    /// The Ready handed out and not yet advanced.
    outstanding: Option<u64>,
}

impl<S: Storage> RawNode<S> {
    /// `applied` is the application's applied index on restart: committed entries at or below it
    /// are not delivered again.
    pub fn new(id: u64, config: Config, storage: S, voters: &[u64], learners: &[u64], applied: u64) -> Result<Self> {
        let mut raft = Raft::new(id, config, storage, voters, learners)?;
        let applied = applied.min(raft.log.committed);
        if applied > raft.log.applied {
            raft.log.applied_to(applied);
        }
        let prev_hard_state = raft.hard_state();
        let (prev_role, prev_leader) = (raft.role, raft.leader);
        Ok(RawNode { raft, prev_hard_state, prev_role, prev_leader, ready_number: 0, outstanding: None })
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    pub fn campaign(&mut self) {
        self.raft.hup(false);
    }

    pub fn propose(&mut self, data: Bytes) -> Result<u64> {
        self.raft.propose_entries(vec![Entry::new(0, 0, EntryKind::Normal, data)])
    }

    pub fn propose_many(&mut self, batch: Vec<Bytes>) -> Result<u64> {
        let entries = batch.into_iter().map(|data| Entry::new(0, 0, EntryKind::Normal, data)).collect();
        self.raft.propose_entries(entries)
    }

    pub fn propose_conf_change(&mut self, change: &ConfChange) -> Result<u64> {
        let data = wire::encode_conf_change(change);
        self.raft.propose_entries(vec![Entry::new(0, 0, EntryKind::ConfChange, data)])
    }

    /// Applies a committed configuration-change entry. A payload that does not decode, or a
    /// change that does not apply to the current configuration, is `Error::Config` (field
    /// `conf_change`) and leaves the configuration as it was.
    pub fn apply_conf_change_entry(&mut self, entry: &Entry) -> Result<ConfState> {
        if entry.kind != EntryKind::ConfChange {
            return Err(Error::Protocol(format!("entry {} is not a configuration change", entry.index)));
        }
        // A payload that does not decode is refused like a change that does not apply: a
        // `Config` error, the configuration unchanged, and the caller may skip the entry.
        let change = wire::decode_conf_change(&entry.data).map_err(|e| Error::Config {
            field: "conf_change",
            reason: format!("entry {} does not decode: {e}", entry.index),
        })?;
        self.raft.apply_conf_change(&change)
    }

    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.raft.read_index(context)
    }

    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        self.raft.transfer_leader(to)
    }

    /// Steps a decoded message from a peer.
    /// A message that fails validation (docs/wire-format.md, "Validation at the door") is
    /// refused with `Error::Protocol` and changes nothing.
    pub fn step_message(&mut self, message: Message) -> Result<()> {
        validate::check_addressing(&message, self.raft.id)?;
        self.raft.step(message)
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

    /// Whether the term reached `limits::TERM_MAX`: this node can no longer campaign.
    pub fn term_exhausted(&self) -> bool {
        crate::limits::next_term(self.raft.term).is_none()
    }

    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        if self.outstanding.is_some() {
            return false;
        }
        !raft.msgs.is_empty()
            || !raft.log.unstable.next_entries().is_empty()
            || raft.log.unstable.next_snapshot().is_some()
            || raft.hard_state() != self.prev_hard_state
            || raft.log.has_next_committed_entries()
            || !raft.read_states.is_empty()
            || raft.role != self.prev_role
            || raft.leader != self.prev_leader
    }

    pub fn ready(&mut self) -> Result<Ready> {
        if self.outstanding.is_some() {
            return Err(Error::Protocol("the previous Ready was not advanced".into()));
        }
        let raft = &mut self.raft;
        self.ready_number += 1;
        let entries = raft.log.unstable.next_entries().to_vec();
        let snapshot = raft.log.unstable.next_snapshot().cloned();
        raft.log.unstable.accept_in_progress();
        let committed_entries = if snapshot.is_some() {
            Vec::new()
        } else {
            raft.log.next_committed_entries(
                raft.cfg.max_committed_bytes_per_ready,
                raft.cfg.max_committed_entries_per_ready,
            )
        };
        if let Some(last) = committed_entries.last() {
            raft.log.applying_to(last.index);
        }
        raft.reduce_uncommitted(&committed_entries);
        let hard_state = raft.hard_state();
        let changed = hard_state != self.prev_hard_state;
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard_state.term != self.prev_hard_state.term
            || hard_state.vote != self.prev_hard_state.vote;
        let messages = raft.msgs.drain(..).map(|m| (m.to, wire::encode(&m))).collect();
        let read_states = std::mem::take(&mut raft.read_states);
        self.prev_hard_state = hard_state;
        self.prev_role = raft.role;
        self.prev_leader = raft.leader;
        self.outstanding = Some(self.ready_number);
        Ok(Ready {
            number: self.ready_number,
            role: Some(raft.role),
            leader: raft.leader,
            term: raft.term,
            hard_state: changed.then_some(hard_state),
            entries,
            snapshot,
            committed_entries,
            messages,
            read_states,
            must_sync,
        })
    }

    /// The caller persisted, sent and applied `ready`.
    pub fn advance(&mut self, mark: ReadyMark) -> Result<()> {
        if self.outstanding != Some(mark.number) {
            return Err(Error::Protocol(format!(
                "advance of Ready {} but the outstanding Ready is {:?}",
                mark.number, self.outstanding
            )));
        }
        self.outstanding = None;
        if let Some(index) = mark.snapshot_index {
            self.raft.log.stable_snap_to(index);
            self.raft.log.applied_to(index);
        }
        self.raft.on_persisted_and_applied(mark.last_entry, mark.last_committed);
        Ok(())
    }

    pub fn report_snapshot(&mut self, to: u64, ok: bool) {
        self.raft.report_snapshot(to, ok);
    }

    pub fn report_unreachable(&mut self, to: u64) {
        self.raft.report_unreachable(to);
    }

    pub fn forget_leader(&mut self) {
        self.raft.forget_leader();
    }

    pub fn status(&self) -> Status {
        let raft = &self.raft;
        let progress = if raft.role == Role::Leader {
            raft.tracker
                .progress
                .iter()
                .map(|(id, p)| PeerStatus {
                    id: *id,
                    matched: p.matched,
                    next: p.next,
                    state: p.state.as_str(),
                    is_learner: p.is_learner,
                    recent_active: p.recent_active,
                    inflight: p.inflights.len(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: raft.id,
            role: raft.role,
            term: raft.term,
            vote: raft.vote,
            leader: raft.leader,
            commit: raft.log.committed,
            applied: raft.log.applied,
            first_index: raft.log.first_index(),
            last_index: raft.log.last_index(),
            conf_state: raft.conf_state(),
            progress,
            lead_transferee: raft.lead_transferee,
            uncommitted_bytes: raft.uncommitted_bytes,
        }
    }
}
