//! The protocol contract (docs/design.md §3): what every protocol's `RawNode` offers, so that the
//! runtime, the simulator, the benchmarks and the bindings drive any protocol the same way.
//!
//! ```text
//! rd = node.ready()
//! send(rd.messages())              may leave at once, before or while persisting
//! persist(rd)                      durable first (fsync when rd.must_sync())
//! send(rd.persisted_messages())    only now: they promise what was just persisted
//! apply(rd's snapshot, then its committed entries)
//! node.advance(rd.mark())
//! ```
//!
//! A protocol supplies its own `Ready` (what it persists differs: a log suffix, accepted slots),
//! its own `Status` and messages; what every protocol does alike — numbering the Ready batches,
//! refusing a second Ready before the first is advanced, deciding which messages may leave before
//! the disk write, checking a frame's sender — is written here once.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::role::Role;

/// An answered read-index request: the caller may serve the read once it applied `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub context: Bytes,
}

/// `(destination, encoded frame)`.
pub type Frame = (u64, Bytes);

/// What every protocol's Ready tells its caller, whatever it persists.
pub trait ReadyView {
    /// What `advance` needs of this Ready (kept apart so callers may move the vectors out first).
    type Mark;

    fn number(&self) -> u64;
    /// Frames that may be sent at once, before or while this Ready is persisted.
    fn messages(&self) -> &[Frame];
    /// Frames that may be sent only after this Ready is durable.
    fn persisted_messages(&self) -> &[Frame];
    /// Whether persisting this Ready needs an fsync.
    fn must_sync(&self) -> bool;
    /// The index the application stands at once it applied this Ready (the last committed index
    /// it covers, or its snapshot's); 0 when it applies nothing. Indexes up to it that carried no
    /// command (a Paxos no-op slot) are applied all the same.
    fn applied_through(&self) -> u64;
    fn read_states(&self) -> &[ReadState];
    fn mark(&self) -> Self::Mark;
}

/// Declares a protocol's `Ready`: the fields every protocol's Ready has (its number, role and
/// leader, the two message lists, the read states, `must_sync`, `applied_through`) written here
/// once, followed by the protocol's own (what it persists and applies), with `ReadyView`
/// implemented over them. `mark` builds the protocol's `ReadyMark` from `self`.
#[macro_export]
macro_rules! protocol_ready {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
        fn mark(&$this:ident) -> $mark:ty $body:block
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            /// Identifies this Ready; `advance` must be given the outstanding one.
            pub number: u64,
            pub role: Option<$crate::role::Role>,
            pub leader: u64,
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Encoded frames with their destination that may be sent at once, before or while
            /// this Ready is persisted (a leader's, under a durable term or promise).
            pub messages: Vec<$crate::contract::Frame>,
            /// Encoded frames to send only after this Ready is persisted.
            pub persisted_messages: Vec<$crate::contract::Frame>,
            pub read_states: Vec<$crate::contract::ReadState>,
            /// Whether persisting needs an fsync.
            pub must_sync: bool,
            /// The index the application stands at once this Ready is applied; 0 when it applies
            /// nothing.
            pub applied_through: u64,
        }

        impl $crate::contract::ReadyView for $name {
            type Mark = $mark;

            fn number(&self) -> u64 {
                self.number
            }
            fn messages(&self) -> &[$crate::contract::Frame] {
                &self.messages
            }
            fn persisted_messages(&self) -> &[$crate::contract::Frame] {
                &self.persisted_messages
            }
            fn must_sync(&self) -> bool {
                self.must_sync
            }
            fn applied_through(&self) -> u64 {
                self.applied_through
            }
            fn read_states(&self) -> &[$crate::contract::ReadState] {
                &self.read_states
            }
            fn mark(&$this) -> $mark $body
        }

        impl $name {
            /// What `advance` needs (also `ReadyView::mark`).
            pub fn mark(&self) -> $mark {
                $crate::contract::ReadyView::mark(self)
            }
        }
    };
}

/// The one interface every protocol's `RawNode` implements.
pub trait ProtocolNode {
    type Message;
    type Ready: ReadyView<Mark = Self::Mark>;
    type Mark;
    type Status;

    fn id(&self) -> u64;
    fn role(&self) -> Role;
    /// The leader this node knows of (0: unknown).
    fn leader(&self) -> u64;
    /// The term (Raft) or ballot round (Paxos) the node is in.
    fn term(&self) -> u64;
    fn commit_index(&self) -> u64;
    fn applied_index(&self) -> u64;
    /// The highest index the node holds (0 when none).
    fn last_index(&self) -> u64;
    /// Whether the term or round reached `limits::TERM_MAX`: this node can no longer campaign.
    fn term_exhausted(&self) -> bool;
    fn status(&self) -> Self::Status;

    fn tick(&mut self);
    /// Starts an election now, as an election timeout would.
    fn campaign(&mut self);
    /// Proposes one command; returns the index it will occupy (0 when forwarded).
    fn propose(&mut self, data: Bytes) -> Result<u64>;
    fn propose_many(&mut self, batch: Vec<Bytes>) -> Result<u64>;
    /// A linearizable read barrier, answered in a later Ready's `read_states`.
    fn read_index(&mut self, context: Bytes) -> Result<()>;
    fn transfer_leader(&mut self, to: u64) -> Result<()>;
    fn report_unreachable(&mut self, to: u64);
    /// The outcome of a snapshot sent to `to`.
    fn report_snapshot(&mut self, to: u64, ok: bool);

    /// Decodes one frame (`Error::Decode` for bytes that are not a frame).
    fn decode(frame: &Bytes) -> Result<Self::Message>;
    /// The node a decoded message claims to come from.
    fn sender(message: &Self::Message) -> u64;
    /// Steps a decoded message. One that fails validation (docs/wire-format.md, "Validation at
    /// the door") is refused with `Error::Protocol` and changes nothing.
    fn step_message(&mut self, message: Self::Message) -> Result<()>;

    /// Decodes and steps one frame that arrived on a connection authenticated as `sender`: a
    /// frame whose `from` names another node is refused (`Error::Protocol`). `None` skips that
    /// check.
    fn step_from(&mut self, frame: &Bytes, sender: Option<u64>) -> Result<()> {
        let message = Self::decode(frame)?;
        if let Some(sender) = sender {
            let from = Self::sender(&message);
            if from != sender {
                return Err(Error::Protocol(format!(
                    "frame from node {from} arrived on the connection of node {sender}"
                )));
            }
        }
        self.step_message(message)
    }

    /// Decodes and steps one frame from a peer.
    fn step(&mut self, frame: &Bytes) -> Result<()> {
        self.step_from(frame, None)
    }

    fn has_ready(&self) -> bool;
    /// The next batch of work; `Error::Protocol` while the previous one is not advanced.
    fn ready(&mut self) -> Result<Self::Ready>;
    /// The caller persisted, sent and applied the Ready of `mark`.
    fn advance(&mut self, mark: Self::Mark) -> Result<()>;
}

/// The bookkeeping every `RawNode` does around its Ready batches: their numbers, the one that is
/// outstanding, and what the previous one reported (hard state `H`, role, leader), so that a Ready
/// is handed out only when something changed and reports the hard state only when it did.
///
/// Because a Ready is handed out only after the previous one was advanced (persisted), the hard
/// state of the previous Ready is durable: `durable()`.
#[derive(Debug, Clone)]
pub struct ReadyBook<H> {
    number: u64,
    outstanding: Option<u64>,
    durable: H,
    role: Role,
    leader: u64,
}

impl<H: Clone + PartialEq> ReadyBook<H> {
    /// Starts from the state a node was built with (its hard state is what storage holds).
    pub fn new(hard_state: H, role: Role, leader: u64) -> Self {
        ReadyBook { number: 0, outstanding: None, durable: hard_state, role, leader }
    }

    /// Whether a Ready is handed out and not yet advanced.
    pub fn outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    /// The hard state of the last Ready handed out: durable once that Ready was advanced.
    pub fn durable(&self) -> &H {
        &self.durable
    }

    /// Whether the hard state, role or leader differ from what the last Ready reported.
    pub fn changed(&self, hard_state: &H, role: Role, leader: u64) -> bool {
        *hard_state != self.durable || role != self.role || leader != self.leader
    }

    /// Refuses a second Ready while one is outstanding.
    pub fn check_idle(&self) -> Result<()> {
        match self.outstanding {
            Some(_) => Err(Error::Protocol("the previous Ready was not advanced".into())),
            None => Ok(()),
        }
    }

    /// Hands out the next Ready: records what it reports and returns its number and its hard
    /// state when that changed (`None` otherwise).
    pub fn hand_out(&mut self, hard_state: H, role: Role, leader: u64) -> (u64, Option<H>) {
        debug_assert!(self.outstanding.is_none(), "a Ready handed out while another is outstanding");
        self.number += 1;
        self.outstanding = Some(self.number);
        self.role = role;
        self.leader = leader;
        let changed = hard_state != self.durable;
        let reported = changed.then(|| hard_state.clone());
        self.durable = hard_state;
        (self.number, reported)
    }

    /// The Ready numbered `number` was advanced; it must be the outstanding one.
    pub fn finish(&mut self, number: u64) -> Result<()> {
        if self.outstanding != Some(number) {
            return Err(Error::Protocol(format!(
                "advance of Ready {number} but the outstanding Ready is {:?}",
                self.outstanding
            )));
        }
        self.outstanding = None;
        Ok(())
    }
}

/// Splits a Ready's frames into those that may leave at once and those that must wait for the
/// disk. A leader may send while its own write is in flight (Raft thesis §10.2.1; the same holds
/// for a Paxos leader's accepts): its frames carry nothing that depends on its own disk, and the
/// core counts the leader's own entries toward a commit only after `advance`. That holds only
/// when the term or ballot it sends under is already durable (`sends_under_durable_state`) and no
/// snapshot is being installed; everything else (votes, promises, acknowledgements) waits.
pub fn split_frames(
    role: Role,
    sends_under_durable_state: bool,
    installs_snapshot: bool,
    frames: Vec<Frame>,
) -> (Vec<Frame>, Vec<Frame>) {
    if role == Role::Leader && sends_under_durable_state && !installs_snapshot {
        (frames, Vec::new())
    } else {
        (Vec::new(), frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_ready_waits_for_the_first_to_be_advanced() {
        let mut book = ReadyBook::new(0u64, Role::Follower, 0);
        book.check_idle().unwrap();
        let (number, _) = book.hand_out(0, Role::Follower, 0);
        assert!(book.check_idle().is_err());
        assert!(book.finish(number + 1).is_err(), "only the outstanding Ready may be advanced");
        book.finish(number).unwrap();
        book.check_idle().unwrap();
        assert!(book.finish(number).is_err(), "a Ready is advanced once");
    }

    #[test]
    fn the_hard_state_is_reported_only_when_it_changed() {
        let mut book = ReadyBook::new(3u64, Role::Follower, 0);
        assert!(!book.changed(&3, Role::Follower, 0));
        assert!(book.changed(&3, Role::Follower, 2), "a new leader is news");
        let (n, reported) = book.hand_out(3, Role::Follower, 2);
        assert_eq!(reported, None);
        book.finish(n).unwrap();
        let (_, reported) = book.hand_out(4, Role::Candidate, 0);
        assert_eq!(reported, Some(4));
        assert_eq!(*book.durable(), 4);
    }

    #[test]
    fn only_a_leader_under_a_durable_term_sends_before_persisting() {
        let frames = vec![(2, Bytes::from_static(b"x"))];
        let (now, later) = split_frames(Role::Leader, true, false, frames.clone());
        assert_eq!((now.len(), later.len()), (1, 0));
        for (role, durable, snapshot) in [
            (Role::Leader, false, false),
            (Role::Leader, true, true),
            (Role::Candidate, true, false),
            (Role::Follower, true, false),
        ] {
            let (now, later) = split_frames(role, durable, snapshot, frames.clone());
            assert_eq!((now.len(), later.len()), (0, 1), "{role:?} durable={durable} snapshot={snapshot}");
        }
    }
}
