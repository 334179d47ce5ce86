//! The Raft state machine. `step` settles the term comparison once, then dispatches by role to
//! `step_leader`, `step_candidate` or `step_follower`. Nothing here does IO: outgoing messages go
//! to `msgs`, entries to the log's unstable tail, and `RawNode` hands both out in a `Ready`.

use bytes::Bytes;

use super::confchange::{self, from_conf_state, to_conf_state};
use super::config::Config;
use super::log::RaftLog;
use super::message::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageType, Snapshot};
use super::progress::{Progress, ProgressState, ProgressTracker};
use super::quorum::VoteResult;
use super::read_only::{ReadOnly, ReadOnlyOption, ReadState};
use super::storage::Storage;
use super::{validate, wire};
use crate::error::{DropReason, Error, Result};
use crate::limits::next_term;
use crate::rng::Rng;
use crate::role::Role;

/// The context of vote requests in an election started by a leadership transfer: voters grant
/// them even inside their leader lease.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// How an election starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignKind {
    /// A pre-election that does not change the term (only when PreVote is on).
    PreElection,
    Election,
    /// Started by `TimeoutNow`: skips the pre-election and overrides the vote lease.
    Transfer,
}

/// Counters that the runtime exposes as metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub elections_started: u64,
    pub leader_changes: u64,
    pub proposals_dropped: u64,
    pub messages_ignored: u64,
}

pub struct Raft<S: Storage> {
    pub id: u64,
    /// Invariant: never decreases.
    pub term: u64,
    /// The node voted for in `term` (0: none).
    pub vote: u64,
    pub role: Role,
    /// The leader of `term` as far as this node knows (0: unknown).
    pub leader: u64,
    pub log: RaftLog<S>,
    pub tracker: ProgressTracker,
    /// Outgoing messages, in order, until the next `Ready`.
    pub msgs: Vec<Message>,
    pub read_states: Vec<ReadState>,
    pub read_only: ReadOnly,
    /// ReadIndex requests received before this leader committed an entry of its term (Raft
    /// thesis §6.4 step 1): answered once it has.
    pending_reads_before_commit: Vec<(u64, Bytes)>,
    /// The voter leadership is being transferred to (0: none).
    pub lead_transferee: u64,
    /// Index of the latest configuration change the leader appended: no new change is accepted
    /// until it is applied.
    pub pending_conf_index: u64,
    /// Payload bytes of entries appended by this leader and not yet committed.
    pub uncommitted_bytes: u64,
    pub election_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_election_timeout: u64,
    pub cfg: Config,
    rng: Rng,
    pub stats: Stats,
}

impl<S: Storage> Raft<S> {
    /// Builds a node from its storage. `voters`/`learners` seed the configuration of a brand-new
    /// node (empty storage); a restarting node takes its configuration from storage.
    pub fn new(id: u64, cfg: Config, storage: S, voters: &[u64], learners: &[u64]) -> Result<Self> {
        cfg.validate()?;
        if id == 0 {
            return Err(Error::config("id", "must be a positive integer"));
        }
        let state = storage.initial_state();
        let mut conf_state = state.conf_state.clone();
        let storage_has_config = !conf_state.voters.is_empty();
        if !storage_has_config {
            if voters.is_empty() {
                return Err(Error::config("voters", "must not be empty for a node with empty storage"));
            }
            if let Some(id) = voters.iter().find(|v| learners.contains(v)) {
                return Err(Error::config("learners", format!("node {id} is both a voter and a learner")));
            }
            if voters.contains(&0) || learners.contains(&0) {
                return Err(Error::config("voters", "node id 0 is reserved"));
            }
            conf_state = ConfState { voters: voters.to_vec(), learners: learners.to_vec(), ..Default::default() };
        }
        let log = RaftLog::new(storage);
        let mut raft = Raft {
            id,
            term: 0,
            vote: 0,
            role: Role::Follower,
            leader: 0,
            log,
            tracker: ProgressTracker::new(cfg.max_inflight_msgs, cfg.max_inflight_bytes),
            msgs: Vec::new(),
            read_states: Vec::new(),
            read_only: ReadOnly::new(cfg.max_pending_reads),
            pending_reads_before_commit: Vec::new(),
            lead_transferee: 0,
            pending_conf_index: 0,
            uncommitted_bytes: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            rng: Rng::from_pair(cfg.seed, id),
            cfg,
            stats: Stats::default(),
        };
        let next = raft.log.last_index() + 1;
        raft.tracker.apply_config(from_conf_state(&conf_state), next);
        let hs = state.hard_state;
        if hs != HardState::default() {
            if hs.commit > raft.log.last_index() || hs.commit < raft.log.first_index() - 1 {
                return Err(Error::Storage(crate::error::StorageError::Other(format!(
                    "hard state commit {} is outside the stored log [{}, {}]",
                    hs.commit,
                    raft.log.first_index() - 1,
                    raft.log.last_index()
                ))));
            }
            raft.term = hs.term;
            raft.vote = hs.vote;
            raft.log.commit_to(hs.commit);
        }
        raft.become_follower(raft.term, 0);
        Ok(raft)
    }

    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed }
    }

    pub fn conf_state(&self) -> ConfState {
        to_conf_state(&self.tracker.config)
    }

    /// A voter of the current configuration (either half) may campaign; learners and nodes that
    /// are not (yet) members may not.
    pub fn promotable(&self) -> bool {
        self.tracker.config.voters.contains(self.id)
    }

    /// A learner of the current configuration (a node in no configuration is a plain follower).
    fn is_learner(&self) -> bool {
        let config = &self.tracker.config;
        !self.promotable() && (config.learners.contains(&self.id) || config.learners_next.contains(&self.id))
    }

    // ---------------------------------------------------------------- outbox

    fn message(&self, msg_type: MessageType, to: u64) -> Message {
        Message::new(msg_type, self.id, to, self.term)
    }

    /// Pushes a message to the outbox. Never addressed to ourselves.
    fn send(&mut self, message: Message) {
        debug_assert_ne!(message.to, self.id, "message to self: {message:?}");
        if message.to != self.id && message.to != 0 {
            self.msgs.push(message);
        }
    }

    // ---------------------------------------------------------------- role transitions

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.leader = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = 0;
        self.tracker.reset_votes();
        let next = self.log.last_index() + 1;
        let stable = self.stable_last_index();
        let (count_max, bytes_max) = (self.tracker.inflight_count_max, self.tracker.inflight_bytes_max);
        for (id, progress) in self.tracker.progress.iter_mut() {
            let is_learner = progress.is_learner;
            *progress = Progress::new(next, count_max, bytes_max);
            progress.is_learner = is_learner;
            if *id == self.id {
                progress.matched = stable;
                progress.recent_active = true;
            }
        }
        self.pending_conf_index = 0;
        self.uncommitted_bytes = 0;
        self.read_only = ReadOnly::new(self.cfg.max_pending_reads);
        self.pending_reads_before_commit.clear();
    }

    /// The last index this node has persisted that is part of its current log.
    fn stable_last_index(&self) -> u64 {
        if self.log.unstable.snapshot.is_some() {
            return 0;
        }
        self.log.unstable.offset - 1
    }

    fn reset_randomized_election_timeout(&mut self) {
        let low = self.cfg.election_tick;
        self.randomized_election_timeout = self.rng.range(low, 2 * low);
    }

    pub fn become_follower(&mut self, term: u64, leader: u64) {
        self.reset(term);
        self.leader = leader;
        self.role = if self.is_learner() { Role::Learner } else { Role::Follower };
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot become a pre-candidate");
        // A pre-election changes neither the term nor the vote.
        self.tracker.reset_votes();
        self.leader = 0;
        self.role = Role::PreCandidate;
    }

    /// Moves to `term` (the next one, checked against `TERM_MAX` by the caller).
    fn become_candidate(&mut self, term: u64) {
        assert_ne!(self.role, Role::Leader, "a leader cannot become a candidate");
        self.reset(term);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert!(matches!(self.role, Role::Candidate), "only a candidate becomes leader");
        self.reset(self.term);
        self.leader = self.id;
        self.role = Role::Leader;
        self.stats.leader_changes += 1;
        if let Some(progress) = self.tracker.progress.get_mut(&self.id) {
            progress.become_replicate();
        }
        // Any configuration change in the log might be pending: be conservative.
        self.pending_conf_index = self.log.last_index();
        // Raft §8: an empty entry of the new term lets earlier entries commit (§5.4.2).
        let noop = Entry::new(0, 0, EntryKind::Normal, Bytes::new());
        self.append_entries(vec![noop]);
        // Raft §5.2: announce the leadership at once rather than at the next heartbeat.
        self.bcast_append();
    }

    // ---------------------------------------------------------------- timers

    pub fn tick(&mut self) {
        let before = self.monotonic_state();
        match self.role {
            Role::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
        self.debug_assert_invariants(before);
    }

    /// The term and the commit index: neither ever decreases.
    fn monotonic_state(&self) -> (u64, u64) {
        (self.term, self.log.committed)
    }

    /// The invariants the comments of `Raft` and `RaftLog` state, checked cheaply in debug builds
    /// after every tick and step: the term and the commit index never decrease, and
    /// `applied <= committed <= last_index`.
    fn debug_assert_invariants(&self, before: (u64, u64)) {
        let (term, committed) = before;
        debug_assert!(self.term >= term, "term went back from {term} to {}", self.term);
        debug_assert!(self.log.committed >= committed, "commit went back from {committed} to {}", self.log.committed);
        debug_assert!(
            self.log.applied <= self.log.committed && self.log.committed <= self.log.last_index(),
            "applied {} <= committed {} <= last index {} broken",
            self.log.applied,
            self.log.committed,
            self.log.last_index()
        );
        debug_assert!(self.lead_transferee == 0 || self.role == Role::Leader, "a transfer target while not leader");
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                if !self.tracker.quorum_active(self.id) {
                    // CheckQuorum (Raft thesis §6.2): a leader cut off from a quorum steps down.
                    self.become_follower(self.term, 0);
                    return;
                }
                let own_id = self.id;
                for (id, progress) in self.tracker.progress.iter_mut() {
                    if *id != own_id {
                        progress.recent_active = false;
                    }
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if self.lead_transferee != 0 {
                self.lead_transferee = 0;
            }
        }
        if self.role != Role::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    // ---------------------------------------------------------------- elections

    /// Starts an election if this node may: `transfer` marks one asked for by `TimeoutNow`.
    pub fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        if self.has_unapplied_conf_changes() {
            // Campaigning now could use a configuration about to be replaced.
            return;
        }
        let kind = if transfer {
            CampaignKind::Transfer
        } else if self.cfg.pre_vote {
            CampaignKind::PreElection
        } else {
            CampaignKind::Election
        };
        self.campaign(kind);
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        if self.log.applied >= self.log.committed {
            return false;
        }
        let entries = self.log.slice(self.log.applied + 1, self.log.committed + 1, u64::MAX).unwrap_or_default();
        entries.iter().any(|e| e.kind == EntryKind::ConfChange)
    }

    /// Starts an election. A node whose term reached `TERM_MAX` cannot campaign any more (the
    /// term never wraps): it stays a follower.
    fn campaign(&mut self, kind: CampaignKind) {
        let Some(next) = next_term(self.term) else {
            self.stats.messages_ignored += 1;
            return;
        };
        self.stats.elections_started += 1;
        let (vote_type, term) = if kind == CampaignKind::PreElection {
            self.become_pre_candidate();
            // A pre-vote asks for the term we would campaign at, without moving to it.
            (MessageType::RequestPreVote, next)
        } else {
            self.become_candidate(next);
            (MessageType::RequestVote, self.term)
        };
        if self.poll(self.id, true) == VoteResult::Won {
            // A single-voter configuration wins at once.
            if kind == CampaignKind::PreElection {
                self.campaign(CampaignKind::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for id in self.tracker.voter_ids() {
            if id == self.id {
                continue;
            }
            let mut request = self.message(vote_type, id);
            request.term = term;
            request.index = last_index;
            request.log_term = last_term;
            if kind == CampaignKind::Transfer {
                request.context = Bytes::from_static(CAMPAIGN_TRANSFER);
            }
            self.send(request);
        }
    }

    fn poll(&mut self, id: u64, granted: bool) -> VoteResult {
        self.tracker.record_vote(id, granted);
        self.tracker.vote_result()
    }

    // ---------------------------------------------------------------- step

    /// Steps a message from a peer. It is validated first (`validate::check_message`): a
    /// refused one is `Error::Protocol` and changes nothing.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let before = self.monotonic_state();
        let result = self.step_validated(m);
        self.debug_assert_invariants(before);
        result
    }

    fn step_validated(&mut self, m: Message) -> Result<()> {
        validate::check_message(&m)?;
        if m.term == 0 {
            // Forwarded requests (proposals, reads, transfers) carry no term.
        } else if m.term > self.term {
            if matches!(m.msg_type, MessageType::RequestVote | MessageType::RequestPreVote) {
                let force = m.context.as_ref() == CAMPAIGN_TRANSFER;
                let in_lease =
                    self.cfg.check_quorum && self.leader != 0 && self.election_elapsed < self.cfg.election_tick;
                if !force && in_lease {
                    // The vote lease (Raft thesis §4.2.3): while we hear from a leader, a
                    // disruptive candidate gets no vote and does not move our term.
                    self.stats.messages_ignored += 1;
                    return Ok(());
                }
            }
            match m.msg_type {
                // A pre-vote request never changes our term.
                MessageType::RequestPreVote => {}
                // A granted pre-vote carries the term the candidate asked for; we move to it only
                // if we win and campaign for real.
                MessageType::RequestPreVoteResponse if !m.reject => {}
                MessageType::AppendEntries | MessageType::Heartbeat | MessageType::InstallSnapshot => {
                    self.become_follower(m.term, m.from);
                }
                _ => self.become_follower(m.term, 0),
            }
        } else if m.term < self.term {
            if (self.cfg.check_quorum || self.cfg.pre_vote)
                && matches!(m.msg_type, MessageType::Heartbeat | MessageType::AppendEntries)
            {
                // A stale leader (for example one isolated while we moved on) learns our term
                // from this answer and steps down; otherwise it could keep followers that ignore
                // votes inside their lease from ever electing anyone.
                let answer = self.message(MessageType::AppendEntriesResponse, m.from);
                self.send(answer);
            } else if matches!(m.msg_type, MessageType::RequestPreVote | MessageType::RequestVote) {
                // Figure 2: a stale candidate hears our term and stands down.
                let response_type = if m.msg_type == MessageType::RequestVote {
                    MessageType::RequestVoteResponse
                } else {
                    MessageType::RequestPreVoteResponse
                };
                let mut answer = self.message(response_type, m.from);
                answer.reject = true;
                self.send(answer);
            } else {
                self.stats.messages_ignored += 1;
            }
            return Ok(());
        }

        match m.msg_type {
            MessageType::RequestVote | MessageType::RequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower | Role::Learner => self.step_follower(m),
            },
        }
    }

    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.msg_type == MessageType::RequestPreVote;
        let response_type = if pre { MessageType::RequestPreVoteResponse } else { MessageType::RequestVoteResponse };
        // Raft §5.2: one vote per term, first come first served; a repeated request from the same
        // candidate is granted again. A pre-vote for a future term is granted when we know no
        // leader... or when the vote lease checked above allowed it through.
        let can_vote = self.vote == m.from || (self.vote == 0 && self.leader == 0) || (pre && m.term > self.term);
        // Raft §5.4.1: only for a candidate whose log is at least as up to date as ours.
        if can_vote && self.log.is_up_to_date(m.index, m.log_term) {
            let mut answer = self.message(response_type, m.from);
            answer.term = m.term;
            self.send(answer);
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            let mut answer = self.message(response_type, m.from);
            answer.reject = true;
            self.send(answer);
        }
    }

    fn step_leader(&mut self, m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Propose => {
                // A forwarded proposal: the follower's caller was already answered, so a drop is
                // only counted.
                let mut entries = m.entries;
                entries.retain(|e| e.kind == EntryKind::Normal || self.conf_change_acceptable(e).is_ok());
                if self.propose_entries(entries).is_err() {
                    self.stats.proposals_dropped += 1;
                }
            }
            MessageType::ReadIndex => self.handle_read_index(m.from, m.context),
            // A forwarded transfer names the transferee in `index`.
            MessageType::TransferLeader => self.handle_transfer_leader(m.index),
            MessageType::AppendEntriesResponse => return self.handle_append_response(m),
            MessageType::HeartbeatResponse => self.handle_heartbeat_response(m),
            _ => self.stats.messages_ignored += 1,
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::AppendEntries | MessageType::Heartbeat | MessageType::InstallSnapshot => {
                // Raft §5.2: a leader of our term exists; the candidate returns to following.
                self.become_follower(m.term, m.from);
                self.handle_leader_message(m);
            }
            MessageType::RequestPreVoteResponse | MessageType::RequestVoteResponse => {
                let expected = if self.role == Role::PreCandidate {
                    MessageType::RequestPreVoteResponse
                } else {
                    MessageType::RequestVoteResponse
                };
                if m.msg_type != expected {
                    self.stats.messages_ignored += 1;
                    return Ok(());
                }
                match self.poll(m.from, !m.reject) {
                    VoteResult::Won => {
                        if self.role == Role::PreCandidate {
                            self.campaign(CampaignKind::Election);
                        } else {
                            self.become_leader();
                        }
                    }
                    // A pre-candidate that loses goes back to following at its old term. A
                    // candidate that can no longer win waits as a candidate for a leader or its
                    // next election timeout.
                    VoteResult::Lost if self.role == Role::PreCandidate => self.become_follower(self.term, 0),
                    VoteResult::Lost => {}
                    VoteResult::Pending => {}
                }
            }
            _ => self.stats.messages_ignored += 1,
        }
        Ok(())
    }

    fn step_follower(&mut self, m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Propose => {
                if self.leader == 0 || self.cfg.disable_proposal_forwarding {
                    self.stats.proposals_dropped += 1;
                } else {
                    let mut forward = m;
                    forward.to = self.leader;
                    forward.from = self.id;
                    self.send(forward);
                }
            }
            MessageType::AppendEntries | MessageType::Heartbeat | MessageType::InstallSnapshot => {
                // Only the leader of our term sends these: it resets the election timer.
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_leader_message(m);
            }
            MessageType::TransferLeader | MessageType::ReadIndex => {
                // The sender took us for the leader. Forwarding it on would put another node's
                // id in `from`, which the leader must refuse; the sender retries once it knows
                // the leader.
                self.stats.messages_ignored += 1;
            }
            MessageType::TimeoutNow => {
                // Leadership transfer (Raft thesis §3.10): campaign at once, skipping PreVote.
                self.hup(true);
            }
            MessageType::ReadIndexResponse => {
                self.read_states.push(ReadState { index: m.index, context: m.context });
            }
            _ => self.stats.messages_ignored += 1,
        }
        Ok(())
    }

    // ---------------------------------------------------------------- follower handlers

    fn handle_leader_message(&mut self, m: Message) {
        match m.msg_type {
            MessageType::AppendEntries => self.handle_append_entries(m),
            MessageType::Heartbeat => self.handle_heartbeat(m),
            MessageType::InstallSnapshot => self.handle_snapshot(m),
            other => unreachable!("{other:?} is not a leader message"),
        }
    }

    fn handle_append_entries(&mut self, m: Message) {
        let mut answer = self.message(MessageType::AppendEntriesResponse, m.from);
        if m.index < self.log.committed {
            // Already committed here: tell the leader where we are.
            answer.index = self.log.committed;
            self.send(answer);
            return;
        }
        match self.log.maybe_append(m.index, m.log_term, m.commit, &m.entries) {
            Some(last) => {
                answer.index = last;
                self.send(answer);
            }
            None => {
                // Raft §5.3 with fast backtracking: point the leader at the last entry that can
                // possibly match, skipping every entry of a term above the leader's.
                let hint = m.index.min(self.log.last_index());
                let (hint_index, hint_term) = self.log.find_conflict_by_term(hint, m.log_term);
                answer.index = m.index;
                answer.reject = true;
                answer.reject_hint = hint_index;
                answer.log_term = hint_term;
                self.send(answer);
            }
        }
    }

    fn handle_heartbeat(&mut self, m: Message) {
        // The leader sends at most our match index, which is in our log.
        self.log.commit_to(m.commit.min(self.log.last_index()));
        let mut answer = self.message(MessageType::HeartbeatResponse, m.from);
        answer.context = m.context;
        self.send(answer);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let Some(snapshot) = m.snapshot else {
            self.stats.messages_ignored += 1;
            return;
        };
        let mut answer = self.message(MessageType::AppendEntriesResponse, m.from);
        answer.index = if self.restore(snapshot) { self.log.last_index() } else { self.log.committed };
        self.send(answer);
    }

    /// Installs a leader's snapshot. Returns false when it is stale (at or below our commit
    /// index) or our log already holds its last entry (then only the commit index moves).
    pub fn restore(&mut self, snapshot: Snapshot) -> bool {
        if snapshot.index <= self.log.committed {
            return false;
        }
        if self.role != Role::Follower && self.role != Role::Learner {
            self.become_follower(next_term(self.term).unwrap_or(self.term), 0);
            return false;
        }
        let cs = &snapshot.conf_state;
        let member = cs.voters.contains(&self.id)
            || cs.learners.contains(&self.id)
            || cs.voters_outgoing.contains(&self.id)
            || cs.learners_next.contains(&self.id);
        if !member {
            // A snapshot of a configuration we are not part of is not ours to install.
            self.stats.messages_ignored += 1;
            return false;
        }
        if self.log.match_term(snapshot.index, snapshot.term) {
            self.log.commit_to(snapshot.index);
            return false;
        }
        let config = from_conf_state(&snapshot.conf_state);
        self.log.restore(snapshot);
        let next = self.log.last_index() + 1;
        self.tracker.apply_config(config, next);
        let leader = self.leader;
        self.role = if self.is_learner() { Role::Learner } else { Role::Follower };
        self.leader = leader;
        true
    }

    // ---------------------------------------------------------------- leader replication

    fn peer_ids(&self) -> Vec<u64> {
        self.tracker.progress.keys().copied().filter(|id| *id != self.id).collect()
    }

    pub fn bcast_append(&mut self) {
        for id in self.peer_ids() {
            self.maybe_send_append(id, true);
        }
    }

    /// A periodic heartbeat carries the newest pending read's context, so its acknowledgements
    /// also confirm leadership for every pending read.
    fn bcast_heartbeat(&mut self) {
        let context = self.read_only.last_pending_context().unwrap_or_default();
        self.bcast_heartbeat_with_context(context);
    }

    /// Sends the follower what it lacks if its progress allows. Returns whether a message went out.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(progress) = self.tracker.progress.get(&to) else { return false };
        if progress.is_paused() {
            return false;
        }
        let next = progress.next;
        let prev_index = next - 1;
        let prev_term = self.log.term(prev_index);
        let entries = self.log.entries(next, self.cfg.max_size_per_msg);
        let (prev_term, mut entries) = match (prev_term, entries) {
            (Ok(t), Ok(e)) => (t, e),
            _ => return self.send_snapshot(to),
        };
        // Many tiny entries could exceed the count a receiver accepts even within the byte limit.
        entries.truncate(wire::MAX_ENTRIES_PER_MESSAGE);
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = entries.last().map(|e| e.index);
        let bytes: u64 = entries.iter().map(Entry::payload_size).sum();
        let mut append = self.message(MessageType::AppendEntries, to);
        append.index = prev_index;
        append.log_term = prev_term;
        append.entries = entries;
        append.commit = self.log.committed;
        self.send(append);
        let Some(progress) = self.tracker.progress.get_mut(&to) else { return true };
        match progress.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    progress.optimistic_update(last);
                    progress.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => progress.probe_sent = true,
            ProgressState::Snapshot => unreachable!("paused progress sent an append"),
        }
        true
    }

    fn send_snapshot(&mut self, to: u64) -> bool {
        let active = self.tracker.progress.get(&to).is_some_and(|p| p.recent_active);
        if !active {
            // Do not ship a snapshot to a peer we have not heard from.
            return false;
        }
        let snapshot = self.log.snapshot();
        if snapshot.is_empty() {
            return false;
        }
        let index = snapshot.index;
        let mut message = self.message(MessageType::InstallSnapshot, to);
        message.snapshot = Some(snapshot);
        self.send(message);
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            progress.become_snapshot(index);
        }
        true
    }

    fn handle_append_response(&mut self, m: Message) -> Result<()> {
        let last_index = self.log.last_index();
        let first_index = self.log.first_index();
        if m.index > last_index {
            // This leader sent nothing past its last index in its term: no correct answer
            // acknowledges or rejects a position beyond it.
            return Err(Error::Protocol(format!(
                "append response from {} names index {} beyond the leader's last index {last_index}",
                m.from, m.index
            )));
        }
        if !self.tracker.progress.contains_key(&m.from) {
            self.stats.messages_ignored += 1;
            return Ok(());
        }
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                // Skip every entry of ours whose term is above the follower's term at the hint:
                // none of them can match.
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term).0;
            }
            let progress = self.tracker.progress.get_mut(&m.from).expect("checked above");
            progress.recent_active = true;
            if progress.maybe_decr_to(m.index, next_probe) {
                if progress.state == ProgressState::Replicate {
                    progress.become_probe();
                }
                self.maybe_send_append(m.from, true);
            }
            return Ok(());
        }
        let progress = self.tracker.progress.get_mut(&m.from).expect("checked above");
        progress.recent_active = true;
        let was_paused = progress.is_paused();
        if !progress.maybe_update(m.index) {
            return Ok(());
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot => {
                if progress.matched + 1 >= first_index || progress.matched >= progress.pending_snapshot {
                    progress.become_probe();
                    progress.become_replicate();
                }
            }
            ProgressState::Replicate => progress.inflights.free_le(m.index),
        }
        if self.maybe_commit() {
            self.bcast_append();
        } else if was_paused {
            self.maybe_send_append(m.from, true);
        }
        // Keep the pipeline full.
        while self.maybe_send_append(m.from, false) {}
        if m.from == self.lead_transferee && self.tracker.progress.get(&m.from).is_some_and(|p| p.matched == last_index)
        {
            self.send_timeout_now(m.from);
        }
        Ok(())
    }

    fn handle_heartbeat_response(&mut self, m: Message) {
        let last_index = self.log.last_index();
        let Some(progress) = self.tracker.progress.get_mut(&m.from) else {
            self.stats.messages_ignored += 1;
            return;
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        if progress.state == ProgressState::Replicate && progress.inflights.full() {
            // Every append in flight may have been lost (or their answers): with the window
            // full nothing more would ever be sent. Fall back to probing from the match index.
            progress.become_probe();
        }
        if progress.matched < last_index {
            self.maybe_send_append(m.from, true);
        }
        if self.cfg.read_only_option != ReadOnlyOption::Safe || m.context.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(m.from, &m.context) else { return };
        let acks = acks.clone();
        let result = self.tracker.config.voters.vote_result(|id| Some(acks.contains(&id) || id == self.id));
        if result != VoteResult::Won {
            return;
        }
        for status in self.read_only.advance(&m.context) {
            self.respond_read(status.from, status.index, status.context);
        }
    }

    /// Raft §5.4.2: the leader commits by counting replicas only entries of its own term.
    /// Returns whether the commit index changed.
    pub fn maybe_commit(&mut self) -> bool {
        let committed_before = self.log.committed;
        let quorum_index = self.tracker.committed();
        if !self.log.maybe_commit(quorum_index, self.term) {
            return false;
        }
        if self.log.term(committed_before).ok() != Some(self.term) {
            // First commit of this term: reads held back until now can be served.
            let pending = std::mem::take(&mut self.pending_reads_before_commit);
            for (from, context) in pending {
                self.send_read_index(from, context);
            }
        }
        true
    }

    fn send_timeout_now(&mut self, to: u64) {
        let message = self.message(MessageType::TimeoutNow, to);
        self.send(message);
    }

    // ---------------------------------------------------------------- proposals

    /// Appends entries to the leader's log (assigning index and term). The leader's own progress
    /// moves only when the entries are persisted (see `on_persisted`).
    fn append_entries(&mut self, mut entries: Vec<Entry>) -> u64 {
        let mut index = self.log.last_index();
        for entry in entries.iter_mut() {
            index += 1;
            entry.index = index;
            entry.term = self.term;
        }
        self.uncommitted_bytes += entries.iter().map(Entry::payload_size).sum::<u64>();
        self.log.append(&entries)
    }

    fn conf_change_acceptable(&self, entry: &Entry) -> Result<ConfChange> {
        if self.pending_conf_index > self.log.applied {
            return Err(Error::dropped(DropReason::ConfChangePending, "a configuration change is pending"));
        }
        let change = wire::decode_conf_change(&entry.data)?;
        confchange::apply_change(&self.tracker.config, &change)
            .map_err(|reason| Error::Config { field: "conf_change", reason })?;
        Ok(change)
    }

    /// Proposes entries (their `index`/`term` are assigned here). Returns the index of the first
    /// on a leader, 0 when forwarded.
    pub fn propose_entries(&mut self, entries: Vec<Entry>) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        if entries.len() > wire::MAX_ENTRIES_PER_MESSAGE {
            self.stats.proposals_dropped += 1;
            return Err(Error::dropped(
                DropReason::TooManyEntries,
                "more entries in one proposal than a message may carry",
            ));
        }
        for entry in &entries {
            if entry.payload_size() > self.cfg.max_entry_bytes {
                self.stats.proposals_dropped += 1;
                return Err(Error::dropped(DropReason::EntryTooLarge, "entry larger than max_entry_bytes"));
            }
        }
        match self.role {
            Role::Leader => {}
            Role::Candidate | Role::PreCandidate => {
                self.stats.proposals_dropped += 1;
                return Err(Error::dropped(DropReason::NoLeader, "no leader: an election is in progress"));
            }
            Role::Follower | Role::Learner => {
                if self.leader == 0 {
                    self.stats.proposals_dropped += 1;
                    return Err(Error::dropped(DropReason::NoLeader, "no leader is known"));
                }
                if self.cfg.disable_proposal_forwarding {
                    return Err(Error::NotLeader { leader_hint: self.leader });
                }
                let mut forward = self.message(MessageType::Propose, self.leader);
                forward.term = 0;
                forward.entries = entries;
                self.send(forward);
                return Ok(0);
            }
        }
        if self.lead_transferee != 0 {
            self.stats.proposals_dropped += 1;
            return Err(Error::dropped(DropReason::TransferInProgress, "a leadership transfer is in progress"));
        }
        let bytes: u64 = entries.iter().map(Entry::payload_size).sum();
        if self.uncommitted_bytes > 0 && bytes > 0 && self.uncommitted_bytes + bytes > self.cfg.max_uncommitted_bytes {
            self.stats.proposals_dropped += 1;
            return Err(Error::dropped(
                DropReason::UncommittedBytes,
                "too many uncommitted bytes (max_uncommitted_bytes)",
            ));
        }
        let mut conf_index = None;
        for (i, entry) in entries.iter().enumerate() {
            if entry.kind == EntryKind::ConfChange {
                if conf_index.is_some() {
                    return Err(Error::dropped(
                        DropReason::MultipleConfChanges,
                        "one configuration change per proposal",
                    ));
                }
                self.conf_change_acceptable(entry)?;
                conf_index = Some(i as u64);
            }
        }
        let first = self.log.last_index() + 1;
        self.append_entries(entries);
        if let Some(offset) = conf_index {
            self.pending_conf_index = first + offset;
        }
        self.bcast_append();
        Ok(first)
    }

    // ---------------------------------------------------------------- reads

    /// A linearizable read barrier: answered in `read_states` with the index the application must
    /// have applied before serving the read.
    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        if context.len() > wire::MAX_CONTEXT_BYTES {
            return Err(Error::dropped(DropReason::ContextTooLarge, "read context larger than a message may carry"));
        }
        match self.role {
            Role::Leader => {
                if self.read_only.is_full() {
                    return Err(Error::dropped(
                        DropReason::TooManyPendingReads,
                        "too many pending reads (max_pending_reads)",
                    ));
                }
                self.handle_read_index(self.id, context);
                Ok(())
            }
            _ if self.leader == 0 => Err(Error::dropped(DropReason::NoLeader, "no leader is known")),
            _ => {
                let mut forward = self.message(MessageType::ReadIndex, self.leader);
                forward.term = 0;
                forward.context = context;
                self.send(forward);
                Ok(())
            }
        }
    }

    fn handle_read_index(&mut self, from: u64, context: Bytes) {
        if self.log.term(self.log.committed).ok() != Some(self.term) {
            // Raft thesis §6.4: a new leader does not yet know the latest commit index.
            if self.pending_reads_before_commit.len() < self.cfg.max_pending_reads {
                self.pending_reads_before_commit.push((from, context));
            }
            return;
        }
        self.send_read_index(from, context);
    }

    fn send_read_index(&mut self, from: u64, context: Bytes) {
        let committed = self.log.committed;
        if self.tracker.is_singleton() {
            self.respond_read(from, committed, context);
            return;
        }
        match self.cfg.read_only_option {
            ReadOnlyOption::Safe => {
                if self.read_only.add_request(committed, from, context.clone()) {
                    self.read_only.recv_ack(self.id, &context);
                    self.bcast_heartbeat_with_context(context);
                }
            }
            ReadOnlyOption::LeaseBased => self.respond_read(from, committed, context),
        }
    }

    fn bcast_heartbeat_with_context(&mut self, context: Bytes) {
        for id in self.peer_ids() {
            let Some(progress) = self.tracker.progress.get(&id) else { continue };
            let mut heartbeat = self.message(MessageType::Heartbeat, id);
            // Never more than the follower is known to hold, so it can commit without checks.
            heartbeat.commit = progress.matched.min(self.log.committed);
            heartbeat.context = context.clone();
            self.send(heartbeat);
        }
    }

    fn respond_read(&mut self, from: u64, index: u64, context: Bytes) {
        if from == self.id || from == 0 {
            self.read_states.push(ReadState { index, context });
        } else {
            let mut answer = self.message(MessageType::ReadIndexResponse, from);
            answer.index = index;
            answer.context = context;
            self.send(answer);
        }
    }

    // ---------------------------------------------------------------- leadership transfer

    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        match self.role {
            Role::Leader => {
                self.handle_transfer_leader(to);
                Ok(())
            }
            _ if self.leader == 0 => Err(Error::dropped(DropReason::NoLeader, "no leader is known")),
            _ => {
                // A forwarded transfer names the transferee in `index` (`from` is always the sender).
                let mut forward = Message::new(MessageType::TransferLeader, self.id, self.leader, 0);
                forward.index = to;
                self.send(forward);
                Ok(())
            }
        }
    }

    fn handle_transfer_leader(&mut self, transferee: u64) {
        if self.tracker.progress.get(&transferee).is_none_or(|p| p.is_learner) {
            // Only a voter can lead.
            return;
        }
        if self.lead_transferee == transferee || transferee == self.id {
            return;
        }
        // Leadership must move within an election timeout or the transfer is abandoned.
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        let caught_up = self.tracker.progress.get(&transferee).is_some_and(|p| p.matched == self.log.last_index());
        if caught_up {
            self.send_timeout_now(transferee);
        } else {
            self.maybe_send_append(transferee, true);
        }
    }

    // ---------------------------------------------------------------- configuration

    /// Applies a committed configuration change and returns the new configuration.
    pub fn apply_conf_change(&mut self, change: &ConfChange) -> Result<ConfState> {
        let config = confchange::apply_change(&self.tracker.config, change)
            .map_err(|reason| Error::Config { field: "conf_change", reason })?;
        let next = self.log.last_index() + 1;
        self.tracker.apply_config(config, next);
        match self.role {
            Role::Leader => {
                if !self.promotable() {
                    // A removed or demoted leader steps down (Raft thesis §4.2.2).
                    self.become_follower(self.term, 0);
                } else {
                    if self.lead_transferee != 0 && !self.tracker.progress.contains_key(&self.lead_transferee) {
                        self.lead_transferee = 0;
                    }
                    // A leader added back to the configuration counts what it has persisted.
                    let stable = self.stable_last_index();
                    if let Some(progress) = self.tracker.progress.get_mut(&self.id) {
                        progress.maybe_update(stable);
                    }
                    // A smaller quorum may commit at once; new peers need their first append.
                    self.maybe_commit();
                    self.bcast_append();
                }
            }
            Role::Follower | Role::Learner => {
                self.role = if self.is_learner() { Role::Learner } else { Role::Follower };
            }
            Role::Candidate | Role::PreCandidate => {
                if !self.promotable() {
                    self.become_follower(self.term, 0);
                }
            }
        }
        Ok(self.conf_state())
    }

    /// Called by `RawNode::advance` once the caller persisted entries up to `index`/`term` and
    /// applied up to `applied`.
    pub fn on_persisted_and_applied(&mut self, persisted: Option<(u64, u64)>, applied: Option<u64>) {
        if let Some((index, term)) = persisted {
            self.log.stable_to(index, term);
        }
        if let Some(applied) = applied {
            self.log.applied_to(applied);
        }
        if self.role != Role::Leader {
            return;
        }
        let stable = self.stable_last_index();
        let own_id = self.id;
        let moved = self.tracker.progress.get_mut(&own_id).is_some_and(|p| p.maybe_update(stable));
        if moved && self.maybe_commit() {
            self.bcast_append();
        }
        // Joint consensus with automatic leave: once the joint configuration is applied the
        // leader proposes leaving it.
        let config = &self.tracker.config;
        if config.auto_leave && config.is_joint() && self.log.applied >= self.pending_conf_index {
            let data = wire::encode_conf_change(&ConfChange::default());
            let entry = Entry::new(0, 0, EntryKind::ConfChange, data);
            let index = self.log.last_index() + 1;
            self.append_entries(vec![entry]);
            self.pending_conf_index = index;
            self.bcast_append();
        }
    }

    /// Reduces the uncommitted-bytes account by entries handed out as committed.
    pub fn reduce_uncommitted(&mut self, entries: &[Entry]) {
        if self.role != Role::Leader {
            return;
        }
        let bytes: u64 = entries.iter().map(Entry::payload_size).sum();
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
    }

    // ---------------------------------------------------------------- local reports

    /// The application finished (or failed) sending a snapshot to `to`.
    pub fn report_snapshot(&mut self, to: u64, ok: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            if progress.state == ProgressState::Snapshot {
                if !ok {
                    progress.pending_snapshot = 0;
                }
                progress.become_probe();
                // Wait for a heartbeat answer before the next attempt.
                progress.probe_sent = true;
            }
        }
    }

    /// The transport could not deliver to `to`: stop pipelining to it.
    pub fn report_unreachable(&mut self, to: u64) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
        }
    }

    /// A follower forgets its leader, so that it grants (pre-)votes at once instead of waiting
    /// for its vote lease to run out. This is the way out of the PreVote + CheckQuorum trap where
    /// a partially partitioned leader keeps some followers from voting for anyone else.
    pub fn forget_leader(&mut self) {
        if self.role == Role::Follower || self.role == Role::Learner {
            self.leader = 0;
        }
    }
}
