//! Raft's data types: log entries, hard state, configuration state, snapshots and peer messages.
//! Their wire encoding lives in `raft/wire.rs` and is specified in `docs/wire-format.md`.

use bytes::Bytes;

pub use crate::entry::{Entry, EntryKind};

/// The state that must be durable before any message that depends on it leaves the node.
/// Invariant: `term` and `vote` never go back across restarts; `commit` never decreases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    /// The candidate voted for in `term` (0: none).
    pub vote: u64,
    pub commit: u64,
}

/// A membership configuration. When `voters_outgoing` is non-empty the cluster is in a joint
/// configuration and every decision needs a majority of both `voters` and `voters_outgoing`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    /// Learners that become voters once the joint configuration is left (a voter demoted to a
    /// learner inside a joint change stays a voter of the outgoing half until then).
    pub learners_next: Vec<u64>,
    /// Whether the joint configuration is left automatically once it commits.
    pub auto_leave: bool,
}

/// A membership change proposal. An empty change (nothing added or removed) while in a joint
/// configuration means "leave the joint configuration".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfChange {
    pub add_voters: Vec<u64>,
    pub remove_voters: Vec<u64>,
    pub add_learners: Vec<u64>,
    pub remove_learners: Vec<u64>,
}

impl ConfChange {
    pub fn is_empty(&self) -> bool {
        self.add_voters.is_empty()
            && self.remove_voters.is_empty()
            && self.add_learners.is_empty()
            && self.remove_learners.is_empty()
    }
}

/// A snapshot of the application's state at `index`, with the configuration in force there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub data: Bytes,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.index == 0
    }
}

crate::wire_enum! {
    /// Message types. The numeric values are part of the wire format and never change.
    pub enum MessageType {
        // A request and its response share a line.
        #[default]
        RequestVote = 1, RequestVoteResponse = 2,
        RequestPreVote = 3, RequestPreVoteResponse = 4,
        AppendEntries = 5, AppendEntriesResponse = 6,
        Heartbeat = 7, HeartbeatResponse = 8,
        InstallSnapshot = 9,
        TimeoutNow = 10,
        ReadIndex = 11, ReadIndexResponse = 12,
        Propose = 13,
        TransferLeader = 14,
    }
}

impl MessageType {
    /// Responses are addressed to a requester and never start anything by themselves.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::RequestVoteResponse
                | MessageType::RequestPreVoteResponse
                | MessageType::AppendEntriesResponse
                | MessageType::HeartbeatResponse
                | MessageType::ReadIndexResponse
        )
    }
}

/// A message between peers. Field meanings follow etcd-io/raft:
/// - (pre-)vote request: `index`/`log_term` are the candidate's last log position;
/// - append request: `index`/`log_term` are the position preceding `entries`;
/// - append response: on success `index` is the last index that now matches; on rejection `index`
///   is the rejected previous index and `reject_hint`/`log_term` the follower's hint;
/// - ReadIndex and leadership-transfer elections carry their token in `context`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub msg_type: MessageType,
    pub from: u64,
    pub to: u64,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub commit: u64,
    pub entries: Vec<Entry>,
    pub reject: bool,
    pub reject_hint: u64,
    pub context: Bytes,
    pub snapshot: Option<Snapshot>,
}

impl Message {
    pub fn new(msg_type: MessageType, from: u64, to: u64, term: u64) -> Self {
        Message { msg_type, from, to, term, ..Default::default() }
    }
}
