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
    #[error("proposal dropped: {0}")]
    ProposalDropped(&'static str),
    #[error("not the leader (leader hint: {leader_hint})")]
    NotLeader { leader_hint: u64 },
    #[error("invalid configuration: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("protocol error: {0}")]
    Protocol(String),
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config { field, reason: reason.into() }
    }
}
