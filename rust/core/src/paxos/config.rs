//! Multi-Paxos configuration, validated field by field.

pub use crate::common_config::ReadOnlyOption;
use crate::common_config::{defaults, in_range, ENTRY_BYTES_LIMIT};
use crate::error::Result;

/// The largest `max_inflight_slots` (and so the largest α of a reconfiguration record).
pub const MAX_INFLIGHT_SLOTS: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ticks without hearing from a leader before a follower starts Phase 1; the actual timeout is
    /// drawn from `[election_tick, 2 * election_tick)`.
    pub election_tick: u64,
    /// Ticks between leader heartbeats. Invariant: `heartbeat_tick < election_tick`.
    pub heartbeat_tick: u64,
    /// Slots a leader may have between its commit index and its highest slot in flight; also the
    /// α of the reconfiguration rule.
    pub max_inflight_slots: u64,
    /// Client commands batched into one slot value.
    pub max_batch_commands: usize,
    /// Payload bytes batched into one slot value (a single larger command still gets a slot).
    pub max_batch_bytes: u64,
    /// Payload bytes of slots per Accept, CatchUp or Promise batch (at least one slot is sent).
    pub max_size_per_msg: u64,
    /// Payload bytes of the leader's queued and undecided commands before proposals are dropped.
    pub max_uncommitted_bytes: u64,
    /// The largest payload a single command may have.
    pub max_entry_bytes: u64,
    /// Payload bytes of decided slots handed out per `Ready` (at least one slot).
    pub max_committed_bytes_per_ready: u64,
    /// Pending read-index requests held by the leader.
    pub max_pending_reads: usize,
    pub read_only_option: ReadOnlyOption,
    /// A leader that has not heard a quorum within an election timeout steps down.
    pub check_quorum: bool,
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
            max_inflight_slots: 256,
            max_batch_commands: 1024,
            max_batch_bytes: 1 << 20,
            max_size_per_msg: defaults::MAX_SIZE_PER_MSG,
            max_uncommitted_bytes: defaults::MAX_UNCOMMITTED_BYTES,
            max_entry_bytes: defaults::MAX_ENTRY_BYTES,
            max_committed_bytes_per_ready: defaults::MAX_COMMITTED_BYTES_PER_READY,
            max_pending_reads: defaults::MAX_PENDING_READS,
            read_only_option: ReadOnlyOption::Safe,
            check_quorum: defaults::CHECK_QUORUM,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let common = crate::common_settings!(self);
        common.check_ticks()?;
        in_range("max_inflight_slots", self.max_inflight_slots, MAX_INFLIGHT_SLOTS)?;
        in_range("max_batch_commands", self.max_batch_commands as u64, 1 << 20)?;
        in_range("max_batch_bytes", self.max_batch_bytes, ENTRY_BYTES_LIMIT)?;
        common.check_sizes_and_reads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn invalid_fields_are_named() {
        Config::default().validate().unwrap();
        let cases: Vec<(Config, &str)> = vec![
            (Config { heartbeat_tick: 0, ..Default::default() }, "heartbeat_tick"),
            (Config { election_tick: 1, ..Default::default() }, "election_tick"),
            (Config { max_inflight_slots: 0, ..Default::default() }, "max_inflight_slots"),
            (Config { max_batch_commands: 0, ..Default::default() }, "max_batch_commands"),
            (Config { max_batch_bytes: 0, ..Default::default() }, "max_batch_bytes"),
            (Config { max_size_per_msg: 0, ..Default::default() }, "max_size_per_msg"),
            (Config { max_entry_bytes: 0, ..Default::default() }, "max_entry_bytes"),
            (Config { max_pending_reads: 0, ..Default::default() }, "max_pending_reads"),
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
