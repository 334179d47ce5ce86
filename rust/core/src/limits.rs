//! What every protocol checks at the door before its own rules (docs/wire-format.md, "Validation
//! at the door"): the range limits on the numbers peers send, and the addressing.
//!
//! A term, ballot round, log index or slot above its limit is refused before it changes any state,
//! so that no arithmetic on them can wrap: a node at a limit stays there (it cannot campaign
//! further) rather than wrapping to 0. The limits are `i64::MAX`, so every such number also fits a
//! signed 64-bit integer wherever it is reported (Python, JSON, metrics, SQL).

use crate::error::{Error, Result};

/// The highest Raft term (and Multi-Paxos ballot round) a node accepts or campaigns at.
pub const TERM_MAX: u64 = i64::MAX as u64;

/// The highest log index (Raft) or slot (Multi-Paxos) a message may name.
pub const INDEX_MAX: u64 = i64::MAX as u64;

/// The addressing checks every message passes: it is for `id`, from another, non-zero node.
pub fn check_addressing(to: u64, from: u64, id: u64) -> Result<()> {
    if to != id {
        return Err(Error::Protocol(format!("message addressed to node {to} arrived at node {id}")));
    }
    if from == 0 || from == id {
        return Err(Error::Protocol(format!("message from node {from} refused at node {id}")));
    }
    Ok(())
}

/// The error for a message refused at the door: its type, its sender and why. Every protocol's
/// refusals read alike, so logs and tests can match them the same way.
pub fn refusal(msg_type: impl std::fmt::Debug, from: u64, reason: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("{msg_type:?} from {from} refused: {reason}"))
}

/// [`refusal`] of a message `m` (any protocol's: it reads `m.msg_type` and `m.from`).
#[macro_export]
macro_rules! refuse {
    ($m:expr, $reason:expr $(,)?) => {
        $crate::limits::refusal($m.msg_type, $m.from, $reason)
    };
}

/// The next term (or round) after `term`, or `None` when it would pass [`TERM_MAX`].
pub fn next_term(term: u64) -> Option<u64> {
    term.checked_add(1).filter(|next| *next <= TERM_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_term_stops_at_the_limit_and_never_wraps() {
        assert_eq!(next_term(0), Some(1));
        assert_eq!(next_term(TERM_MAX - 1), Some(TERM_MAX));
        assert_eq!(next_term(TERM_MAX), None);
        assert_eq!(next_term(u64::MAX), None);
    }
}
