//! In-memory stable storage that takes a protocol's Ready the way a disk would: the one write path
//! that the simulator, the hostile-peer harness (`hostile.rs`) and the benchmarks share. A node
//! reads what was written through its own clone of the storage (the clones share one state).

use bytes::Bytes;

use crate::paxos::{self, PaxosStorage};
use crate::raft;
use crate::raft::storage::{MemStorage, Storage};
use crate::StorageError;

/// A protocol's in-memory storage as the harnesses write it.
pub trait MemDurable: Clone {
    /// The Ready whose durable part (snapshot, then log or slots, then hard state) lands here.
    type Ready;

    /// Writes the Ready's durable part: the snapshot first, then what the log (or the acceptor's
    /// slots) gained, then the hard state, so that a crash in between never leaves a hard state
    /// ahead of what it vouches for.
    fn persist(&self, ready: &Self::Ready) -> Result<(), StorageError>;
    /// Records an application snapshot at the applied `index` and drops what it covers.
    fn compact(&self, index: u64, data: Bytes) -> Result<(), StorageError>;
    /// The application snapshot held: `(index, data)`, index 0 when none.
    fn app_snapshot(&self) -> (u64, Bytes);
    /// The first index (Raft) or slot (Paxos) still held.
    fn first_index(&self) -> u64;
    /// The snapshot a Ready installs, which the application restores from: `(index, data)`.
    fn installed_snapshot(ready: &Self::Ready) -> Option<(u64, Bytes)>;
}

impl MemDurable for MemStorage {
    type Ready = raft::Ready;

    fn persist(&self, ready: &raft::Ready) -> Result<(), StorageError> {
        let mut core = self.wl();
        if let Some(snapshot) = &ready.snapshot {
            core.apply_snapshot(snapshot.clone())?;
        }
        core.append(&ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            core.set_hard_state(hard_state);
        }
        Ok(())
    }

    fn compact(&self, index: u64, data: Bytes) -> Result<(), StorageError> {
        self.wl().compact(index, data)
    }

    fn app_snapshot(&self) -> (u64, Bytes) {
        let snapshot = Storage::snapshot(self);
        (snapshot.index, snapshot.data)
    }

    fn first_index(&self) -> u64 {
        Storage::first_index(self)
    }

    fn installed_snapshot(ready: &raft::Ready) -> Option<(u64, Bytes)> {
        ready.snapshot.as_ref().map(|s| (s.index, s.data.clone()))
    }
}

impl MemDurable for paxos::MemStorage {
    type Ready = paxos::Ready;

    fn persist(&self, ready: &paxos::Ready) -> Result<(), StorageError> {
        let mut core = self.wl();
        if let Some(snapshot) = ready.snapshot.clone() {
            core.apply_snapshot(snapshot)?;
        }
        core.put_accepted(&ready.accepted);
        ready.hard_state.into_iter().for_each(|hard_state| core.set_hard_state(hard_state));
        Ok(())
    }

    fn compact(&self, index: u64, data: Bytes) -> Result<(), StorageError> {
        paxos::MemStorage::compact(self, index, data)
    }

    fn app_snapshot(&self) -> (u64, Bytes) {
        let snapshot = PaxosStorage::snapshot(self);
        (snapshot.index, snapshot.data)
    }

    fn first_index(&self) -> u64 {
        self.first_slot()
    }

    fn installed_snapshot(ready: &paxos::Ready) -> Option<(u64, Bytes)> {
        let snapshot = ready.snapshot.as_ref()?;
        Some((snapshot.index, snapshot.data.clone()))
    }
}
