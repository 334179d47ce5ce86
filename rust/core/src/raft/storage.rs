//! The stable-storage interface the Raft log reads through, and an in-memory implementation.
//!
//! The core never writes storage itself: the caller persists each `Ready` (entries, hard state,
//! snapshot) before sending its messages, then calls `advance`. The core only reads what was
//! persisted: entries to send to followers, terms for log matching, and the restart state.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::StorageError;
use crate::raft::{ConfState, Entry, HardState, Snapshot};

/// What a restarting node reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
}

/// Read access to persisted Raft state. Invariant: `first_index() - 1` is the snapshot index and
/// every index in `[first_index, last_index]` is readable.
pub trait Storage {
    fn initial_state(&self) -> RaftState;
    /// Entries in `[low, high)`, stopping once their payload exceeds `max_bytes` (always at least
    /// one entry when the range is not empty).
    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// The term of the entry at `index`; `index == first_index() - 1` answers the snapshot's term.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    fn first_index(&self) -> u64;
    fn last_index(&self) -> u64;
    fn snapshot(&self) -> Snapshot;
}

/// The contents of a `MemStorage`. Invariant: `entries[i].index == snapshot.index + 1 + i`.
#[derive(Debug, Clone, Default)]
pub struct MemStorageCore {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
    /// Configurations recorded as they were applied: `(index, conf_state)`, ascending. Used to
    /// attach the configuration in force to a snapshot taken at an applied index.
    conf_history: Vec<(u64, ConfState)>,
}

impl MemStorageCore {
    pub fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// The configuration currently in force (the latest recorded or the snapshot's).
    pub fn conf_state(&self) -> ConfState {
        match self.conf_history.last() {
            Some((_, cs)) => cs.clone(),
            None => self.snapshot.conf_state.clone(),
        }
    }

    /// Records the configuration that takes effect at `index` (called when a change is applied,
    /// and once with index 0 to bootstrap a new cluster).
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) {
        self.conf_history.retain(|(i, _)| *i < index);
        self.conf_history.push((index, conf_state));
    }

    fn conf_state_at(&self, index: u64) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_else(|| self.snapshot.conf_state.clone())
    }

    /// Appends entries, replacing any conflicting suffix. Entries must start at or before
    /// `last_index() + 1`; those at or below the snapshot index are skipped.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        check_contiguous(entries)?;
        let Some(first_new) = entries.first() else { return Ok(()) };
        let first = self.first_index();
        if first_new.index > self.last_index() + 1 {
            return Err(StorageError::Other(format!(
                "append at {} leaves a gap after last index {}",
                first_new.index,
                self.last_index()
            )));
        }
        let skip = first.saturating_sub(first_new.index) as usize;
        if skip >= entries.len() {
            return Ok(());
        }
        let entries = &entries[skip..];
        let offset = (entries[0].index - first) as usize;
        self.entries.truncate(offset);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replaces everything with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.index <= self.snapshot.index {
            return Err(StorageError::SnapshotOutOfDate(snapshot.index));
        }
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.hard_state.term = self.hard_state.term.max(snapshot.term);
        self.entries.clear();
        self.conf_history.clear();
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the application at an applied `index` and drops the log up to it.
    pub fn compact(&mut self, index: u64, data: bytes::Bytes) -> Result<(), StorageError> {
        if index <= self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if index > self.hard_state.commit {
            return Err(StorageError::Other(format!(
                "cannot compact to {index}: above the commit index {}",
                self.hard_state.commit
            )));
        }
        let term = self.term(index)?;
        let conf_state = self.conf_state_at(index);
        let drop = (index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        // Keep the configuration in force at the snapshot as the base of the history.
        self.conf_history.retain(|(i, _)| *i > index);
        self.snapshot = Snapshot { index, term, conf_state, data };
        Ok(())
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        Ok(self.entries[(index - self.first_index()) as usize].term)
    }

    pub fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index() {
            return Err(StorageError::Compacted(low));
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable(high));
        }
        let first = self.first_index();
        let slice = &self.entries[(low - first) as usize..(high - first) as usize];
        Ok(limit_size(slice, max_bytes).to_vec())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }
}

/// Entries to append must have consecutive indexes from 1 up: a log with a hole is one no
/// storage could read back (the WAL refuses it on reopen), so it is refused before anything is
/// written.
pub fn check_contiguous(entries: &[Entry]) -> Result<(), StorageError> {
    if entries.first().is_some_and(|e| e.index == 0) {
        return Err(StorageError::Other("append of an entry at index 0".into()));
    }
    match entries.windows(2).find(|pair| pair[0].index.checked_add(1) != Some(pair[1].index)) {
        Some(pair) => Err(StorageError::Other(format!(
            "append of entry {} after entry {}: entries must be contiguous",
            pair[1].index, pair[0].index
        ))),
        None => Ok(()),
    }
}

/// The longest prefix of `entries` whose payload stays within `max_bytes`, but at least one entry.
pub fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    if entries.is_empty() || max_bytes == u64::MAX {
        return entries;
    }
    let mut size = 0u64;
    let mut count = 0;
    for entry in entries {
        size += entry.payload_size();
        if count > 0 && size > max_bytes {
            break;
        }
        count += 1;
    }
    &entries[..count]
}

/// In-memory storage, shared between the node (which reads it) and the caller (which writes it).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    core: Arc<RwLock<MemStorageCore>>,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// A new storage for a node of a new cluster whose initial configuration is `conf_state`.
    pub fn new_with_conf_state(conf_state: ConfState) -> Self {
        let storage = MemStorage::new();
        storage.wl().set_conf_state(0, conf_state);
        storage
    }

    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        // A poisoned lock means a writer panicked mid-update; the data is still structurally
        // valid (every mutation above is applied in one step), so keep going.
        self.core.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.core.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing was ever persisted here (a brand-new node).
    pub fn is_empty(&self) -> bool {
        let core = self.rl();
        core.hard_state == HardState::default()
            && core.last_index() == 0
            && core.conf_history.is_empty()
            && core.snapshot.is_empty()
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> RaftState {
        let core = self.rl();
        RaftState { hard_state: core.hard_state, conf_state: core.conf_state() }
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.rl().entries(low, high, max_bytes)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.rl().term(index)
    }

    fn first_index(&self) -> u64 {
        self.rl().first_index()
    }

    fn last_index(&self) -> u64 {
        self.rl().last_index()
    }

    fn snapshot(&self) -> Snapshot {
        self.rl().snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryKind;

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(index, term, EntryKind::Normal, bytes::Bytes::from_static(b"x"))
    }

    #[test]
    fn append_replaces_conflicting_suffix() {
        let mut s = MemStorageCore::default();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        s.append(&[ent(2, 2)]).unwrap();
        assert_eq!(s.last_index(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
    }

    #[test]
    fn append_with_gap_is_refused() {
        let mut s = MemStorageCore::default();
        assert!(s.append(&[ent(3, 1)]).is_err());
    }

    #[test]
    fn case_3_non_contiguous_append_is_refused_and_changes_nothing() {
        let mut s = MemStorageCore::default();
        s.append(&[ent(1, 1)]).unwrap();
        for batch in [vec![ent(2, 1), ent(4, 1)], vec![ent(2, 1), ent(2, 1)], vec![ent(0, 1)]] {
            assert!(matches!(s.append(&batch), Err(StorageError::Other(_))), "{batch:?}");
            assert_eq!(s.last_index(), 1);
        }
    }

    #[test]
    fn compact_keeps_term_and_config_of_the_snapshot_index() {
        let mut s = MemStorageCore::default();
        s.set_conf_state(0, ConfState { voters: vec![1, 2, 3], ..Default::default() });
        s.append(&[ent(1, 1), ent(2, 2), ent(3, 2)]).unwrap();
        s.set_conf_state(3, ConfState { voters: vec![1, 2], ..Default::default() });
        s.set_hard_state(HardState { term: 2, vote: 1, commit: 3 });
        s.compact(2, bytes::Bytes::from_static(b"app")).unwrap();
        assert_eq!(s.first_index(), 3);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.snapshot().conf_state.voters, vec![1, 2, 3]);
        assert_eq!(s.conf_state().voters, vec![1, 2]);
        assert_eq!(s.term(1), Err(StorageError::Compacted(1)));
        assert!(s.entries(1, 3, u64::MAX).is_err());
    }

    #[test]
    fn compact_refuses_uncommitted_index() {
        let mut s = MemStorageCore::default();
        s.append(&[ent(1, 1)]).unwrap();
        assert!(s.compact(1, bytes::Bytes::new()).is_err());
    }

    #[test]
    fn entries_respect_size_limit_but_return_at_least_one() {
        let mut s = MemStorageCore::default();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        assert_eq!(s.entries(1, 4, 0).unwrap().len(), 1);
        assert_eq!(s.entries(1, 4, 2).unwrap().len(), 2);
        assert_eq!(s.entries(1, 4, u64::MAX).unwrap().len(), 3);
    }

    #[test]
    fn older_snapshot_is_refused() {
        let mut s = MemStorageCore::default();
        s.apply_snapshot(Snapshot { index: 5, term: 2, ..Default::default() }).unwrap();
        assert_eq!(
            s.apply_snapshot(Snapshot { index: 4, term: 2, ..Default::default() }),
            Err(StorageError::SnapshotOutOfDate(4))
        );
        assert_eq!(s.first_index(), 6);
        assert_eq!(s.hard_state().commit, 5);
    }
}
