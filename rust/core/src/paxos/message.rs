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

crate::wire_enum! {
    /// What a slot holds. The numeric values are part of the wire format.
    pub enum ValueKind {
        /// Fills a gap found by a new leader; applies nothing.
        #[default]
        Noop = 0,
        /// A batch of client commands, applied in order.
        Batch = 1,
        /// A membership change (its one command is the encoded member list).
        Reconfig = 2,
    }
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

/// The entries handed to the application: Raft's type (one command of a decided slot each).
pub use crate::entry::{Entry, EntryKind};

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

crate::wire_enum! {
    /// Message types. The numeric values are part of the wire format and never change.
    pub enum MessageType {
        /// Phase 1a: `ballot`, `index` = first slot whose accepted value the candidate asks for (the
        /// first slot it does not know chosen, or the slot after the last page of a paginated
        /// promise); `context` = empty, or the encoded ballot of the leader that handed leadership
        /// over (a transfer election: see [`encode_transfer_marker`]).
        #[default]
        Prepare = 1,
        /// Phase 1b, complete: `ballot` answered, `commit`, `entries` = every slot accepted from
        /// `index` on, and the acceptor's snapshot when it trimmed slots the candidate needs.
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
        /// Leadership transfer: the leader of `ballot` tells a caught-up acceptor to start Phase 1 at
        /// once.
        TimeoutNow = 13,
        /// Phase 1b, one page: `ballot` promised, `commit`, `entries` = every slot accepted in
        /// `index..=last_index` (and the snapshot as in `Promise`); the candidate asks for the rest
        /// with another `Prepare` from `last_index + 1`.
        PromisePage = 14,
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

/// Bytes of the transfer marker a `Prepare` carries in `context`: the old leader's ballot.
pub const TRANSFER_MARKER_BYTES: usize = 16;

/// The `context` of the Prepares of a transfer election: the ballot of the leader that sent
/// `TimeoutNow` (round, then node, little-endian `u64`s).
pub fn encode_transfer_marker(ballot: Ballot) -> Bytes {
    let mut marker = Vec::with_capacity(TRANSFER_MARKER_BYTES);
    marker.extend_from_slice(&ballot.round.to_le_bytes());
    marker.extend_from_slice(&ballot.node.to_le_bytes());
    Bytes::from(marker)
}

/// The ballot a transfer marker names; `None` for any other context (an ordinary election).
pub fn decode_transfer_marker(context: &[u8]) -> Option<Ballot> {
    if context.len() != TRANSFER_MARKER_BYTES {
        return None;
    }
    let (mut round, mut node) = ([0u8; 8], [0u8; 8]);
    round.copy_from_slice(&context[..8]);
    node.copy_from_slice(&context[8..]);
    Some(Ballot { round: u64::from_le_bytes(round), node: u64::from_le_bytes(node) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_marker_round_trips_and_no_other_context_is_one() {
        let ballot = Ballot::new(7, 3);
        let marker = encode_transfer_marker(ballot);
        assert_eq!(marker.len(), TRANSFER_MARKER_BYTES);
        assert_eq!(decode_transfer_marker(&marker), Some(ballot));
        for len in [0, 1, 8, 15, 17, 32] {
            assert_eq!(decode_transfer_marker(&vec![1; len]), None, "a context of {len} bytes");
        }
    }

    #[test]
    fn message_types_are_numbered_in_order_and_the_rest_are_unknown() {
        for (i, msg_type) in MessageType::ALL.iter().enumerate() {
            assert_eq!(*msg_type as u8 as usize, i + 1);
            assert_eq!(MessageType::from_u8(i as u8 + 1), Some(*msg_type));
        }
        assert_eq!(MessageType::from_u8(0), None);
        assert_eq!(MessageType::from_u8(MessageType::ALL.len() as u8 + 1), None);
    }
}
