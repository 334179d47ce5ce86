//! What every protocol hands the application: entries in order, each an application command or a
//! membership change. Raft's log entries and the commands of Multi-Paxos's decided slots are the
//! same type, so the runtime applies either alike.

use bytes::Bytes;

crate::wire_enum! {
    /// What an entry carries: an application command or a membership change. The numbers are
    /// part of the wire and storage formats.
    pub enum EntryKind {
        #[default]
        Normal = 0,
        ConfChange = 1,
    }
}

/// One entry. Raft: a log entry, with `index >= 1` and `term >= 1` for every entry stored in a log.
/// Multi-Paxos: one command of a decided slot, `index` the slot and `term` the round of the ballot
/// that first proposed the value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    pub fn new(index: u64, term: u64, kind: EntryKind, data: Bytes) -> Self {
        Entry { index, term, kind, data }
    }

    /// The bytes this entry counts for against size limits (messages, Ready batches, the
    /// uncommitted-bytes cap). Only the payload counts, so limits mean the same thing to users.
    #[inline]
    pub fn payload_size(&self) -> u64 {
        self.data.len() as u64
    }
}
