//! Multi-Paxos data types: ballots, slot values, accepted slots, hard state, snapshots and peer
//! messages. Their wire encoding lives in `paxos/wire.rs` and is specified in `docs/wire-format.md`.

use bytes::Bytes;

/// A ballot, totally ordered by `(round, node)`. Invariant: a node only ever leads ballots whose
/// `node` is its own id, so two proposers never share a ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: u64,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    pub fn new(round: u64, node: u64) -> Self {
        Ballot { round, node }
    }
}

impl std::fmt::Display for Ballot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

/// What a slot holds. The numeric values are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ValueKind {
    /// Fills a gap found by a new leader; applies nothing.
    #[default]
    Noop = 0,
    /// A batch of client commands, applied in order.
    Batch = 1,
    /// A membership change (its one command is the encoded member list).
    Reconfig = 2,
}

/// A slot value. `round` is the round of the ballot that first proposed it; re-proposals by later
/// leaders keep it, so every replica reports the same term for a chosen value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Value {
    pub kind: ValueKind,
    pub round: u64,
    pub commands: Vec<Bytes>,
}

impl Value {
    pub fn noop(round: u64) -> Self {
        Value { kind: ValueKind::Noop, round, commands: Vec::new() }
    }

    pub fn batch(round: u64, commands: Vec<Bytes>) -> Self {
        Value { kind: ValueKind::Batch, round, commands }
    }

    /// Payload bytes: what the size limits count.
    pub fn payload_size(&self) -> u64 {
        self.commands.iter().map(|c| c.len() as u64).sum()
    }
}

/// A slot an acceptor accepted: the ballot and the value. Also used for decided slots sent by
/// catch-up (at the leader's ballot, which is at or above the ballot the value was chosen in).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcceptedSlot {
    pub slot: u64,
    pub ballot: Ballot,
    pub value: Value,
}

/// One command of a decided slot, as handed to the application. `index` is the slot, `term` the
/// round of the ballot that first proposed the value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    pub data: Bytes,
}

/// The kind of an applied entry (same values as Raft's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum EntryKind {
    #[default]
    Normal = 0,
    ConfChange = 1,
}

/// What must be durable before any message that depends on it leaves the node.
/// Invariant: `promised` never goes back across restarts; `commit` never decreases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub promised: Ballot,
    /// Every slot up to here is chosen and its value is held (or in the snapshot).
    pub commit: u64,
}

/// A snapshot of the application's state at slot `index`, with the membership governing slot
/// `index + 1` and the configurations already chosen that take effect later (the α-window).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub members: Vec<u64>,
    /// `(first slot governed, members)`, ascending, every first slot above `index + 1`.
    pub pending: Vec<(u64, Vec<u64>)>,
    pub data: Bytes,
}

/// Message types. The numeric values are part of the wire format and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum MessageType {
    /// Phase 1a: `ballot`, `index` = first slot the candidate does not know chosen.
    #[default]
    Prepare = 1,
    /// Phase 1b: `ballot` answered, `commit`, `entries` = accepted slots from `index` on, and the
    /// acceptor's snapshot when it trimmed slots the candidate needs.
    Promise = 2,
    /// Phase 2a: `ballot`, contiguous `entries`, `commit`.
    Accept = 3,
    /// Phase 2b: `ballot`, accepted slots `index..=last_index`, the acceptor's `commit`.
    Accepted = 4,
    /// Heartbeat and decide: `ballot`, `commit`, `context` (read-index token).
    Commit = 5,
    /// Heartbeat reply: `ballot`, the follower's `commit`, `context` echoed.
    CommitAck = 6,
    /// Refusal: `ballot` is the higher ballot the sender promised.
    Nack = 7,
    /// Decided slots for a lagging replica: `ballot`, `entries`, `commit`.
    CatchUp = 8,
    /// The leader's snapshot for a replica behind its trimmed prefix.
    Snapshot = 9,
    /// A follower forwards client commands (`commands`) to the leader.
    Propose = 10,
    /// A follower forwards a read-index request (`context`) to the leader.
    ReadIndex = 11,
    /// The leader's answer: `index` to wait for, `context` echoed.
    ReadIndexResponse = 12,
}

impl MessageType {
    pub const ALL: [MessageType; 12] = [
        MessageType::Prepare,
        MessageType::Promise,
        MessageType::Accept,
        MessageType::Accepted,
        MessageType::Commit,
        MessageType::CommitAck,
        MessageType::Nack,
        MessageType::CatchUp,
        MessageType::Snapshot,
        MessageType::Propose,
        MessageType::ReadIndex,
        MessageType::ReadIndexResponse,
    ];

    pub fn from_u8(value: u8) -> Option<MessageType> {
        if (1..=12).contains(&value) {
            Some(Self::ALL[value as usize - 1])
        } else {
            None
        }
    }
}

/// A message between peers. Every message type has every field (unused ones are zero or empty);
/// see [`MessageType`] for the meaning of each field per type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub msg_type: MessageType,
    pub from: u64,
    pub to: u64,
    pub ballot: Ballot,
    pub index: u64,
    pub last_index: u64,
    pub commit: u64,
    pub entries: Vec<AcceptedSlot>,
    pub commands: Vec<Bytes>,
    pub context: Bytes,
    pub snapshot: Option<Snapshot>,
}

impl Message {
    pub fn new(msg_type: MessageType, from: u64, to: u64, ballot: Ballot) -> Self {
        Message { msg_type, from, to, ballot, ..Default::default() }
    }
}
