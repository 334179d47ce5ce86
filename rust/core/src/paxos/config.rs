//! Multi-Paxos configuration, validated field by field.

pub use crate::common_config::ReadOnlyOption;
use crate::common_config::{in_range, ENTRY_BYTES_LIMIT};
use crate::error::Result;

/// The largest `max_inflight_slots` (and so the largest α of a reconfiguration record).
pub const MAX_INFLIGHT_SLOTS: u64 = 1 << 20;

crate::protocol_config! {
    /// Multi-Paxos's settings: the shared ones and these.
    pub struct Config {
        /// Slots a leader may have between its commit index and its highest slot in flight; also
        /// the α of the reconfiguration rule.
        pub max_inflight_slots: u64 = 256,
        /// Client commands batched into one slot value.
        pub max_batch_commands: usize = 1024,
        /// Payload bytes batched into one slot value (a single larger command still gets a slot).
        pub max_batch_bytes: u64 = 1 << 20,
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let common = self.common_settings();
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
    use crate::common_config::assert_refused_naming_the_field;

    #[test]
    fn invalid_fields_are_named() {
        Config::default().validate().unwrap();
        let cases: Vec<(Config, &str)> = vec![
            (Config { heartbeat_tick: 0, ..Default::default() }, "heartbeat_tick"),
            (Config { max_inflight_slots: 0, ..Default::default() }, "max_inflight_slots"),
            (Config { max_batch_commands: 0, ..Default::default() }, "max_batch_commands"),
            (Config { max_batch_bytes: 0, ..Default::default() }, "max_batch_bytes"),
            (Config { max_pending_reads: 0, ..Default::default() }, "max_pending_reads"),
        ];
        assert_refused_naming_the_field(cases, Config::validate);
    }
}
