//! `consensus-storage`: durable storage for the consensus cores — a write-ahead log of segments
//! with CRC32C records plus snapshot files (format: docs/storage-format.md).
//!
//! [`wal`] is the part every protocol shares (the directory, segments, fsync policies, snapshot
//! files, torn-tail rules); [`raft`] and [`paxos`] say what their records mean and keep the
//! in-memory storage their core reads.

pub mod format;
pub mod paxos;
pub mod raft;
pub mod wal;

pub use crate::paxos::PaxosFileStorage;
pub use crate::raft::FileStorage;
pub use crate::wal::{
    DurableStorage, FsyncPolicy, Options, SnapshotWriter, Stats, WriteOutcome, SEGMENT_BYTES_MIN, SNAPSHOTS_KEPT,
};
