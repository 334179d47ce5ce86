//! Replaying Raft's WAL records into the log a `MemStorage` is rebuilt from, combined with the
//! newest snapshot (docs/storage-format.md, "Raft replay").

use std::path::Path;

use consensus_core::raft::{ConfState, Entry, HardState, Snapshot};
use consensus_core::StorageError;

use super::records::Record;
use crate::wal::corrupt;

/// The log as replayed so far. Invariant: `entries[i].index == base_index + 1 + i`.
#[derive(Debug, Default)]
pub struct Replay {
    /// The position just before `entries`: (index, term); term 0 when unknown.
    base_index: u64,
    base_term: u64,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    conf_history: Vec<(u64, ConfState)>,
}

/// What a data directory holds once replayed.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: Option<Snapshot>,
    pub hard_state: HardState,
    /// Entries above the snapshot, contiguous from `snapshot.index + 1` (or 1).
    pub entries: Vec<Entry>,
    pub conf_history: Vec<(u64, ConfState)>,
}

impl Replay {
    fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// Applies one record; returns the highest index it wrote (0: none), which `Wal::open` keeps per
    /// segment.
    pub fn apply(&mut self, record: Record) -> u64 {
        let key = record.max_index();
        match record {
            Record::Entries { prev_term, entries } => {
                let first = entries[0].index;
                if first > self.last_index() + 1 || first <= self.base_index {
                    // A gap (a snapshot was installed in between) or a batch below what is held:
                    // the log starts over at this batch.
                    self.entries.clear();
                    self.base_index = first - 1;
                    self.base_term = prev_term;
                } else {
                    self.entries.truncate((first - self.base_index - 1) as usize);
                }
                self.entries.extend(entries);
            }
            Record::HardState(hs) => self.hard_state = Some(hs),
            Record::ConfState { index, conf_state } => {
                self.conf_history.retain(|(i, _)| *i < index);
                self.conf_history.push((index, conf_state));
            }
            Record::Snapshot { index, term } => {
                self.entries.clear();
                self.conf_history.clear();
                self.base_index = index;
                self.base_term = term;
            }
        }
        key
    }

    /// Whether the replayed log holds `index` with `term` (log matching).
    fn holds(&self, index: u64, term: u64) -> bool {
        if index == self.base_index {
            return self.base_term == term;
        }
        index > self.base_index
            && index <= self.last_index()
            && self.entries[(index - self.base_index - 1) as usize].term == term
    }

    /// Combines the replayed WAL with the newest snapshot.
    pub fn finish(mut self, snapshot: Option<Snapshot>, wal_dir: &Path) -> Result<Recovered, StorageError> {
        let holds_snapshot = snapshot.as_ref().is_some_and(|s| self.holds(s.index, s.term));
        let mut hard_state = self.hard_state.unwrap_or_default();
        let mut entries = std::mem::take(&mut self.entries);
        let mut conf_history = std::mem::take(&mut self.conf_history);
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.index);
        match &snapshot {
            Some(s) => {
                if holds_snapshot {
                    // Keep only the entries above the snapshot.
                    let drop = (s.index - self.base_index) as usize;
                    entries.drain(..drop);
                } else {
                    entries.clear();
                }
                conf_history.retain(|(i, _)| *i > s.index);
                hard_state.term = hard_state.term.max(s.term);
                hard_state.commit = hard_state.commit.max(s.index);
            }
            None => {
                if self.base_index != 0 && !entries.is_empty() {
                    return Err(corrupt(
                        wal_dir,
                        0,
                        format!("the log starts at index {} but there is no snapshot below it", self.base_index + 1),
                    ));
                }
                if self.base_index != 0 {
                    entries.clear();
                }
            }
        }
        // The commit index need not be durable; never claim more than the log holds.
        let last_index = snapshot_index + entries.len() as u64;
        hard_state.commit = hard_state.commit.min(last_index);
        Ok(Recovered { snapshot, hard_state, entries, conf_history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use consensus_core::raft::EntryKind;

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(index, term, EntryKind::Normal, Bytes::from_static(b"x"))
    }

    fn batch(prev_term: u64, entries: &[(u64, u64)]) -> Record {
        Record::Entries { prev_term, entries: entries.iter().map(|&(i, t)| ent(i, t)).collect() }
    }

    fn snap(index: u64, term: u64) -> Option<Snapshot> {
        Some(Snapshot { index, term, ..Default::default() })
    }

    fn indexes(r: &Recovered) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn conflicting_batch_truncates_everything_from_its_first_index() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay.apply(batch(1, &[(2, 2)]));
        let r = replay.finish(None, Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn batch_after_a_gap_starts_over_and_matches_the_installed_snapshot() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1)]));
        replay.apply(batch(4, &[(11, 5), (12, 5)]));
        let r = replay.finish(snap(10, 4), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(11, 5), (12, 5)]);
    }

    #[test]
    fn entries_above_a_snapshot_the_log_does_not_match_are_dropped() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1), (4, 1)]));
        replay.apply(Record::HardState(HardState { term: 1, vote: 1, commit: 4 }));
        // The snapshot at 2 has term 2: the replayed log's entry 2 (term 1) does not match it.
        let r = replay.finish(snap(2, 2), Path::new("wal")).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(r.hard_state, HardState { term: 2, vote: 1, commit: 2 });
    }

    #[test]
    fn entries_above_a_matching_snapshot_are_kept_and_those_below_dropped() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 2), (4, 2)]));
        let r = replay.finish(snap(3, 2), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(4, 2)]);
    }

    #[test]
    fn snapshot_marker_resets_the_log_and_conf_history() {
        let mut replay = Replay::default();
        replay.apply(Record::ConfState { index: 0, conf_state: ConfState { voters: vec![1], ..Default::default() } });
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay.apply(Record::Snapshot { index: 2, term: 3 });
        replay.apply(batch(3, &[(3, 3)]));
        let r = replay.finish(snap(2, 3), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(3, 3)]);
        assert!(r.conf_history.is_empty());
    }

    #[test]
    fn conf_records_above_the_snapshot_are_kept_and_commit_never_exceeds_the_log() {
        let mut replay = Replay::default();
        replay.apply(Record::ConfState { index: 0, conf_state: ConfState { voters: vec![1], ..Default::default() } });
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay
            .apply(Record::ConfState { index: 3, conf_state: ConfState { voters: vec![1, 2], ..Default::default() } });
        replay.apply(Record::HardState(HardState { term: 1, vote: 1, commit: 9 }));
        let r = replay.finish(snap(2, 1), Path::new("wal")).unwrap();
        assert_eq!(r.conf_history.len(), 1);
        assert_eq!(r.conf_history[0].0, 3);
        assert_eq!(r.hard_state.commit, 3);
    }

    #[test]
    fn log_starting_past_one_without_a_snapshot_is_refused() {
        let mut replay = Replay::default();
        replay.apply(batch(2, &[(5, 2)]));
        assert!(matches!(replay.finish(None, Path::new("wal")), Err(StorageError::Corrupt { .. })));
    }
}
