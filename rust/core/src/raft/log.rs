//! The Raft log: a persisted prefix read through `Storage` followed by an unstable tail that the
//! caller has not yet persisted, with a commit index, an applied index and term lookup.

use super::storage::{limit_size, Storage};
use crate::error::StorageError;
use crate::raft::{Entry, Snapshot};

/// Entries (and possibly a snapshot) received but not yet persisted by the caller.
/// Invariant: `entries[i].index == offset + i`; `offset <= offset_in_progress <= offset + len`.
#[derive(Debug, Default)]
pub struct Unstable {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub offset: u64,
    /// Entries below this index were handed to a `Ready` and are being persisted.
    pub offset_in_progress: u64,
    pub snapshot_in_progress: bool,
}

impl Unstable {
    fn new(offset: u64) -> Self {
        Unstable { offset, offset_in_progress: offset, ..Default::default() }
    }

    fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.index + 1)
    }

    fn maybe_last_index(&self) -> Option<u64> {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => Some(e.index),
            (None, Some(s)) => Some(s.index),
            (None, None) => None,
        }
    }

    fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return match &self.snapshot {
                Some(s) if s.index == index => Some(s.term),
                _ => None,
            };
        }
        self.entries.get((index - self.offset) as usize).map(|e| e.term)
    }

    /// Entries not yet handed to a `Ready`.
    pub fn next_entries(&self) -> &[Entry] {
        let start = (self.offset_in_progress - self.offset) as usize;
        &self.entries[start.min(self.entries.len())..]
    }

    pub fn next_snapshot(&self) -> Option<&Snapshot> {
        if self.snapshot_in_progress {
            None
        } else {
            self.snapshot.as_ref()
        }
    }

    /// Marks everything returned by `next_entries`/`next_snapshot` as being persisted.
    pub fn accept_in_progress(&mut self) {
        if let Some(last) = self.entries.last() {
            self.offset_in_progress = last.index + 1;
        }
        if self.snapshot.is_some() {
            self.snapshot_in_progress = true;
        }
    }

    /// The caller persisted entries up to `index` (whose term was `term`).
    fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset {
            return;
        }
        // The entry may have been replaced by a newer leader's since that Ready was built; then
        // nothing persisted applies to the current tail.
        if self.maybe_term(index) != Some(term) {
            return;
        }
        let drop = (index + 1 - self.offset) as usize;
        self.entries.drain(..drop);
        self.offset = index + 1;
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
    }

    fn stable_snap_to(&mut self, index: u64) {
        if self.snapshot.as_ref().is_some_and(|s| s.index == index) {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.index + 1;
        self.offset_in_progress = self.offset;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let from = first.index;
        let end = self.offset + self.entries.len() as u64;
        if from == end {
            // The common case: a plain append.
        } else if from <= self.offset {
            // Replace everything unstable; older stable entries are overwritten on persist.
            self.offset = from;
            self.offset_in_progress = from;
            self.entries.clear();
        } else {
            self.entries.truncate((from - self.offset) as usize);
            self.offset_in_progress = self.offset_in_progress.min(from);
        }
        self.entries.extend_from_slice(entries);
        debug_assert!(
            self.entries.last().is_none_or(|e| e.index == self.offset + self.entries.len() as u64 - 1),
            "unstable entries not contiguous from offset {}",
            self.offset
        );
        debug_assert!(self.offset <= self.offset_in_progress, "offset_in_progress below offset");
    }

    fn slice(&self, low: u64, high: u64) -> &[Entry] {
        &self.entries[(low - self.offset) as usize..(high - self.offset) as usize]
    }
}

/// The log as one sequence. Invariants: `applied <= applying <= committed <= last_index()`;
/// `committed` never decreases.
#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    pub storage: S,
    pub unstable: Unstable,
    /// The highest index known to be stored on a quorum.
    pub committed: u64,
    /// The highest index handed to the application in a `Ready`.
    pub applying: u64,
    /// The highest index the application has applied (acknowledged by `advance`).
    pub applied: u64,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(storage: S) -> Self {
        let first = storage.first_index();
        let last = storage.last_index();
        RaftLog {
            storage,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applying: first - 1,
            applied: first - 1,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.unstable.maybe_first_index().unwrap_or_else(|| self.storage.first_index())
    }

    pub fn last_index(&self) -> u64 {
        self.unstable.maybe_last_index().unwrap_or_else(|| self.storage.last_index())
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        // The valid range is [first_index - 1, last_index]: the entry before the first is the
        // snapshot's, whose term is known.
        let dummy = self.first_index() - 1;
        if index < dummy {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if let Some(term) = self.unstable.maybe_term(index) {
            return Ok(term);
        }
        self.storage.term(index)
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Raft §5.4.1: a log is at least as up to date as ours if its last term is higher, or the
    /// same with an index at least as large.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        let our_term = self.last_term();
        term > our_term || (term == our_term && last_index >= self.last_index())
    }

    /// The index of the first entry that is new or conflicts with ours (0: all already present).
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries.iter().find(|e| !self.match_term(e.index, e.term)).map_or(0, |e| e.index)
    }

    /// Fast backtracking: the largest index at or below `index` whose term is at most `term`,
    /// with that term (0 when unknown because compacted). Every entry above it up to `index`
    /// has a term above `term`, so none of them can match a log whose entry at `index` has
    /// term `term`.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > 0 => index -= 1,
                Ok(t) => return (index, t),
                Err(_) => return (index, 0),
            }
        }
    }

    /// Appends a leader's entries after `(index, log_term)` if that position matches (Raft §5.3).
    /// Returns the last index of the new entries, or `None` when the position does not match.
    pub fn maybe_append(&mut self, index: u64, log_term: u64, committed: u64, entries: &[Entry]) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            if conflict <= self.committed {
                // A leader never rewrites committed entries. Refuse the message rather than
                // corrupting state; the simulator's invariants flag how we got here.
                return None;
            }
            let start = (conflict - (index + 1)) as usize;
            self.append(&entries[start..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Appends entries (truncating any conflicting unstable suffix) and returns the last index.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        if let Some(first) = entries.first() {
            assert!(first.index > self.committed, "append at {} rewrites committed {}", first.index, self.committed);
            self.unstable.truncate_and_append(entries);
        }
        self.last_index()
    }

    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
            self.committed = index;
        }
    }

    /// Raft §5.4.2: advances the commit index to `max_index` only if that entry is of `term`
    /// (the leader's current term). Returns whether the commit index changed.
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed && self.term(max_index).is_ok_and(|t| t == term) {
            self.commit_to(max_index);
            true
        } else {
            false
        }
    }

    pub fn has_next_committed_entries(&self) -> bool {
        self.committed > self.applying && self.unstable.snapshot.is_none()
    }

    /// Committed entries not yet handed to the application, limited by `max_bytes` and
    /// `max_count` (always at least one when any is available).
    pub fn next_committed_entries(&self, max_bytes: u64, max_count: usize) -> Vec<Entry> {
        if !self.has_next_committed_entries() {
            return Vec::new();
        }
        let low = self.applying + 1;
        let high = (self.committed + 1).min(low + max_count.max(1) as u64);
        self.slice(low, high, max_bytes).unwrap_or_default()
    }

    pub fn applying_to(&mut self, index: u64) {
        self.applying = self.applying.max(index);
    }

    pub fn applied_to(&mut self, index: u64) {
        if index > self.applied {
            assert!(index <= self.committed, "applied {index} beyond commit {}", self.committed);
            self.applied = index;
            self.applying = self.applying.max(index);
        }
    }

    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    pub fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
    }

    pub fn snapshot(&self) -> Snapshot {
        match &self.unstable.snapshot {
            Some(s) => s.clone(),
            None => self.storage.snapshot(),
        }
    }

    /// Replaces the log with a snapshot (the caller persists it through the next `Ready`).
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.committed = snapshot.index;
        self.applying = self.applying.max(snapshot.index);
        self.unstable.restore(snapshot);
    }

    /// Entries from `index` to the end, limited by `max_bytes`.
    pub fn entries(&self, index: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let last = self.last_index();
        if index > last {
            return Ok(Vec::new());
        }
        self.slice(index, last + 1, max_bytes)
    }

    /// Entries in `[low, high)`, spanning storage and the unstable tail, limited by `max_bytes`.
    pub fn slice(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted(low));
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable(high));
        }
        let offset = self.unstable.offset;
        let mut out = if low < offset {
            let stored = self.storage.entries(low, high.min(offset), max_bytes)?;
            // A short read from storage (size limit reached) ends the slice there.
            if (stored.len() as u64) < high.min(offset) - low {
                return Ok(stored);
            }
            stored
        } else {
            Vec::new()
        };
        if high > offset {
            let tail = self.unstable.slice(low.max(offset), high);
            if out.is_empty() {
                return Ok(limit_size(tail, max_bytes).to_vec());
            }
            let mut used: u64 = out.iter().map(Entry::payload_size).sum();
            for entry in tail {
                used += entry.payload_size();
                if max_bytes != u64::MAX && used > max_bytes {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    /// Every entry still held (for tests and invariant checks).
    pub fn all_entries(&self) -> Vec<Entry> {
        self.entries(self.first_index(), u64::MAX).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::MemStorage;
    use crate::raft::EntryKind;
    use bytes::Bytes;

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(index, term, EntryKind::Normal, Bytes::from_static(b"e"))
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let mut log = RaftLog::new(MemStorage::new());
        let entries: Vec<Entry> = terms.iter().enumerate().map(|(i, t)| ent(i as u64 + 1, *t)).collect();
        log.append(&entries);
        log
    }

    #[test]
    fn find_conflict_reports_first_mismatch_or_new_entry() {
        let log = log_with(&[1, 2, 3]);
        assert_eq!(log.find_conflict(&[ent(1, 1), ent(2, 2)]), 0);
        assert_eq!(log.find_conflict(&[ent(2, 2), ent(3, 3), ent(4, 4)]), 4);
        assert_eq!(log.find_conflict(&[ent(2, 2), ent(3, 4)]), 3);
    }

    #[test]
    fn maybe_append_truncates_conflicting_suffix() {
        let mut log = log_with(&[1, 1, 1]);
        assert_eq!(log.maybe_append(1, 1, 0, &[ent(2, 2)]), Some(2));
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.term(2), Ok(2));
    }

    #[test]
    fn maybe_append_keeps_longer_matching_log() {
        // Raft §5.3: an old, shorter append must not truncate entries that follow it.
        let mut log = log_with(&[1, 1, 1]);
        assert_eq!(log.maybe_append(0, 0, 0, &[ent(1, 1)]), Some(1));
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    fn maybe_append_refuses_mismatched_previous_entry() {
        let mut log = log_with(&[1, 1]);
        assert_eq!(log.maybe_append(2, 2, 0, &[ent(3, 2)]), None);
        assert_eq!(log.maybe_append(5, 1, 0, &[]), None);
    }

    #[test]
    fn commit_only_counts_entries_of_the_given_term() {
        let mut log = log_with(&[1, 1, 2]);
        assert!(!log.maybe_commit(2, 2));
        assert!(log.maybe_commit(3, 2));
        assert_eq!(log.committed, 3);
    }

    #[test]
    fn find_conflict_by_term_skips_higher_terms() {
        let log = log_with(&[1, 1, 4, 4, 5]);
        assert_eq!(log.find_conflict_by_term(5, 3), (2, 1));
        assert_eq!(log.find_conflict_by_term(5, 4), (4, 4));
        assert_eq!(log.find_conflict_by_term(9, 5), (5, 5));
        assert_eq!(log.find_conflict_by_term(5, 0), (0, 0));
    }

    #[test]
    fn slice_spans_storage_and_unstable_with_size_limit() {
        let storage = MemStorage::new();
        storage.wl().append(&[ent(1, 1), ent(2, 1)]).unwrap();
        let mut log = RaftLog::new(storage);
        log.append(&[ent(3, 1), ent(4, 1)]);
        assert_eq!(log.slice(1, 5, u64::MAX).unwrap().len(), 4);
        assert_eq!(log.slice(1, 5, 3).unwrap().len(), 3);
        assert_eq!(log.slice(2, 4, u64::MAX).unwrap().iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn stable_to_ignores_replaced_entries() {
        let mut log = log_with(&[1, 1]);
        log.unstable.accept_in_progress();
        log.append(&[ent(2, 2)]);
        log.stable_to(2, 1); // the term-1 entry at 2 was replaced: nothing becomes stable
        assert_eq!(log.unstable.offset, 1);
        log.stable_to(2, 2);
        assert_eq!(log.unstable.offset, 3);
    }

    #[test]
    fn restore_moves_commit_and_offsets_to_snapshot() {
        let mut log = log_with(&[1, 1]);
        log.restore(Snapshot { index: 10, term: 3, ..Default::default() });
        assert_eq!(log.committed, 10);
        assert_eq!(log.first_index(), 11);
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.term(10), Ok(3));
    }
}
