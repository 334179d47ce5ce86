//! What the leader knows about each follower's log: the match and next indexes, the replication
//! state (probe, replicate, snapshot) and a window of in-flight appends bounded by count and bytes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::quorum::{JointConfig, VoteResult};

/// How the leader currently sends to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// One append per heartbeat interval until the follower's position is found.
    Probe,
    /// The position is known: appends are pipelined up to the in-flight limits.
    Replicate,
    /// A snapshot is on its way; nothing else is sent until it is reported.
    Snapshot,
}

impl ProgressState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        }
    }
}

/// Appends sent but not yet acknowledged, as (last index, payload bytes), oldest first.
/// Invariant: `len() <= count_max` and `bytes <= bytes_max` except that one message may always
/// be in flight (so an entry larger than the byte budget still gets through).
#[derive(Debug, Clone)]
pub struct Inflights {
    queue: VecDeque<(u64, u64)>,
    bytes: u64,
    count_max: usize,
    bytes_max: u64,
}

impl Inflights {
    pub fn new(count_max: usize, bytes_max: u64) -> Self {
        Inflights { queue: VecDeque::new(), bytes: 0, count_max, bytes_max }
    }

    pub fn add(&mut self, last_index: u64, bytes: u64) {
        debug_assert!(self.queue.back().is_none_or(|(i, _)| *i < last_index));
        self.queue.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Frees every append whose last index is at or below `index` (acknowledged).
    pub fn free_le(&mut self, index: u64) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > index {
                break;
            }
            self.queue.pop_front();
            self.bytes -= bytes;
        }
    }

    pub fn full(&self) -> bool {
        self.queue.len() >= self.count_max || (self.bytes_max > 0 && self.bytes >= self.bytes_max)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// A follower's replication progress. Invariant: `matched < next`.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The highest index known to be replicated on the follower.
    pub matched: u64,
    /// The next index to send.
    pub next: u64,
    pub state: ProgressState,
    /// In `Snapshot` state, the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// In `Probe` state, an append was sent and we wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    pub inflights: Inflights,
    pub is_learner: bool,
}

impl Progress {
    pub fn new(next: u64, inflight_count_max: usize, inflight_bytes_max: u64) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(inflight_count_max, inflight_bytes_max),
            is_learner: false,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    pub fn become_probe(&mut self) {
        // After a snapshot the follower holds at least the snapshot index.
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched + 1;
        }
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// An append was acknowledged up to `index`. Returns whether `matched` moved.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index.saturating_add(1));
        updated
    }

    /// Pipelining: assume the append ending at `last` will succeed.
    pub fn optimistic_update(&mut self, last: u64) {
        self.next = last + 1;
    }

    /// A rejection of the append after `rejected`, with the follower's hint. Returns false when
    /// the rejection is stale (answers an older append) and was ignored.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            // Everything up to matched is known good: restart right after it.
            self.next = self.matched + 1;
            return true;
        }
        // In probe state only the answer to the last probe (next - 1) counts.
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = (rejected.min(match_hint.saturating_add(1))).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Whether sending more appends must wait.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

/// The active membership configuration. Invariants: `learners` and the voters of either half are
/// disjoint; `learners_next` holds only ids of `voters.outgoing` and is non-empty only while joint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerConfig {
    pub voters: JointConfig,
    pub learners: BTreeSet<u64>,
    pub learners_next: BTreeSet<u64>,
    pub auto_leave: bool,
}

impl TrackerConfig {
    pub fn is_joint(&self) -> bool {
        self.voters.is_joint()
    }

    /// Every node that should receive replication: voters of both halves and learners.
    pub fn all_ids(&self) -> BTreeSet<u64> {
        let mut ids: BTreeSet<u64> = self.voters.ids().into_iter().collect();
        ids.extend(self.learners.iter().copied());
        ids.extend(self.learners_next.iter().copied());
        ids
    }
}

/// Per-peer progress, votes of the current election and the configuration.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    pub config: TrackerConfig,
    /// Ordered by id so that iteration (and so the order of outgoing messages) is deterministic.
    pub progress: BTreeMap<u64, Progress>,
    pub votes: BTreeMap<u64, bool>,
    pub inflight_count_max: usize,
    pub inflight_bytes_max: u64,
}

impl ProgressTracker {
    pub fn new(inflight_count_max: usize, inflight_bytes_max: u64) -> Self {
        ProgressTracker {
            config: TrackerConfig::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            inflight_count_max,
            inflight_bytes_max,
        }
    }

    /// The committed index of the configuration, from each voter's `matched`.
    pub fn committed(&self) -> u64 {
        self.config.voters.committed_index(|id| self.progress.get(&id).map(|p| p.matched))
    }

    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    pub fn vote_result(&self) -> VoteResult {
        self.config.voters.vote_result(|id| self.votes.get(&id).copied())
    }

    /// CheckQuorum: whether a quorum (counting `self_id`) was heard from recently.
    pub fn quorum_active(&self, self_id: u64) -> bool {
        let result = self.config.voters.vote_result(|id| {
            if id == self_id {
                return Some(true);
            }
            self.progress.get(&id).map(|p| p.recent_active)
        });
        result == VoteResult::Won
    }

    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming.len() == 1 && !self.config.is_joint()
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.config.voters.ids()
    }

    /// Replaces the configuration, keeping progress of remaining peers and creating progress
    /// (next = `next_index`) for new ones.
    pub fn apply_config(&mut self, config: TrackerConfig, next_index: u64) {
        let ids = config.all_ids();
        self.progress.retain(|id, _| ids.contains(id));
        for id in &ids {
            let progress = self
                .progress
                .entry(*id)
                .or_insert_with(|| Progress::new(next_index, self.inflight_count_max, self.inflight_bytes_max));
            progress.is_learner = !config.voters.contains(*id);
        }
        self.config = config;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_free_acknowledged_and_bound_by_count_and_bytes() {
        let mut inflights = Inflights::new(3, 100);
        inflights.add(1, 10);
        inflights.add(2, 10);
        assert!(!inflights.full());
        inflights.add(3, 10);
        assert!(inflights.full(), "count bound");
        inflights.free_le(2);
        assert_eq!(inflights.len(), 1);
        inflights.add(4, 95);
        assert!(inflights.full(), "byte bound");
        inflights.free_le(10);
        assert!(inflights.is_empty());
    }

    #[test]
    fn probe_rejection_uses_hint_and_ignores_stale_answers() {
        let mut p = Progress::new(10, 8, 0);
        p.probe_sent = true;
        assert!(!p.maybe_decr_to(5, 2), "answer to an older probe");
        assert!(p.maybe_decr_to(9, 4));
        assert_eq!(p.next, 5);
        assert!(!p.probe_sent);
    }

    #[test]
    fn replicate_rejection_restarts_after_match() {
        let mut p = Progress::new(10, 8, 0);
        p.matched = 6;
        p.become_replicate();
        p.optimistic_update(12);
        assert!(!p.maybe_decr_to(6, 0), "stale: at or below match");
        assert!(p.maybe_decr_to(9, 0));
        assert_eq!(p.next, 7);
    }

    #[test]
    fn snapshot_to_probe_resumes_after_snapshot() {
        let mut p = Progress::new(3, 8, 0);
        p.become_snapshot(20);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next, 21);
    }
}
