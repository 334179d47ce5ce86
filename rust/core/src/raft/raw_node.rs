//! `RawNode`: the Ready / advance contract around the Raft state machine (docs/design.md §2).
//!
//! ```text
//! rd = node.ready()              entries + hard state (+ snapshot) to persist, messages to send
//! send(rd.messages)              a leader's appends may leave before its own write (thesis §10.2.1)
//! persist(rd)                    durable first (fsync when rd.must_sync)
//! send(rd.persisted_messages)    votes, acknowledgements: only once durable
//! apply(rd.committed_entries)
//! node.advance(rd.mark())
//! ```
//!
//! The numbering and the send-early rule are the contract's (`crate::contract`).

use bytes::Bytes;

use super::config::Config;
use super::core::Raft;
use super::message::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, Snapshot};
use super::{validate, wire};
use crate::contract::{split_frames, ProtocolNode, ReadyBook};
use crate::error::{Error, Result};
use crate::raft::storage::Storage;
use crate::role::Role;

crate::protocol_ready! {
    /// What the caller must do next: send `messages`, persist, send `persisted_messages`, apply,
    /// then `advance`. `must_sync`: entries, a snapshot, or a new term or vote.
    pub struct Ready {
        pub term: u64,
        /// `None` when unchanged since the previous Ready.
        pub hard_state: Option<HardState>,
        /// Entries to append to stable storage (replacing any conflicting suffix).
        pub entries: Vec<Entry>,
        pub snapshot: Option<Snapshot>,
        /// Entries to apply, in order. They may include entries of `entries` above: those are
        /// applied after being persisted.
        pub committed_entries: Vec<Entry>,
    }
    fn mark(&self) -> ReadyMark {
        ReadyMark {
            number: self.number,
            last_entry: self.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: self.snapshot.as_ref().map(|s| s.index),
            last_committed: self.committed_entries.last().map(|e| e.index),
        }
    }
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
    book: ReadyBook<HardState>,
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
        let book = ReadyBook::new(raft.hard_state(), raft.role, raft.leader);
        Ok(RawNode { raft, book })
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

    pub fn forget_leader(&mut self) {
        self.raft.forget_leader();
    }

    pub fn conf_state(&self) -> ConfState {
        self.raft.conf_state()
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

impl<S: Storage> ProtocolNode for RawNode<S> {
    type Message = Message;
    type Ready = Ready;
    type Mark = ReadyMark;
    type Status = Status;

    fn id(&self) -> u64 {
        self.raft.id
    }
    fn role(&self) -> Role {
        self.raft.role
    }
    fn leader(&self) -> u64 {
        self.raft.leader
    }
    fn term(&self) -> u64 {
        self.raft.term
    }
    fn commit_index(&self) -> u64 {
        self.raft.log.committed
    }
    fn applied_index(&self) -> u64 {
        self.raft.log.applied
    }
    fn last_index(&self) -> u64 {
        self.raft.log.last_index()
    }
    fn term_exhausted(&self) -> bool {
        crate::limits::next_term(self.raft.term).is_none()
    }
    fn status(&self) -> Status {
        RawNode::status(self)
    }

    fn tick(&mut self) {
        self.raft.tick();
    }
    fn campaign(&mut self) {
        self.raft.hup(false);
    }
    fn propose(&mut self, data: Bytes) -> Result<u64> {
        self.raft.propose_entries(vec![Entry::new(0, 0, EntryKind::Normal, data)])
    }
    fn propose_many(&mut self, batch: Vec<Bytes>) -> Result<u64> {
        let entries = batch.into_iter().map(|data| Entry::new(0, 0, EntryKind::Normal, data)).collect();
        self.raft.propose_entries(entries)
    }
    fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.raft.read_index(context)
    }
    fn transfer_leader(&mut self, to: u64) -> Result<()> {
        self.raft.transfer_leader(to)
    }
    fn report_unreachable(&mut self, to: u64) {
        self.raft.report_unreachable(to);
    }
    fn report_snapshot(&mut self, to: u64, ok: bool) {
        self.raft.report_snapshot(to, ok);
    }

    fn decode(frame: &Bytes) -> Result<Message> {
        Ok(wire::decode(frame)?)
    }
    fn sender(message: &Message) -> u64 {
        message.from
    }
    fn step_message(&mut self, message: Message) -> Result<()> {
        validate::check_addressing(&message, self.raft.id)?;
        self.raft.step(message)
    }

    fn has_ready(&self) -> bool {
        let raft = &self.raft;
        if self.book.outstanding() {
            return false;
        }
        !raft.msgs.is_empty()
            || !raft.log.unstable.next_entries().is_empty()
            || raft.log.unstable.next_snapshot().is_some()
            || raft.log.has_next_committed_entries()
            || !raft.read_states.is_empty()
            || self.book.changed(&raft.hard_state(), raft.role, raft.leader)
    }

    fn ready(&mut self) -> Result<Ready> {
        self.book.check_idle()?;
        let raft = &mut self.raft;
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
        let durable = self.book.durable();
        let term_or_vote_changed = hard_state.term != durable.term || hard_state.vote != durable.vote;
        let must_sync = !entries.is_empty() || snapshot.is_some() || term_or_vote_changed;
        let frames = raft.msgs.drain(..).map(|m| (m.to, wire::encode(&m))).collect();
        let (messages, persisted_messages) = split_frames(raft.role, !term_or_vote_changed, snapshot.is_some(), frames);
        let read_states = std::mem::take(&mut raft.read_states);
        let applied_through = committed_entries.last().map(|e| e.index).or(snapshot.as_ref().map(|s| s.index));
        let (number, hard_state) = self.book.hand_out(hard_state, raft.role, raft.leader);
        Ok(Ready {
            number,
            role: Some(raft.role),
            leader: raft.leader,
            term: raft.term,
            hard_state,
            entries,
            snapshot,
            committed_entries,
            messages,
            persisted_messages,
            read_states,
            must_sync,
            applied_through: applied_through.unwrap_or(0),
        })
    }

    fn advance(&mut self, mark: ReadyMark) -> Result<()> {
        self.book.finish(mark.number)?;
        if let Some(index) = mark.snapshot_index {
            self.raft.log.stable_snap_to(index);
            self.raft.log.applied_to(index);
        }
        self.raft.on_persisted_and_applied(mark.last_entry, mark.last_committed);
        debug_assert!(self.raft.log.applied <= self.raft.log.committed, "applied beyond the commit index");
        Ok(())
    }
}
