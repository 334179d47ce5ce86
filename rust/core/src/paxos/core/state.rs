//! The state each role of a node keeps apart from the shared fields of `Paxos`: one struct per
//! role, used by that role's file (`phase1.rs`, `phase2.rs`, `reads.rs`, `transfer.rs`) and
//! composed by `Paxos`. Kept here, apart from the role's methods, so that `core.rs` names them
//! without depending on the files that extend `Paxos`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::paxos::message::{AcceptedSlot, Ballot, Value};

// ---------------------------------------------------------------- phase1.rs

/// What a candidate gathers in Phase 1; cleared when a new Phase 1 starts.
#[derive(Debug, Default)]
pub(super) struct Candidacy {
    /// Acceptors whose (complete) promise for this ballot arrived.
    pub(super) promises: BTreeSet<u64>,
    /// Nodes sent this candidacy's Prepare.
    pub(super) prepared: BTreeSet<u64>,
    /// Per slot, the accepted value of the highest ballot any promise (or this node) reported.
    pub(super) highest_accepted: BTreeMap<u64, AcceptedSlot>,
    /// Acceptors whose promise for this ballot arrived in part (paginated by `max_size_per_msg`):
    /// the next slot to ask each of them for. Invariant: disjoint from `promises`; an acceptor
    /// counts toward the Phase 1 quorum only once its last page arrived.
    pub(super) promise_pages: BTreeMap<u64, u64>,
    /// The ballot of the leader whose `TimeoutNow` started this Phase 1 (a transfer election).
    /// The Prepares carry it, so that acceptors holding that leader's lease may promise.
    pub(super) transfer_from: Option<Ballot>,
}

// ---------------------------------------------------------------- phase2.rs

/// A value waiting for a slot.
#[derive(Debug, Clone)]
pub(super) enum Queued {
    /// Client commands batched into one slot.
    Batch(Vec<Bytes>),
    /// A reconfiguration.
    Value(Value),
}

/// The leader's proposals: values waiting for a slot and the slots in flight.
#[derive(Debug, Default)]
pub(super) struct Proposals {
    /// Values of the Phase 1 range not yet assigned (slot order, starting at `next_slot`).
    pub(super) backlog: VecDeque<Value>,
    /// Client commands (cut into slot-sized batches) and reconfigurations waiting for a slot.
    pub(super) batches: VecDeque<Queued>,
    pub(super) batch_bytes_last: u64,
    /// Acceptors that accepted each in-flight slot at this leader's ballot.
    pub(super) acks: BTreeMap<u64, BTreeSet<u64>>,
    /// Undecided reconfiguration slots → the last slot whose configuration is known while they
    /// are undecided (`slot + α`). The leader assigns no slot beyond any of them.
    pub(super) fences: BTreeMap<u64, u64>,
}

// ---------------------------------------------------------------- reads.rs

/// A read-index request waiting for a quorum of heartbeat acks.
#[derive(Debug, Clone)]
pub(super) struct PendingRead {
    pub(super) context: Bytes,
    /// 0: this node asked; otherwise the follower that forwarded it.
    pub(super) from: u64,
    /// The commit index when the read became active.
    pub(super) index: u64,
    pub(super) acks: BTreeSet<u64>,
}

/// Read-index requests: those waiting for the leadership's Phase 1 range to be decided, and
/// those waiting for a quorum of heartbeat acks. Invariant: together at most `max_pending_reads`.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// `(context, from)` of reads that arrived before the Phase 1 range was decided.
    pub(super) waiting: VecDeque<(Bytes, u64)>,
    pub(super) pending: VecDeque<PendingRead>,
    /// Per follower, the newest leader tick echoed by a heartbeat ack of this leadership: the
    /// follower promised nobody else for `election_tick` ticks from then (lease reads).
    pub(super) lease_acks: BTreeMap<u64, u64>,
}

// ---------------------------------------------------------------- transfer.rs

/// The leader's side of a transfer in progress (the target is `Paxos::transfer_target`).
#[derive(Debug, Default)]
pub(super) struct Handover {
    /// Ticks since the transfer started; it is abandoned after `election_tick` ticks.
    pub(super) elapsed_ticks: u64,
    /// `TimeoutNow` left during this leadership: acceptors may promise the target inside this
    /// leader's lease, so this leadership answers no more lease reads.
    pub(super) lease_surrendered: bool,
}
