//! Durable Multi-Paxos storage: a [`PaxosFileStorage`] keeps what the node reads in a paxos
//! [`MemStorage`] (reads never touch the disk after `open`); every Ready is written to the WAL
//! (and fsynced per the policy) before the `MemStorage` changes, so a Promise or Accepted that
//! depends on it can leave the node.

pub mod records;

use std::path::Path;

use bytes::Bytes;
use consensus_core::paxos::{HardState, MemStorage, Ready, Snapshot};
use consensus_core::StorageError;

use self::records::{decode_record, decode_snapshot_body, put_accepted, put_hard_state, put_members, Replay};
use crate::format::{ProtocolId, RECORD_PAYLOAD_BYTES_MAX};
use crate::wal::{wal_in_field, DurableStorage, Options, Wal, WriteOutcome};

/// Durable Multi-Paxos storage in a directory: `wal/` segments, `snap/` snapshots, `LOCK`.
#[derive(Debug)]
pub struct PaxosFileStorage {
    wal: Wal,
    mem: MemStorage,
    /// The members of a new cluster, while no snapshot is held (each segment repeats them).
    initial_members: Option<Vec<u64>>,
}

impl PaxosFileStorage {
    /// What the node reads through (shared: it sees every change made here).
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Starts a new segment holding the current promise and commit (and the initial members while
    /// no snapshot holds the membership), so that older segments can go once the snapshot
    /// covers their slots.
    fn roll(&mut self) -> Result<(), StorageError> {
        let (hard_state, next_slot) = {
            let core = self.mem.rl();
            let last = core.accepted().keys().next_back().copied().unwrap_or(core.snapshot().index);
            (core.hard_state(), last + 1)
        };
        let mut preamble = Vec::new();
        put_hard_state(&mut preamble, &hard_state);
        if let Some(members) = &self.initial_members {
            put_members(&mut preamble, members);
        }
        self.wal.roll(&preamble, next_slot)
    }

    fn roll_if_full(&mut self) -> Result<(), StorageError> {
        if self.wal.is_full() {
            self.roll()?;
        }
        Ok(())
    }

    /// Records the members of a new cluster (a node bootstrapping on an empty storage).
    pub fn set_initial_members(&mut self, members: &[u64]) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        if members.is_empty() || members.contains(&0) {
            return Err(StorageError::Other("initial members must be non-empty node ids".into()));
        }
        let mut buf = Vec::new();
        put_members(&mut buf, members);
        self.wal.write(&buf)?;
        self.wal.sync_per_policy(true, true)?;
        self.mem.wl().set_initial_members(members);
        if self.mem.rl().snapshot().index == 0 {
            self.initial_members = Some(members.to_vec());
        }
        self.roll_if_full()
    }

    /// Persists a Ready: snapshot, then accepted slots, then the promise and commit; fsyncs per
    /// policy; then updates the in-memory state the node reads.
    pub fn persist(&mut self, rd: &Ready) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        let current = self.mem.rl().hard_state();
        let urgent = rd.snapshot.is_some() || rd.hard_state.is_some_and(|hs| hs.promised != current.promised);
        if let Some(snapshot) = &rd.snapshot {
            self.install_snapshot(snapshot.clone())?;
        }
        let held = self.mem.rl().snapshot().index;
        let slots: Vec<_> = rd.accepted.iter().filter(|s| s.slot > held).cloned().collect();
        let mut buf = Vec::new();
        let split = RECORD_PAYLOAD_BYTES_MAX.min(self.wal.options().segment_bytes as usize);
        put_accepted(&mut buf, &slots, split);
        if let Some(hs) = &rd.hard_state {
            put_hard_state(&mut buf, hs);
        }
        self.wal.write(&buf)?;
        self.wal.sync_per_policy(rd.must_sync, urgent)?;
        if let Some(max) = slots.iter().map(|s| s.slot).max() {
            self.wal.note_written(max);
        }
        {
            let mut core = self.mem.wl();
            core.put_accepted(&slots);
            if let Some(hs) = rd.hard_state {
                core.set_hard_state(hs);
            }
        }
        self.roll_if_full()
    }

    /// Installs a snapshot received from the leader: the snapshot file first, then the in-memory
    /// state (slots above it are kept), then a fresh segment; segments holding only slots it
    /// covers go.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.wal.check_writable()?;
        self.install_snapshot(snapshot)
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        check_members(&snapshot)?;
        self.wal.write_newer_snapshot(self.mem.rl().snapshot().index, &snapshot)?;
        let index = snapshot.index;
        self.mem.wl().apply_snapshot(snapshot)?;
        self.initial_members = None;
        self.roll()?;
        self.wal.drop_covered(index, false)
    }

    /// Records a new promise or commit directly (tools and tests; the node persists Readies).
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        let urgent = hs.promised != self.mem.rl().hard_state().promised;
        let mut buf = Vec::new();
        put_hard_state(&mut buf, &hs);
        self.wal.write_record(&buf, urgent)?;
        self.mem.wl().set_hard_state(hs);
        self.roll_if_full()
    }
}

impl DurableStorage for PaxosFileStorage {
    type Snapshot = Snapshot;

    wal_in_field!();

    /// Step 1 of a compaction (brief): checks `index` and builds the snapshot to write (see the
    /// Raft `FileStorage::prepare_compaction` for why a compaction has three steps).
    fn prepare_compaction(&self, index: u64, data: Bytes) -> Result<Snapshot, StorageError> {
        self.wal.check_writable()?;
        let snapshot = self.mem.rl().snapshot_at(index, data)?;
        check_members(&snapshot)?;
        Ok(snapshot)
    }

    /// Step 3 (brief): with the file written, drops the slots up to the snapshot, deletes the
    /// segments it covers and older snapshot files; superseded if a newer snapshot arrived.
    fn finish_compaction(&mut self, snapshot: Snapshot, written: WriteOutcome) -> Result<(), StorageError> {
        let index = snapshot.index;
        if !self.wal.absorb_compaction(written, index, self.mem.rl().snapshot().index)? {
            return Ok(());
        }
        self.mem.wl().apply_snapshot(snapshot)?;
        // Segments from now on need not repeat the initial members: the snapshot holds them.
        self.initial_members = None;
        self.wal.drop_covered(index, false)
    }

    /// Opens (creating when missing) the storage in `dir`: loads the newest snapshot, replays the
    /// WAL (each slot's last accepted value), truncates a torn tail of the last segment and
    /// starts a new segment.
    fn open(dir: &Path, options: Options) -> Result<PaxosFileStorage, StorageError> {
        let (wal, snapshot, replay) =
            Wal::replay(dir, options, ProtocolId::Paxos, decode_snapshot_body, decode_record, Replay::apply)?;

        let mem = MemStorage::new(replay.members.as_deref().unwrap_or_default());
        let initial_members = if snapshot.is_some() { None } else { replay.members };
        {
            let mut core = mem.wl();
            let mut hard_state = replay.hard_state.unwrap_or_default();
            core.set_hard_state(hard_state);
            if let Some(snapshot) = snapshot {
                core.apply_snapshot(snapshot)?;
            }
            let slots: Vec<_> = replay.accepted.into_values().collect();
            core.put_accepted(&slots);
            // The commit index need not be durable before the slots it covers are (a torn tail
            // can keep a commit record and lose nothing it covers only because records are
            // written slots first); never claim more than the slots held contiguously.
            hard_state = core.hard_state();
            hard_state.commit = hard_state.commit.min(core.contiguous_through()).max(core.snapshot().index);
            core.set_hard_state(hard_state);
        }
        let mut storage = PaxosFileStorage { wal, mem, initial_members };
        storage.roll()?;
        Ok(storage)
    }
}

/// A snapshot file must read back: `decode_snapshot_body` refuses one without members.
fn check_members(snapshot: &Snapshot) -> Result<(), StorageError> {
    if snapshot.members.is_empty() {
        return Err(StorageError::Other(format!("snapshot at {} holds no membership", snapshot.index)));
    }
    Ok(())
}
