//! Membership changes. A change is computed as a new configuration from the current one; the live
//! configuration is only replaced once the change's entry is applied (Raft thesis §4.3 and §6).

use std::collections::BTreeSet;

use super::message::{ConfChange, ConfState};
use super::progress::TrackerConfig;
use super::quorum::{JointConfig, MajorityConfig};

/// Why a change cannot be applied to the current configuration.
pub type ChangeError = String;

/// Computes the configuration that results from `change`. A change that alters at most one voter
/// is applied in one step; one that alters more enters a joint configuration (old and new voters
/// both decide) that is left automatically once it commits. An empty change leaves a joint
/// configuration.
pub fn apply_change(current: &TrackerConfig, change: &ConfChange) -> Result<TrackerConfig, ChangeError> {
    if change.is_empty() {
        return leave_joint(current);
    }
    if current.is_joint() {
        return Err("a joint configuration is in force; it must be left before another change".into());
    }
    for id in
        change.add_voters.iter().chain(&change.remove_voters).chain(&change.add_learners).chain(&change.remove_learners)
    {
        if *id == 0 {
            return Err("node id 0 is reserved".into());
        }
    }
    let old_voters: BTreeSet<u64> = current.voters.incoming.ids().collect();
    let mut voters = old_voters.clone();
    let mut learners = current.learners.clone();

    for id in &change.remove_voters {
        if !voters.remove(id) {
            return Err(format!("node {id} is not a voter"));
        }
    }
    for id in &change.remove_learners {
        if !learners.remove(id) {
            return Err(format!("node {id} is not a learner"));
        }
    }
    for id in &change.add_voters {
        if change.remove_voters.contains(id) {
            return Err(format!("node {id} is both added and removed as a voter"));
        }
        // Adding a learner as a voter promotes it.
        learners.remove(id);
        voters.insert(*id);
    }
    for id in &change.add_learners {
        if voters.contains(id) {
            return Err(format!("node {id} is a voter; demote it with remove_voters and add_learners"));
        }
        learners.insert(*id);
    }
    if voters.is_empty() {
        return Err("the change would remove every voter".into());
    }

    let changed_voters = old_voters.symmetric_difference(&voters).count();
    if changed_voters <= 1 {
        return Ok(TrackerConfig {
            voters: JointConfig::new(MajorityConfig::new(voters), MajorityConfig::default()),
            learners,
            learners_next: BTreeSet::new(),
            auto_leave: false,
        });
    }
    // Joint consensus: a demoted voter stays a voter of the outgoing half and becomes a learner
    // only when the joint configuration is left.
    let mut learners_next = BTreeSet::new();
    for id in &change.add_learners {
        if old_voters.contains(id) {
            learners.remove(id);
            learners_next.insert(*id);
        }
    }
    Ok(TrackerConfig {
        voters: JointConfig::new(MajorityConfig::new(voters), MajorityConfig::new(old_voters)),
        learners,
        learners_next,
        auto_leave: true,
    })
}

fn leave_joint(current: &TrackerConfig) -> Result<TrackerConfig, ChangeError> {
    if !current.is_joint() {
        return Err("not in a joint configuration".into());
    }
    let mut learners = current.learners.clone();
    learners.extend(current.learners_next.iter().copied());
    Ok(TrackerConfig {
        voters: JointConfig::new(current.voters.incoming.clone(), MajorityConfig::default()),
        learners,
        learners_next: BTreeSet::new(),
        auto_leave: false,
    })
}

pub fn to_conf_state(config: &TrackerConfig) -> ConfState {
    ConfState {
        voters: config.voters.incoming.to_vec(),
        learners: config.learners.iter().copied().collect(),
        voters_outgoing: config.voters.outgoing.to_vec(),
        learners_next: config.learners_next.iter().copied().collect(),
        auto_leave: config.auto_leave,
    }
}

pub fn from_conf_state(cs: &ConfState) -> TrackerConfig {
    TrackerConfig {
        voters: JointConfig::new(
            MajorityConfig::new(cs.voters.iter().copied()),
            MajorityConfig::new(cs.voters_outgoing.iter().copied()),
        ),
        learners: cs.learners.iter().copied().collect(),
        learners_next: cs.learners_next.iter().copied().collect(),
        auto_leave: cs.auto_leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(voters: &[u64], learners: &[u64]) -> TrackerConfig {
        from_conf_state(&ConfState { voters: voters.to_vec(), learners: learners.to_vec(), ..Default::default() })
    }

    fn cc(add_voters: &[u64], remove_voters: &[u64], add_learners: &[u64], remove_learners: &[u64]) -> ConfChange {
        ConfChange {
            add_voters: add_voters.to_vec(),
            remove_voters: remove_voters.to_vec(),
            add_learners: add_learners.to_vec(),
            remove_learners: remove_learners.to_vec(),
        }
    }

    #[test]
    fn single_voter_change_is_applied_in_one_step() {
        let next = apply_change(&config(&[1, 2, 3], &[]), &cc(&[4], &[], &[], &[])).unwrap();
        assert!(!next.is_joint());
        assert_eq!(next.voters.incoming.to_vec(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn two_voter_change_enters_joint_with_auto_leave() {
        let next = apply_change(&config(&[1, 2, 3], &[]), &cc(&[4, 5], &[1], &[], &[])).unwrap();
        assert!(next.is_joint());
        assert!(next.auto_leave);
        assert_eq!(next.voters.incoming.to_vec(), vec![2, 3, 4, 5]);
        assert_eq!(next.voters.outgoing.to_vec(), vec![1, 2, 3]);
        let left = apply_change(&next, &ConfChange::default()).unwrap();
        assert!(!left.is_joint());
        assert_eq!(left.voters.incoming.to_vec(), vec![2, 3, 4, 5]);
    }

    #[test]
    fn demotion_in_joint_keeps_outgoing_voter_until_leave() {
        let next = apply_change(&config(&[1, 2, 3], &[]), &cc(&[4, 5], &[3], &[3], &[])).unwrap();
        assert!(next.learners_next.contains(&3));
        assert!(!next.learners.contains(&3));
        let left = apply_change(&next, &ConfChange::default()).unwrap();
        assert!(left.learners.contains(&3));
    }

    #[test]
    fn learner_promotion_and_simple_demotion() {
        let promoted = apply_change(&config(&[1, 2, 3], &[4]), &cc(&[4], &[], &[], &[])).unwrap();
        assert!(promoted.learners.is_empty());
        assert!(promoted.voters.incoming.contains(4));
        let demoted = apply_change(&promoted, &cc(&[], &[4], &[4], &[])).unwrap();
        assert!(!demoted.is_joint());
        assert!(demoted.learners.contains(&4));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let base = config(&[1, 2, 3], &[4]);
        assert!(apply_change(&base, &cc(&[], &[9], &[], &[])).is_err(), "remove a non-voter");
        assert!(apply_change(&base, &cc(&[], &[], &[1], &[])).is_err(), "learner that is a voter");
        assert!(apply_change(&base, &cc(&[], &[1, 2, 3], &[], &[])).is_err(), "remove all voters");
        assert!(apply_change(&base, &ConfChange::default()).is_err(), "leave when not joint");
        let joint = apply_change(&base, &cc(&[5, 6], &[], &[], &[])).unwrap();
        assert!(apply_change(&joint, &cc(&[7], &[], &[], &[])).is_err(), "change while joint");
    }
}
