//! Linearizable reads (Raft thesis §6.4): the ReadIndex protocol's pending requests, each waiting
//! for a quorum of heartbeat acknowledgements that carry its context.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

pub use crate::contract::ReadState;

pub use crate::common_config::ReadOnlyOption;

#[derive(Debug, Clone)]
pub struct ReadIndexStatus {
    /// Who asked (the leader itself or a follower that forwarded the request).
    pub from: u64,
    pub context: Bytes,
    /// The commit index when the request arrived: the read is linearizable at this index.
    pub index: u64,
    pub acks: BTreeSet<u64>,
}

/// Pending ReadIndex requests in arrival order. Invariant: `queue` and `pending` hold the same
/// contexts; their length is at most `pending_max`.
#[derive(Debug, Clone, Default)]
pub struct ReadOnly {
    pending: HashMap<Bytes, ReadIndexStatus>,
    queue: VecDeque<Bytes>,
    pending_max: usize,
}

impl ReadOnly {
    pub fn new(pending_max: usize) -> Self {
        ReadOnly { pending: HashMap::new(), queue: VecDeque::new(), pending_max }
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.pending_max
    }

    /// Registers a request. A context already pending is not added again: the first request's
    /// answer serves both, which is still linearizable since it was registered earlier.
    pub fn add_request(&mut self, index: u64, from: u64, context: Bytes) -> bool {
        if self.pending.contains_key(&context) || self.is_full() {
            return false;
        }
        self.queue.push_back(context.clone());
        self.pending.insert(context.clone(), ReadIndexStatus { from, context, index, acks: BTreeSet::new() });
        true
    }

    /// Records a heartbeat acknowledgement; returns the acknowledgers so far.
    pub fn recv_ack(&mut self, id: u64, context: &[u8]) -> Option<&BTreeSet<u64>> {
        let status = self.pending.get_mut(context)?;
        status.acks.insert(id);
        Some(&status.acks)
    }

    /// Removes and returns every request up to and including `context` (a quorum acknowledging a
    /// later heartbeat also confirms leadership for the earlier requests).
    pub fn advance(&mut self, context: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(position) = self.queue.iter().position(|c| c.as_ref() == context) else {
            return Vec::new();
        };
        self.queue.drain(..=position).filter_map(|c| self.pending.remove(&c)).collect()
    }

    pub fn last_pending_context(&self) -> Option<Bytes> {
        self.queue.back().cloned()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_context_is_registered_once() {
        let mut ro = ReadOnly::new(8);
        assert!(ro.add_request(5, 1, Bytes::from_static(b"a")));
        assert!(!ro.add_request(6, 1, Bytes::from_static(b"a")));
        assert_eq!(ro.len(), 1);
    }

    #[test]
    fn advance_releases_all_earlier_requests() {
        let mut ro = ReadOnly::new(8);
        ro.add_request(5, 1, Bytes::from_static(b"a"));
        ro.add_request(6, 2, Bytes::from_static(b"b"));
        ro.add_request(7, 1, Bytes::from_static(b"c"));
        let done = ro.advance(b"b");
        assert_eq!(done.iter().map(|s| s.index).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(ro.len(), 1);
        assert!(ro.advance(b"zz").is_empty());
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut ro = ReadOnly::new(2);
        assert!(ro.add_request(1, 1, Bytes::from_static(b"a")));
        assert!(ro.add_request(1, 1, Bytes::from_static(b"b")));
        assert!(!ro.add_request(1, 1, Bytes::from_static(b"c")));
    }
}
