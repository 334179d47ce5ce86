//! The Raft adapter (`RawNode` on `MemStorage`) and Raft's own invariants from Figure 3 of the
//! paper that need the logs: leader append-only, log matching and leader completeness. Election
//! safety and state machine safety are protocol-independent and live in `invariants.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::engine::{self, ClusterView};
use super::invariants::{entry_hash, AppliedHistory, DurableFacts};
use super::{Checks, NodeOptions, Protocol, Report, SimConfig};
use crate::contract::ProtocolNode;
use crate::raft::progress::ProgressState;
use crate::raft::storage::MemStorage;
use crate::raft::{ConfState, Config, HardState, Message, RawNode, Ready};
use crate::role::Role;

/// Runs one simulation of Raft.
pub fn run_raft(cfg: &SimConfig) -> Report {
    engine::run::<RaftAdapter>(cfg)
}

/// A Raft node as the simulator drives it. Besides the core it plays the part of the transport
/// for snapshots: a follower left in snapshot state for two election timeouts is reported as a
/// failed snapshot send (`report_snapshot(to, false)`), as a real transport's timeout would.
pub struct RaftAdapter {
    node: RawNode<MemStorage>,
    election_tick: u64,
    /// Ticks each follower has been in snapshot state, while this node leads.
    snapshot_wait_ticks: BTreeMap<u64, u64>,
}

impl RaftAdapter {
    pub fn raw_node(&self) -> &RawNode<MemStorage> {
        &self.node
    }

    fn expire_snapshot_sends(&mut self) {
        if self.node.raft.role != Role::Leader {
            self.snapshot_wait_ticks.clear();
            return;
        }
        let waiting: Vec<u64> = self
            .node
            .raft
            .tracker
            .progress
            .iter()
            .filter(|(_, p)| p.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_wait_ticks.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let ticks = self.snapshot_wait_ticks.entry(id).or_insert(0);
            *ticks += 1;
            if *ticks >= 2 * self.election_tick {
                self.snapshot_wait_ticks.remove(&id);
                self.node.report_snapshot(id, false);
            }
        }
    }

    /// This node's log as `(first index, [(term, fingerprint)])`.
    fn log_view(&self) -> LogView {
        let log = &self.node.raft.log;
        let first = log.first_index();
        let entries = log.slice(first, log.last_index() + 1, u64::MAX).unwrap_or_default();
        LogView::new(self.node.raft.id, first, entries.iter().map(|e| (e.term, entry_hash(e.term, &e.data))).collect())
    }
}

fn durable_log_view(id: u64, storage: &MemStorage) -> LogView {
    let core = storage.rl();
    let first = core.first_index();
    let entries = core.entries(first, core.last_index() + 1, u64::MAX).unwrap_or_default();
    LogView::new(id, first, entries.iter().map(|e| (e.term, entry_hash(e.term, &e.data))).collect())
}

impl Protocol for RaftAdapter {
    type Node = RawNode<MemStorage>;
    type Durable = MemStorage;
    type Checker = RaftChecker;

    const NAME: &'static str = "raft";

    fn new_durable(_id: u64, members: &[u64]) -> MemStorage {
        MemStorage::new_with_conf_state(ConfState { voters: members.to_vec(), ..Default::default() })
    }

    fn start(
        id: u64,
        members: &[u64],
        options: &NodeOptions,
        durable: &MemStorage,
        applied: u64,
    ) -> Result<Self, String> {
        let config = Config {
            election_tick: options.election_tick,
            heartbeat_tick: options.heartbeat_tick,
            pre_vote: options.pre_vote,
            check_quorum: options.check_quorum,
            seed: options.seed,
            // Small limits so that runs exercise batching and flow control.
            max_size_per_msg: 64,
            max_inflight_msgs: 8,
            ..Config::default()
        };
        let node = RawNode::new(id, config, durable.clone(), members, &[], applied).map_err(|e| e.to_string())?;
        Ok(RaftAdapter { node, election_tick: options.election_tick, snapshot_wait_ticks: BTreeMap::new() })
    }

    fn core(&self) -> &RawNode<MemStorage> {
        &self.node
    }

    fn core_mut(&mut self) -> &mut RawNode<MemStorage> {
        &mut self.node
    }

    fn after_tick(&mut self) {
        self.expire_snapshot_sends();
    }

    fn committed(ready: &Ready) -> Vec<(u64, u64, Bytes)> {
        ready.committed_entries.iter().map(|e| (e.index, e.term, e.data.clone())).collect()
    }

    fn hard_state(&self) -> DurableFacts {
        facts(self.node.raft.hard_state())
    }

    fn durable_hard_state(durable: &MemStorage) -> DurableFacts {
        facts(durable.rl().hard_state())
    }

    fn describe(&self) -> String {
        let status = self.node.status();
        let mut text = format!(
            "{} term {} vote {} leader {} commit {} applied {} log [{}, {}]",
            status.role.as_str(),
            status.term,
            status.vote,
            status.leader,
            status.commit,
            status.applied,
            status.first_index,
            status.last_index
        );
        for p in &status.progress {
            text += &format!(
                "; peer {} match {} next {} {}{} inflight {}",
                p.id,
                p.matched,
                p.next,
                p.state,
                if p.recent_active { "" } else { " inactive" },
                p.inflight
            );
        }
        text
    }

    fn describe_message(m: &Message) -> String {
        let mut text = format!("{:?} t{} i{} lt{} c{}", m.msg_type, m.term, m.index, m.log_term, m.commit);
        if let (Some(first), Some(last)) = (m.entries.first(), m.entries.last()) {
            text += &format!(" [{}@{}..{}@{}]", first.index, first.term, last.index, last.term);
        }
        if m.reject {
            text += &format!(" reject hint={}", m.reject_hint);
        }
        if let Some(s) = &m.snapshot {
            text += &format!(" snapshot {}@{}", s.index, s.term);
        }
        text
    }
}

/// A Raft hard state as the generic checks read it.
fn facts(hs: HardState) -> DurableFacts {
    DurableFacts { term: hs.term, vote: hs.vote, commit: hs.commit }
}

/// A log as the checks see it: `entries[k]` is `(term, fingerprint)` of index `first_index + k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    pub node: u64,
    pub first_index: u64,
    pub entries: Vec<(u64, u64)>,
}

impl LogView {
    pub fn new(node: u64, first_index: u64, entries: Vec<(u64, u64)>) -> Self {
        LogView { node, first_index, entries }
    }

    /// Index of the last entry (`first_index - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    pub fn get(&self, index: u64) -> Option<(u64, u64)> {
        if index < self.first_index {
            return None;
        }
        self.entries.get((index - self.first_index) as usize).copied()
    }
}

/// Log matching (Raft §5.3, Figure 3): if two logs hold an entry with the same index and term,
/// they hold the same entry there and are identical in every index before it (within the range
/// both still hold). Checked pairwise.
pub fn check_log_matching(logs: &[LogView]) -> Result<(), String> {
    for (a_pos, a) in logs.iter().enumerate() {
        for b in &logs[a_pos + 1..] {
            let low = a.first_index.max(b.first_index);
            let high = a.last_index().min(b.last_index());
            if low > high {
                continue;
            }
            // The highest index where both logs have the same term: everything from `low` up to
            // it must be identical.
            let Some(top) = (low..=high).rev().find(|i| a.get(*i).map(|e| e.0) == b.get(*i).map(|e| e.0)) else {
                continue;
            };
            for index in low..=top {
                let (x, y) = (a.get(index), b.get(index));
                if x != y {
                    let (x, y) = (x.unwrap_or_default(), y.unwrap_or_default());
                    return Err(format!(
                        "log matching: nodes {} and {} agree at index {top} (term {}) but differ at index \
                         {index}: term {} fingerprint {:#x} vs term {} fingerprint {:#x}",
                        a.node,
                        b.node,
                        a.get(top).map_or(0, |e| e.0),
                        x.0,
                        x.1,
                        y.0,
                        y.1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Leader completeness (Raft §5.4, Figure 3): a new leader of `term` holds every entry committed
/// in a lower term. The checked entries are those applied somewhere while every node's term was
/// below `term` (`AppliedHistory::term_bound`): a late leader of an old term need not hold what a
/// newer term committed. Entries below its first index are in its snapshot and not checked here.
pub fn check_leader_completeness(term: u64, log: &LogView, history: &AppliedHistory) -> Result<(), String> {
    let mut applied = history.last_index();
    while applied > 0 && history.term_bound(applied).unwrap_or(0) >= term {
        applied -= 1;
    }
    if applied > log.last_index() {
        return Err(format!(
            "leader completeness: node {} became leader of term {term} with last index {}, but index \
             {applied} was already applied",
            log.node,
            log.last_index()
        ));
    }
    for index in log.first_index.max(1)..=applied {
        let held = log.get(index).expect("in range");
        let expected = (history.term(index).unwrap_or(0), history.entry_hash(index).unwrap_or(0));
        if held != expected {
            return Err(format!(
                "leader completeness: node {} became leader of term {term} holding {}@{} at index {index}, \
                 but {}@{} was applied there",
                log.node, index, held.0, index, expected.0
            ));
        }
    }
    Ok(())
}

/// One leadership: the leader's log as seen since it became leader, to check that it only grows.
#[derive(Debug, Clone)]
struct Leadership {
    term: u64,
    log: LogView,
}

/// Leader append-only (Raft §5.3, Figure 3): a leader never overwrites or deletes entries of its
/// log during its term. `previous` is what the leader's log held when last seen; entries below the
/// current first index may have been compacted.
pub fn check_append_only(term: u64, previous: &LogView, now: &LogView) -> Result<(), String> {
    if now.last_index() < previous.last_index() {
        return Err(format!(
            "leader append-only: leader {} of term {term} shrank its log from last index {} to {}",
            now.node,
            previous.last_index(),
            now.last_index()
        ));
    }
    for index in previous.first_index.max(now.first_index)..=previous.last_index() {
        if previous.get(index) != now.get(index) {
            return Err(format!(
                "leader append-only: leader {} of term {term} rewrote its entry at index {index}",
                now.node
            ));
        }
    }
    Ok(())
}

/// Raft's log invariants, checked incrementally every step and fully every
/// `full_check_every_steps` steps.
#[derive(Debug, Default)]
pub struct RaftChecker {
    /// The leadership each node holds now (index `id - 1`), if it leads.
    leaderships: Vec<Option<Leadership>>,
    /// `(index, term)` → fingerprint of the last entries seen on any log (log matching, property
    /// 1, incrementally). Cleared at every full check.
    tails: BTreeMap<(u64, u64), u64>,
}

impl Checks<RaftAdapter> for RaftChecker {
    fn check(&mut self, view: &ClusterView<'_, RaftAdapter>, full: bool) -> Result<(), String> {
        if self.leaderships.len() < view.len() {
            self.leaderships.resize(view.len(), None);
        }
        for id in 1..=view.len() as u64 {
            let slot = id as usize - 1;
            let Some(node) = view.node(id) else {
                self.leaderships[slot] = None;
                continue;
            };
            let raft = &node.raw_node().raft;
            // Log matching, cheaply: the same (index, term) at the end of any log means the same entry.
            let last = raft.log.last_index();
            if last >= raft.log.first_index() {
                if let Ok(entries) = raft.log.slice(last, last + 1, u64::MAX) {
                    let entry = &entries[0];
                    let fingerprint = entry_hash(entry.term, &entry.data);
                    let known = *self.tails.entry((last, entry.term)).or_insert(fingerprint);
                    if known != fingerprint {
                        return Err(format!(
                            "log matching: node {id} holds a different entry at index {last} term {} than \
                             another log did",
                            entry.term
                        ));
                    }
                }
            }
            if raft.role != Role::Leader {
                self.leaderships[slot] = None;
                continue;
            }
            let same_leadership = self.leaderships[slot].as_ref().is_some_and(|l| l.term == raft.term);
            if !same_leadership {
                let log = node.log_view();
                check_leader_completeness(raft.term, &log, view.history())?;
                self.leaderships[slot] = Some(Leadership { term: raft.term, log });
                continue;
            }
            let leadership = self.leaderships[slot].as_mut().expect("checked above");
            let previous_last = leadership.log.last_index();
            if full || last < previous_last || previous_last < raft.log.first_index() {
                let log = node.log_view();
                check_append_only(raft.term, &leadership.log, &log)?;
                leadership.log = log;
            } else {
                // Cheap: the last entry seen is unchanged, and the new entries are recorded.
                let held = raft.log.term(previous_last).ok();
                let seen = leadership.log.get(previous_last).map(|e| e.0);
                if held != seen {
                    return Err(format!(
                        "leader append-only: leader {id} of term {} replaced its entry at index {previous_last}",
                        raft.term
                    ));
                }
                if last > previous_last {
                    let entries = raft.log.slice(previous_last + 1, last + 1, u64::MAX).map_err(|e| e.to_string())?;
                    leadership.log.entries.extend(entries.iter().map(|e| (e.term, entry_hash(e.term, &e.data))));
                }
            }
        }
        if full {
            self.tails.clear();
            let logs: Vec<LogView> = (1..=view.len() as u64)
                .map(|id| match view.node(id) {
                    Some(node) => node.log_view(),
                    None => durable_log_view(id, view.durable(id)),
                })
                .collect();
            check_log_matching(&logs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(node: u64, first: u64, terms: &[u64]) -> LogView {
        LogView::new(node, first, terms.iter().map(|t| (*t, entry_hash(*t, &[*t as u8]))).collect())
    }

    #[test]
    fn log_matching_accepts_diverging_suffixes() {
        let a = log(1, 1, &[1, 1, 2, 2]);
        let b = log(2, 1, &[1, 1, 3]);
        let c = log(3, 3, &[2, 2, 2]);
        assert!(check_log_matching(&[a, b, c]).is_ok());
    }

    #[test]
    fn log_matching_catches_different_prefix() {
        let a = log(1, 1, &[1, 1, 2]);
        let mut b = log(2, 1, &[1, 1, 2]);
        b.entries[0].1 ^= 1; // same term, different command at index 1
        assert!(check_log_matching(&[a.clone(), b]).unwrap_err().contains("log matching"));
        let c = log(3, 1, &[1, 3, 2]); // agrees at 3 but not at 2
        assert!(check_log_matching(&[a, c]).is_err());
    }

    #[test]
    fn leader_completeness_catches_missing_applied_entry() {
        use crate::sim::SafetyChecker;
        let mut safety = SafetyChecker::new();
        safety.observe_apply(1, 1, 1, &[1]).unwrap();
        safety.observe_apply(1, 2, 1, &[1]).unwrap();
        safety.observe_term(3);
        safety.observe_apply(1, 3, 3, &[3]).unwrap();
        let history = safety.history();
        // Index 3 was applied in term 3: a leader of term 2 (elected late) need not hold it.
        assert!(check_leader_completeness(2, &log(2, 1, &[1, 1, 2]), history).is_ok());
        assert!(check_leader_completeness(4, &log(2, 1, &[1, 1, 2]), history).is_err());
        assert!(check_leader_completeness(4, &log(2, 1, &[1, 1, 3]), history).is_ok());
        assert!(check_leader_completeness(2, &log(2, 1, &[1]), history).is_err());
        assert!(check_leader_completeness(2, &log(2, 1, &[1, 2]), history).is_err());
        assert!(check_leader_completeness(2, &log(2, 3, &[2]), history).is_ok(), "compacted prefix");
    }

    #[test]
    fn append_only_catches_truncation_and_rewrite() {
        let before = log(1, 1, &[1, 2, 2]);
        assert!(check_append_only(2, &before, &log(1, 1, &[1, 2, 2, 2])).is_ok());
        assert!(check_append_only(2, &before, &log(1, 3, &[2, 2])).is_ok(), "compaction");
        assert!(check_append_only(2, &before, &log(1, 1, &[1, 2])).is_err());
        let mut rewritten = log(1, 1, &[1, 2, 2]);
        rewritten.entries[2].1 ^= 1;
        assert!(check_append_only(2, &before, &rewritten).is_err());
    }
}
