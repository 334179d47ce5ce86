//! Raft configuration, validated field by field.

use crate::common_config::{at_least_one, at_most};
use crate::error::Result;

crate::protocol_config! {
    /// Raft's settings: the shared ones and these.
    pub struct Config {
        /// Run a pre-election before bumping the term (Raft thesis §9.6).
        pub pre_vote: bool = true,
        /// Appends in flight per follower in replicate state.
        pub max_inflight_msgs: usize = 256,
        /// Payload bytes in flight per follower (0: unlimited).
        pub max_inflight_bytes: u64 = 0,
        /// Committed entries handed out per `Ready`.
        pub max_committed_entries_per_ready: usize = 65_536,
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let common = self.common_settings();
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
    use crate::common_config::{assert_refused_naming_the_field, ReadOnlyOption};

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases: Vec<(Config, &str)> = vec![
            (Config { heartbeat_tick: 0, ..Default::default() }, "heartbeat_tick"),
            (Config { max_inflight_msgs: 0, ..Default::default() }, "max_inflight_msgs"),
            (Config { max_committed_entries_per_ready: 0, ..Default::default() }, "max_committed_entries_per_ready"),
            (Config { max_entry_bytes: 0, ..Default::default() }, "max_entry_bytes"),
            (
                Config { read_only_option: ReadOnlyOption::LeaseBased, check_quorum: false, ..Default::default() },
                "read_only_option",
            ),
        ];
        assert_refused_naming_the_field(cases, Config::validate);
    }
}
