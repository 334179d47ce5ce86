//! Durable Raft storage: a [`FileStorage`] keeps everything the node reads in a [`MemStorage`]
//! (reads never touch the disk after `open`); every mutation is written to the WAL (and fsynced
//! per the policy) before the `MemStorage` changes.

pub mod records;
mod replay;

use std::path::Path;

use bytes::Bytes;
use consensus_core::raft::storage::{check_contiguous, MemStorage};
use consensus_core::raft::{ConfState, Entry, HardState, Ready, Snapshot};
use consensus_core::StorageError;

use self::records::{
    decode_record, decode_snapshot_body, put_conf_state, put_entries, put_hard_state, put_snapshot_marker,
};
use self::replay::Replay;
use crate::format::{ProtocolId, RECORD_PAYLOAD_BYTES_MAX};
use crate::wal::{wal_in_field, DurableStorage, Options, Wal, WriteOutcome};

/// Durable Raft storage in a directory: `wal/` segments, `snap/` snapshots and a `LOCK` file.
#[derive(Debug)]
pub struct FileStorage {
    wal: Wal,
    mem: MemStorage,
    /// The configurations recorded in `mem` (same rules as `MemStorageCore::set_conf_state`), so a
    /// new segment can repeat them and a compaction can find the one in force at its index.
    conf_history: Vec<(u64, ConfState)>,
}

impl FileStorage {
    /// What the node reads through (shared: it sees every change made here).
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Starts a new segment holding the current hard state and configurations (and, after an
    /// installed snapshot, its marker first).
    fn roll(&mut self, marker: Option<(u64, u64)>) -> Result<(), StorageError> {
        let (hard_state, first_index) = {
            let core = self.mem.rl();
            (core.hard_state(), core.last_index() + 1)
        };
        let mut preamble = Vec::new();
        if let Some((index, term)) = marker {
            put_snapshot_marker(&mut preamble, index, term);
        }
        put_hard_state(&mut preamble, &hard_state);
        for (index, conf_state) in &self.conf_history {
            put_conf_state(&mut preamble, *index, conf_state);
        }
        self.wal.roll(&preamble, first_index)
    }

    fn roll_if_full(&mut self) -> Result<(), StorageError> {
        if self.wal.is_full() {
            self.roll(None)?;
        }
        Ok(())
    }

    /// Writes the records of `entries` (those above the snapshot) to the buffer; returns them.
    fn encode_entries<'a>(&self, buf: &mut Vec<u8>, entries: &'a [Entry]) -> Result<&'a [Entry], StorageError> {
        check_contiguous(entries)?;
        let core = self.mem.rl();
        let snapshot_index = core.first_index() - 1;
        let skip = entries.iter().take_while(|e| e.index <= snapshot_index).count();
        let entries = &entries[skip..];
        let Some(first) = entries.first() else { return Ok(entries) };
        if first.index > core.last_index() + 1 {
            return Err(StorageError::Other(format!(
                "append at {} leaves a gap after last index {}",
                first.index,
                core.last_index()
            )));
        }
        let prev_term = core.term(first.index - 1).unwrap_or(0);
        let split = RECORD_PAYLOAD_BYTES_MAX.min(self.wal.options().segment_bytes as usize);
        put_entries(buf, prev_term, entries, split);
        Ok(entries)
    }

    fn note_entries_written(&mut self, entries: &[Entry]) {
        if let Some(last) = entries.last() {
            self.wal.note_written(last.index);
        }
    }

    /// Persists a Ready: snapshot, then entries, then hard state; fsyncs per policy; then
    /// updates the in-memory state the node reads.
    pub fn persist(&mut self, rd: &Ready) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        let current_hs = self.mem.rl().hard_state();
        let urgent = rd.snapshot.is_some()
            || rd.hard_state.is_some_and(|hs| hs.term != current_hs.term || hs.vote != current_hs.vote);
        if let Some(snapshot) = &rd.snapshot {
            self.install_snapshot(snapshot.clone())?;
        }
        let mut buf = Vec::new();
        let entries = self.encode_entries(&mut buf, &rd.entries)?;
        if let Some(hs) = &rd.hard_state {
            put_hard_state(&mut buf, hs);
        }
        self.wal.write(&buf)?;
        self.wal.sync_per_policy(rd.must_sync, urgent)?;
        self.note_entries_written(entries);
        {
            let mut core = self.mem.wl();
            core.append(entries)?;
            if let Some(hs) = rd.hard_state {
                core.set_hard_state(hs);
            }
        }
        self.roll_if_full()
    }

    /// Appends entries (replacing a conflicting suffix), synced like a Ready that must sync.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        let mut buf = Vec::new();
        let entries = self.encode_entries(&mut buf, entries)?;
        self.wal.write(&buf)?;
        self.wal.sync_per_policy(true, false)?;
        self.note_entries_written(entries);
        self.mem.wl().append(entries)?;
        self.roll_if_full()
    }

    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        let current = self.mem.rl().hard_state();
        let urgent = hs.term != current.term || hs.vote != current.vote;
        let mut buf = Vec::new();
        put_hard_state(&mut buf, &hs);
        self.wal.write_record(&buf, urgent)?;
        self.mem.wl().set_hard_state(hs);
        self.roll_if_full()
    }

    /// Records the configuration in force from `index` (a conf change was applied, or index 0 for
    /// the bootstrap configuration of a new cluster).
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        put_conf_state(&mut buf, index, &conf_state);
        self.wal.write_record(&buf, false)?;
        self.conf_history.retain(|(i, _)| *i < index);
        self.conf_history.push((index, conf_state.clone()));
        self.mem.wl().set_conf_state(index, conf_state);
        self.roll_if_full()
    }

    /// Installs a snapshot received from the leader: the snapshot file first, then the in-memory
    /// state, then a fresh segment starting with its marker, then the older segments go.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        self.install_snapshot(snapshot)
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.wal.write_newer_snapshot(self.mem.rl().snapshot().index, &snapshot)?;
        let (index, term) = (snapshot.index, snapshot.term);
        self.mem.wl().apply_snapshot(snapshot)?;
        self.conf_history.clear();
        self.roll(Some((index, term)))?;
        self.wal.drop_covered(index, true)
    }
}

impl DurableStorage for FileStorage {
    type Snapshot = Snapshot;

    wal_in_field!();

    fn prepare_compaction(&self, index: u64, data: Bytes) -> Result<Snapshot, StorageError> {
        self.wal.check_writable()?;
        let core = self.mem.rl();
        let held = core.snapshot();
        if index <= held.index {
            return Err(StorageError::Compacted(index));
        }
        if index > core.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if index > core.hard_state().commit {
            return Err(StorageError::Other(format!(
                "cannot compact to {index}: above the commit index {}",
                core.hard_state().commit
            )));
        }
        let conf_state = self
            .conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or(held.conf_state);
        Ok(Snapshot { index, term: core.term(index)?, conf_state, data })
    }

    fn finish_compaction(&mut self, snapshot: Snapshot, written: WriteOutcome) -> Result<(), StorageError> {
        let index = snapshot.index;
        if !self.wal.absorb_compaction(written, index, self.mem.rl().snapshot().index)? {
            return Ok(());
        }
        self.mem.wl().compact(index, snapshot.data)?;
        self.conf_history.retain(|(i, _)| *i > index);
        self.wal.drop_covered(index, false)
    }

    /// Opens (creating when missing) the storage in `dir`: loads the newest snapshot, replays the
    /// WAL, truncates a torn tail of the last segment and starts a new segment.
    fn open(dir: &Path, options: Options) -> Result<FileStorage, StorageError> {
        let (wal, snapshot, replayed) =
            Wal::replay(dir, options, ProtocolId::Raft, decode_snapshot_body, decode_record, Replay::apply)?;
        let recovered = replayed.finish(snapshot, &wal.path().join("wal"))?;

        let mem = MemStorage::new();
        {
            let mut core = mem.wl();
            if let Some(snapshot) = recovered.snapshot {
                core.apply_snapshot(snapshot)?;
            }
            for (index, conf_state) in &recovered.conf_history {
                core.set_conf_state(*index, conf_state.clone());
            }
            core.append(&recovered.entries)?;
            core.set_hard_state(recovered.hard_state);
        }
        let mut storage = FileStorage { wal, mem, conf_history: recovered.conf_history };
        storage.roll(None)?;
        Ok(storage)
    }
}
