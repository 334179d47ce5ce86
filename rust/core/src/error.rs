//! The error types every core returns. The binding crate maps each variant to one Python exception
//! (`consensus.DecodeError`, `consensus.ProposalDroppedError`, ...) in a single file.

use thiserror::Error;

/// Why a frame from a peer could not be decoded. Decoding is total: every malformed input ends here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("frame truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("frame length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported wire format version {0}")]
    Version(u8),
    #[error("frame belongs to protocol {found}, expected {expected}")]
    WrongProtocol { expected: u8, found: u8 },
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    #[error("invalid value {value} for field {field}")]
    InvalidField { field: &'static str, value: u64 },
    #[error("checksum mismatch: frame says {expected:#010x}, computed {computed:#010x}")]
    Checksum { expected: u32, computed: u32 },
    #[error("{0} trailing bytes after the payload")]
    TrailingBytes(usize),
}

/// Every error a protocol core can return to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// A proposal, read or transfer was refused; `reason` says why (for programs), `detail` says it
    /// in words (for logs). Nothing was appended: the caller may retry.
    #[error("proposal dropped: {detail}")]
    ProposalDropped { reason: DropReason, detail: &'static str },
    #[error("not the leader (leader hint: {leader_hint})")]
    NotLeader { leader_hint: u64 },
    #[error("invalid configuration: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why a core refused a proposal, a read or a transfer: one variant per reason, shared by every
/// protocol. `code()` is the stable name callers match on (Python's `ProposalDroppedError.reason`,
/// the HTTP service's status choice), never the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No leader is known, or an election is in progress.
    NoLeader,
    /// The leader is handing its leadership over; proposals wait for the new leader.
    TransferInProgress,
    /// Appending would exceed `max_uncommitted_bytes` (the leader is ahead of its followers).
    UncommittedBytes,
    /// One entry or command is larger than `max_entry_bytes`.
    EntryTooLarge,
    /// More entries in one proposal than one message may carry.
    TooManyEntries,
    /// A read's context is larger than one message may carry.
    ContextTooLarge,
    /// `max_pending_reads` reads are already waiting.
    TooManyPendingReads,
    /// A membership change (Raft conf change, Paxos reconfiguration) is still in flight.
    ConfChangePending,
    /// One proposal carries more than one membership change.
    MultipleConfChanges,
    /// The proposal carries nothing to replicate.
    EmptyProposal,
}

impl DropReason {
    /// Every reason, for tests and tables that must cover them all.
    pub const ALL: [DropReason; 10] = [
        DropReason::NoLeader,
        DropReason::TransferInProgress,
        DropReason::UncommittedBytes,
        DropReason::EntryTooLarge,
        DropReason::TooManyEntries,
        DropReason::ContextTooLarge,
        DropReason::TooManyPendingReads,
        DropReason::ConfChangePending,
        DropReason::MultipleConfChanges,
        DropReason::EmptyProposal,
    ];

    /// The stable snake_case name of the reason; part of the public API, never renamed.
    pub fn code(self) -> &'static str {
        match self {
            DropReason::NoLeader => "no_leader",
            DropReason::TransferInProgress => "transfer_in_progress",
            DropReason::UncommittedBytes => "uncommitted_bytes",
            DropReason::EntryTooLarge => "entry_too_large",
            DropReason::TooManyEntries => "too_many_entries",
            DropReason::ContextTooLarge => "context_too_large",
            DropReason::TooManyPendingReads => "too_many_pending_reads",
            DropReason::ConfChangePending => "conf_change_pending",
            DropReason::MultipleConfChanges => "multiple_conf_changes",
            DropReason::EmptyProposal => "empty_proposal",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Errors a `Storage` implementation returns to the log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The requested index is below the first index still held (it was compacted into a snapshot).
    #[error("index {0} was compacted")]
    Compacted(u64),
    /// The requested index is past the last index held.
    #[error("index {0} is unavailable")]
    Unavailable(u64),
    /// A snapshot older than the one already held.
    #[error("snapshot at index {0} is out of date")]
    SnapshotOutOfDate(u64),
    /// A file of durable storage is damaged: `file` names it and `offset` is where the damage starts.
    #[error("corrupt storage file {file} at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
    /// Reading, writing or syncing a file failed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// An earlier write or fsync failed; nothing more is written until the storage is reopened.
    #[error("storage is poisoned by an earlier failure ({0}); reopen it once the cause is fixed")]
    Poisoned(String),
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    /// The stable snake_case name of the variant (Python's `StorageError.kind`), so callers tell
    /// "already compacted" from damage or I/O failure without reading the message.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageError::Compacted(_) => "compacted",
            StorageError::Unavailable(_) => "unavailable",
            StorageError::SnapshotOutOfDate(_) => "snapshot_out_of_date",
            StorageError::Corrupt { .. } => "corrupt",
            StorageError::Io(_) => "io",
            StorageError::Poisoned(_) => "poisoned",
            StorageError::Other(_) => "other",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A `ProposalDropped` for `reason`, with `detail` in words for the log.
    pub fn dropped(reason: DropReason, detail: &'static str) -> Self {
        Error::ProposalDropped { reason, detail }
    }

    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config { field, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_drop_reason_has_its_own_snake_case_code() {
        let codes: HashSet<&str> = DropReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), DropReason::ALL.len());
        for code in codes {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
        }
    }

    #[test]
    fn a_dropped_proposal_reads_as_its_detail_and_keeps_its_reason() {
        let err = Error::dropped(DropReason::UncommittedBytes, "too many uncommitted bytes");
        assert_eq!(err.to_string(), "proposal dropped: too many uncommitted bytes");
        assert!(matches!(err, Error::ProposalDropped { reason: DropReason::UncommittedBytes, .. }));
    }

    #[test]
    fn every_storage_error_variant_has_its_own_kind() {
        let all = [
            StorageError::Compacted(1),
            StorageError::Unavailable(1),
            StorageError::SnapshotOutOfDate(1),
            StorageError::Corrupt { file: "f".into(), offset: 0, reason: "r".into() },
            StorageError::Io("io".into()),
            StorageError::Poisoned("p".into()),
            StorageError::Other("o".into()),
        ];
        let kinds: HashSet<&str> = all.iter().map(StorageError::kind).collect();
        assert_eq!(kinds.len(), all.len());
        assert_eq!(StorageError::Compacted(7).kind(), "compacted");
    }
}
