//! Raft configuration, validated field by field.

use super::read_only::ReadOnlyOption;
use crate::error::{Error, Result};

/// Upper bound for a single entry's payload: it must fit in one frame with room for headers.
pub const ENTRY_BYTES_LIMIT: u64 = 32 << 20;

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
            election_tick: 10,
            heartbeat_tick: 1,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            max_uncommitted_bytes: 64 << 20,
            max_entry_bytes: 8 << 20,
            max_committed_bytes_per_ready: 64 << 20,
            max_committed_entries_per_ready: 65_536,
            max_pending_reads: 4096,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if self.heartbeat_tick == 0 {
            return Err(Error::config("heartbeat_tick", "must be at least 1"));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::config("election_tick", "must be greater than heartbeat_tick"));
        }
        if self.election_tick > 1_000_000 {
            return Err(Error::config("election_tick", "must be at most 1000000"));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::config("max_inflight_msgs", "must be at least 1"));
        }
        if self.max_inflight_msgs > 1 << 20 {
            return Err(Error::config("max_inflight_msgs", "must be at most 1048576"));
        }
        if self.max_size_per_msg == 0 {
            return Err(Error::config("max_size_per_msg", "must be at least 1"));
        }
        if self.max_uncommitted_bytes == 0 {
            return Err(Error::config("max_uncommitted_bytes", "must be at least 1"));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > ENTRY_BYTES_LIMIT {
            return Err(Error::config("max_entry_bytes", format!("must be in 1..={ENTRY_BYTES_LIMIT}")));
        }
        if self.max_size_per_msg > ENTRY_BYTES_LIMIT {
            return Err(Error::config("max_size_per_msg", format!("must be at most {ENTRY_BYTES_LIMIT}")));
        }
        if self.max_committed_entries_per_ready == 0 {
            return Err(Error::config("max_committed_entries_per_ready", "must be at least 1"));
        }
        if self.max_committed_bytes_per_ready == 0 {
            return Err(Error::config("max_committed_bytes_per_ready", "must be at least 1"));
        }
        if self.max_pending_reads == 0 {
            return Err(Error::config("max_pending_reads", "must be at least 1"));
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(Error::config("read_only_option", "lease-based reads require check_quorum"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
