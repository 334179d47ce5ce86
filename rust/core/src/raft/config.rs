//! Raft configuration, validated field by field.

use super::read_only::ReadOnlyOption;
use crate::common_config::{at_least_one, at_most, defaults};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout is
    /// drawn from `[election_tick, 2 * election_tick)`.
    pub election_tick: u64,
    /// Ticks between leader heartbeats. Invariant: `heartbeat_tick < election_tick`.
    pub heartbeat_tick: u64,
    /// Run a pre-election before bumping the term (Raft thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout, and
    /// followers ignore vote requests while they hear from a leader (the vote lease).
    pub check_quorum: bool,
    /// Payload bytes per append message (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// Appends in flight per follower in replicate state.
    pub max_inflight_msgs: usize,
    /// Payload bytes in flight per follower (0: unlimited).
    pub max_inflight_bytes: u64,
    /// Payload bytes of the leader's uncommitted entries before proposals are dropped.
    pub max_uncommitted_bytes: u64,
    /// The largest payload a single proposal may have.
    pub max_entry_bytes: u64,
    /// Payload bytes of committed entries handed out per `Ready` (at least one entry).
    pub max_committed_bytes_per_ready: u64,
    /// Committed entries handed out per `Ready`.
    pub max_committed_entries_per_ready: usize,
    /// Pending ReadIndex requests held by the leader.
    pub max_pending_reads: usize,
    pub read_only_option: ReadOnlyOption,
    /// Followers refuse proposals (`NotLeader`) instead of forwarding them.
    pub disable_proposal_forwarding: bool,
    /// Seeds the election-timeout PRNG together with the node id.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            election_tick: defaults::ELECTION_TICK,
            heartbeat_tick: defaults::HEARTBEAT_TICK,
            pre_vote: true,
            check_quorum: defaults::CHECK_QUORUM,
            max_size_per_msg: defaults::MAX_SIZE_PER_MSG,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            max_uncommitted_bytes: defaults::MAX_UNCOMMITTED_BYTES,
            max_entry_bytes: defaults::MAX_ENTRY_BYTES,
            max_committed_bytes_per_ready: defaults::MAX_COMMITTED_BYTES_PER_READY,
            max_committed_entries_per_ready: 65_536,
            max_pending_reads: defaults::MAX_PENDING_READS,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let common = crate::common_settings!(self);
        common.check_ticks()?;
        at_least_one("max_inflight_msgs", self.max_inflight_msgs as u64)?;
        at_most("max_inflight_msgs", self.max_inflight_msgs as u64, 1 << 20)?;
        at_least_one("max_committed_entries_per_ready", self.max_committed_entries_per_ready as u64)?;
        common.check_sizes_and_reads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases: Vec<(Config, &str)> = vec![
            (Config { heartbeat_tick: 0, ..Default::default() }, "heartbeat_tick"),
            (Config { election_tick: 1, ..Default::default() }, "election_tick"),
            (Config { max_inflight_msgs: 0, ..Default::default() }, "max_inflight_msgs"),
            (Config { max_entry_bytes: 0, ..Default::default() }, "max_entry_bytes"),
            (
                Config { read_only_option: ReadOnlyOption::LeaseBased, check_quorum: false, ..Default::default() },
                "read_only_option",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a config error on {field}, got {other:?}"),
            }
        }
    }
}
