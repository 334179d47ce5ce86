//! What a Multi-Paxos node persisted: its promise and commit index, the slots it accepted above its
//! snapshot, the snapshot and the membership. The core reads storage through [`PaxosStorage`] (at
//! start and when it needs the snapshot) so that a file storage can stand in for [`MemStorage`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::membership::Membership;
use super::message::{AcceptedSlot, HardState, Snapshot};
use crate::error::StorageError;

/// Read access to durable state.
pub trait PaxosStorage {
    fn hard_state(&self) -> HardState;
    /// The membership from the first slot held on (the initial members when there is no
    /// snapshot; `None` when the storage knows none).
    fn membership(&self) -> Option<Membership>;
    /// Every accepted slot held (all above the snapshot index), in slot order.
    fn accepted_slots(&self) -> Vec<AcceptedSlot>;
    fn snapshot(&self) -> Snapshot;
    /// The first slot still held: the snapshot index plus one.
    fn first_slot(&self) -> u64 {
        self.snapshot().index + 1
    }
}

/// The state behind [`MemStorage`]. Invariant: every key of `accepted` is above `snapshot.index`;
/// `membership` governs the slots from `snapshot.index + 1` on, as far as the snapshot knows.
#[derive(Debug, Clone, Default)]
pub struct MemStorageCore {
    hard_state: HardState,
    accepted: BTreeMap<u64, AcceptedSlot>,
    snapshot: Snapshot,
    membership: Option<Membership>,
}

impl MemStorageCore {
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn accepted(&self) -> &BTreeMap<u64, AcceptedSlot> {
        &self.accepted
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Stores accepted slots, replacing what each slot held (never touching other slots).
    /// Slots at or below the snapshot are ignored: they are decided and in the snapshot.
    pub fn put_accepted(&mut self, slots: &[AcceptedSlot]) {
        for slot in slots {
            if slot.slot > self.snapshot.index {
                self.accepted.insert(slot.slot, slot.clone());
            }
        }
    }

    /// Installs a snapshot received from the leader: drops every slot it covers.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.index < self.snapshot.index {
            return Err(StorageError::SnapshotOutOfDate(snapshot.index));
        }
        self.accepted = self.accepted.split_off(&(snapshot.index + 1));
        self.membership = Some(Membership::with_pending(snapshot.index + 1, &snapshot.members, &snapshot.pending));
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records the application's state at the applied, committed slot `index` and drops the slots
    /// up to it.
    pub fn compact(&mut self, index: u64, data: Bytes) -> Result<(), StorageError> {
        let snapshot = self.snapshot_at(index, data)?;
        self.apply_snapshot(snapshot)
    }

    /// The snapshot `compact(index, data)` would install, without changing anything (a file
    /// storage writes it to disk first): the membership governing `index + 1` and the
    /// configurations chosen at or below `index` that take effect later.
    pub fn snapshot_at(&self, index: u64, data: Bytes) -> Result<Snapshot, StorageError> {
        if index <= self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.hard_state.commit {
            return Err(StorageError::Unavailable(index));
        }
        let term = self.accepted.get(&index).map_or(self.snapshot.term, |s| s.value.round);
        let mut membership = self.membership.clone().unwrap_or_else(|| Membership::new(1, &[]));
        for (slot, accepted) in self.accepted.range(..=index) {
            membership.on_chosen(*slot, &accepted.value);
        }
        let (members, pending) = (membership.at(index + 1).to_vec(), membership.pending_after(index + 1));
        Ok(Snapshot { index, term, members, pending, data })
    }

    /// Sets the members of a new cluster (they govern every slot from the first one held).
    pub fn set_initial_members(&mut self, members: &[u64]) {
        self.membership = Some(Membership::new(self.snapshot.index + 1, members));
    }

    /// The highest slot `s` such that every slot from the snapshot up to `s` is held: how far a
    /// commit index read back from disk can be trusted.
    pub fn contiguous_through(&self) -> u64 {
        let mut through = self.snapshot.index;
        for slot in self.accepted.keys() {
            if *slot != through + 1 {
                break;
            }
            through = *slot;
        }
        through
    }
}

/// In-memory storage, shared between the node and its owner (as Raft's `MemStorage`).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    core: Arc<RwLock<MemStorageCore>>,
}

impl MemStorage {
    /// Empty storage of a member of a new cluster of `members`.
    pub fn new(members: &[u64]) -> Self {
        let membership = (!members.is_empty()).then(|| Membership::new(1, members));
        let core = MemStorageCore { membership, ..Default::default() };
        MemStorage { core: Arc::new(RwLock::new(core)) }
    }

    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        self.core.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.core.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn compact(&self, index: u64, data: Bytes) -> Result<(), StorageError> {
        self.wl().compact(index, data)
    }
}

impl PaxosStorage for MemStorage {
    fn hard_state(&self) -> HardState {
        self.rl().hard_state
    }

    fn membership(&self) -> Option<Membership> {
        self.rl().membership.clone()
    }

    fn accepted_slots(&self) -> Vec<AcceptedSlot> {
        self.rl().accepted.values().cloned().collect()
    }

    fn snapshot(&self) -> Snapshot {
        self.rl().snapshot.clone()
    }

    fn first_slot(&self) -> u64 {
        self.rl().snapshot.index + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::message::{Ballot, Value};

    fn slot(slot: u64, round: u64) -> AcceptedSlot {
        AcceptedSlot { slot, ballot: Ballot::new(round, 1), value: Value::batch(round, vec![Bytes::from("x")]) }
    }

    #[test]
    fn accepting_a_slot_never_touches_other_slots() {
        let storage = MemStorage::new(&[1, 2, 3]);
        storage.wl().put_accepted(&[slot(1, 1), slot(2, 1), slot(3, 1)]);
        storage.wl().put_accepted(&[slot(2, 2)]);
        let held = storage.accepted_slots();
        assert_eq!(held.iter().map(|s| (s.slot, s.ballot.round)).collect::<Vec<_>>(), vec![(1, 1), (2, 2), (3, 1)]);
    }

    #[test]
    fn compact_needs_a_committed_index_and_drops_the_prefix() {
        let storage = MemStorage::new(&[1]);
        storage.wl().put_accepted(&[slot(1, 1), slot(2, 1), slot(3, 1)]);
        assert_eq!(storage.compact(2, Bytes::new()), Err(StorageError::Unavailable(2)));
        storage.wl().set_hard_state(HardState { promised: Ballot::new(1, 1), commit: 3 });
        storage.compact(2, Bytes::from("s")).unwrap();
        assert_eq!(storage.first_slot(), 3);
        assert_eq!(storage.accepted_slots().len(), 1);
        assert_eq!(storage.compact(2, Bytes::new()), Err(StorageError::Compacted(2)));
        assert_eq!(storage.snapshot().members, vec![1]);
    }
}
