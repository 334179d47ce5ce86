//! Quorum arithmetic: the committed index and the outcome of a vote for a majority configuration
//! and for a joint configuration (a majority of both halves).

use std::collections::BTreeSet;

/// The outcome of a vote so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// Neither a quorum of grants nor a quorum of rejections yet.
    Pending,
    /// A quorum can no longer be reached.
    Lost,
    /// A quorum granted.
    Won,
}

/// A set of voters deciding by simple majority. Invariant: ids are unique (a set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MajorityConfig {
    voters: BTreeSet<u64>,
}

/// Configurations up to this size compute their committed index without allocating.
const SMALL_CONFIG_MAX: usize = 9;

impl MajorityConfig {
    pub fn new(voters: impl IntoIterator<Item = u64>) -> Self {
        MajorityConfig { voters: voters.into_iter().collect() }
    }

    pub fn len(&self) -> usize {
        self.voters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.voters.iter().copied()
    }

    pub fn to_vec(&self) -> Vec<u64> {
        self.ids().collect()
    }

    pub fn insert(&mut self, id: u64) -> bool {
        self.voters.insert(id)
    }

    pub fn remove(&mut self, id: u64) -> bool {
        self.voters.remove(&id)
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The largest index acknowledged by a majority. `acked` gives a voter's acknowledged index
    /// (`None` counts as 0). An empty configuration returns `u64::MAX`, so that a joint
    /// configuration with an empty outgoing half is decided by its incoming half alone.
    pub fn committed_index(&self, mut acked: impl FnMut(u64) -> Option<u64>) -> u64 {
        let n = self.voters.len();
        if n == 0 {
            return u64::MAX;
        }
        let mut small = [0u64; SMALL_CONFIG_MAX];
        let mut large = Vec::new();
        let indexes: &mut [u64] = if n <= SMALL_CONFIG_MAX {
            &mut small[..n]
        } else {
            large.resize(n, 0);
            &mut large[..]
        };
        for (slot, id) in indexes.iter_mut().zip(self.voters.iter()) {
            *slot = acked(*id).unwrap_or(0);
        }
        indexes.sort_unstable();
        // Sorted ascending, the element at n - quorum is acknowledged by exactly `quorum` voters
        // (itself and every larger one).
        indexes[n - self.quorum()]
    }

    /// The result of a vote. `vote` gives a voter's answer (`None`: not yet heard).
    pub fn vote_result(&self, mut vote: impl FnMut(u64) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0usize, 0usize);
        for id in &self.voters {
            match vote(*id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.quorum();
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// Two majority configurations that must both agree (Raft §6 joint consensus). When `outgoing`
/// is empty this is exactly `incoming`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JointConfig {
    pub incoming: MajorityConfig,
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    pub fn new(incoming: MajorityConfig, outgoing: MajorityConfig) -> Self {
        JointConfig { incoming, outgoing }
    }

    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// Every voter of either half, each once, in ascending order.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = self.incoming.ids().collect();
        ids.extend(self.outgoing.ids());
        ids.into_iter().collect()
    }

    pub fn committed_index(&self, mut acked: impl FnMut(u64) -> Option<u64>) -> u64 {
        let incoming = self.incoming.committed_index(&mut acked);
        let outgoing = self.outgoing.committed_index(&mut acked);
        incoming.min(outgoing)
    }

    pub fn vote_result(&self, mut vote: impl FnMut(u64) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(&mut vote);
        let outgoing = self.outgoing.vote_result(&mut vote);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// (voters, acknowledged indexes, expected committed index)
    type CommitCase<'a> = (&'a [u64], &'a [(u64, u64)], u64);
    /// (voters, votes, expected result)
    type VoteCase<'a> = (&'a [u64], &'a [(u64, bool)], VoteResult);

    fn acks(pairs: &[(u64, u64)]) -> HashMap<u64, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn majority_committed_index_table() {
        // (voters, acknowledged indexes, expected committed index)
        let cases: &[CommitCase] = &[
            (&[1], &[(1, 5)], 5),
            (&[1], &[], 0),
            (&[1, 2], &[(1, 5), (2, 3)], 3),
            (&[1, 2, 3], &[(1, 5), (2, 3)], 3),
            (&[1, 2, 3], &[(1, 5)], 0),
            (&[1, 2, 3], &[(1, 5), (2, 5), (3, 1)], 5),
            (&[1, 2, 3, 4], &[(1, 9), (2, 8), (3, 7), (4, 1)], 7),
            (&[1, 2, 3, 4, 5], &[(1, 9), (2, 8), (3, 7), (4, 1), (5, 2)], 7),
            (&[1, 2, 3, 4, 5], &[(1, 9), (2, 9)], 0),
            (&[1, 2, 3, 4, 5, 6, 7], &[(1, 7), (2, 6), (3, 5), (4, 4), (5, 3), (6, 2), (7, 1)], 4),
            (&[1, 2, 3], &[(9, 100), (1, 4), (2, 4)], 4), // acks of non-voters do not count
        ];
        for (voters, acked, want) in cases {
            let cfg = MajorityConfig::new(voters.iter().copied());
            let acked = acks(acked);
            assert_eq!(cfg.committed_index(|id| acked.get(&id).copied()), *want, "{voters:?} {acked:?}");
        }
    }

    #[test]
    fn large_config_committed_index_allocates_and_agrees() {
        let cfg = MajorityConfig::new(1..=11);
        // Voter i acknowledged i: the 6th largest of 1..=11 is 6.
        assert_eq!(cfg.committed_index(Some), 6);
    }

    #[test]
    fn empty_majority_is_neutral_in_joint_config() {
        assert_eq!(MajorityConfig::default().committed_index(|_| Some(3)), u64::MAX);
        let joint = JointConfig::new(MajorityConfig::new([1, 2, 3]), MajorityConfig::default());
        assert_eq!(joint.committed_index(|id| Some(id * 10)), 20);
    }

    #[test]
    fn joint_committed_index_is_min_of_both_halves() {
        let joint = JointConfig::new(MajorityConfig::new([1, 2, 3]), MajorityConfig::new([3, 4, 5]));
        let acked = acks(&[(1, 10), (2, 10), (3, 10), (4, 2), (5, 1)]);
        assert_eq!(joint.committed_index(|id| acked.get(&id).copied()), 2);
    }

    #[test]
    fn majority_vote_result_table() {
        // (voters, votes, expected)
        let cases: &[VoteCase] = &[
            (&[], &[], VoteResult::Won),
            (&[1], &[], VoteResult::Pending),
            (&[1], &[(1, true)], VoteResult::Won),
            (&[1], &[(1, false)], VoteResult::Lost),
            (&[1, 2, 3], &[(1, true)], VoteResult::Pending),
            (&[1, 2, 3], &[(1, true), (2, true)], VoteResult::Won),
            (&[1, 2, 3], &[(1, true), (2, false)], VoteResult::Pending),
            (&[1, 2, 3], &[(1, false), (2, false)], VoteResult::Lost),
            (&[1, 2, 3, 4], &[(1, true), (2, true)], VoteResult::Pending),
            (&[1, 2, 3, 4], &[(1, true), (2, false), (3, false)], VoteResult::Lost),
            (&[1, 2, 3, 4, 5], &[(1, true), (2, true), (3, true)], VoteResult::Won),
            (&[1, 2, 3], &[(7, true), (8, true)], VoteResult::Pending), // non-voters ignored
        ];
        for (voters, votes, want) in cases {
            let cfg = MajorityConfig::new(voters.iter().copied());
            let votes: HashMap<u64, bool> = votes.iter().copied().collect();
            assert_eq!(cfg.vote_result(|id| votes.get(&id).copied()), *want, "{voters:?} {votes:?}");
        }
    }

    #[test]
    fn joint_vote_needs_both_halves() {
        let joint = JointConfig::new(MajorityConfig::new([1, 2, 3]), MajorityConfig::new([4, 5, 6]));
        let won_incoming: HashMap<u64, bool> = [(1, true), (2, true)].into_iter().collect();
        assert_eq!(joint.vote_result(|id| won_incoming.get(&id).copied()), VoteResult::Pending);
        let both: HashMap<u64, bool> = [(1, true), (2, true), (4, true), (5, true)].into_iter().collect();
        assert_eq!(joint.vote_result(|id| both.get(&id).copied()), VoteResult::Won);
        let lost_outgoing: HashMap<u64, bool> = [(1, true), (2, true), (4, false), (5, false)].into_iter().collect();
        assert_eq!(joint.vote_result(|id| lost_outgoing.get(&id).copied()), VoteResult::Lost);
    }
}
