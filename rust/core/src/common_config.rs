//! The settings every protocol's `Config` has (timing, sizes, reads): their defaults and their
//! bounds, written once. Each protocol's `Config` keeps its own fields (so its users name them
//! directly) and takes its defaults from [`defaults`] and its checks from [`CommonSettings`].

use crate::error::{Error, Result};

/// Upper bound for a single entry's or command's payload: it must fit in one frame with room for headers.
pub const ENTRY_BYTES_LIMIT: u64 = 32 << 20;

/// The longest election timeout, in ticks, a node may be configured with.
pub const ELECTION_TICK_MAX: u64 = 1_000_000;

/// The default of each shared setting.
pub mod defaults {
    pub const ELECTION_TICK: u64 = 10;
    pub const HEARTBEAT_TICK: u64 = 1;
    pub const MAX_SIZE_PER_MSG: u64 = 1 << 20;
    pub const MAX_UNCOMMITTED_BYTES: u64 = 64 << 20;
    pub const MAX_ENTRY_BYTES: u64 = 8 << 20;
    pub const MAX_COMMITTED_BYTES_PER_READY: u64 = 64 << 20;
    pub const MAX_PENDING_READS: usize = 4096;
    pub const CHECK_QUORUM: bool = true;
}

/// How the leader confirms it is still the leader before answering a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// A round of heartbeats acknowledged by a quorum (always safe).
    #[default]
    Safe,
    /// Trust the CheckQuorum lease: answer at once (relies on bounded clock drift).
    LeaseBased,
}

/// The shared settings of one `Config`, gathered to be checked ([`common_settings!`] builds it
/// from any `Config`, so the list of shared fields is written once too).
#[derive(Debug, Clone, Copy)]
pub struct CommonSettings {
    pub election_tick: u64,
    pub heartbeat_tick: u64,
    pub max_size_per_msg: u64,
    pub max_uncommitted_bytes: u64,
    pub max_entry_bytes: u64,
    pub max_committed_bytes_per_ready: u64,
    pub max_pending_reads: usize,
    pub check_quorum: bool,
    pub read_only_option: ReadOnlyOption,
}

/// The [`CommonSettings`] of a protocol's `Config` value (every `Config` has these fields).
#[macro_export]
macro_rules! common_settings {
    ($config:expr) => {
        $crate::common_config::CommonSettings {
            election_tick: $config.election_tick,
            heartbeat_tick: $config.heartbeat_tick,
            max_size_per_msg: $config.max_size_per_msg,
            max_uncommitted_bytes: $config.max_uncommitted_bytes,
            max_entry_bytes: $config.max_entry_bytes,
            max_committed_bytes_per_ready: $config.max_committed_bytes_per_ready,
            max_pending_reads: $config.max_pending_reads,
            check_quorum: $config.check_quorum,
            read_only_option: $config.read_only_option,
        }
    };
}

impl CommonSettings {
    /// The election and heartbeat ticks: a heartbeat comes more often than an election timeout.
    pub fn check_ticks(&self) -> Result<()> {
        at_least_one("heartbeat_tick", self.heartbeat_tick)?;
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::config("election_tick", "must be greater than heartbeat_tick"));
        }
        at_most("election_tick", self.election_tick, ELECTION_TICK_MAX)
    }

    /// The size limits and the read settings.
    pub fn check_sizes_and_reads(&self) -> Result<()> {
        in_range("max_size_per_msg", self.max_size_per_msg, ENTRY_BYTES_LIMIT)?;
        at_least_one("max_uncommitted_bytes", self.max_uncommitted_bytes)?;
        in_range("max_entry_bytes", self.max_entry_bytes, ENTRY_BYTES_LIMIT)?;
        at_least_one("max_committed_bytes_per_ready", self.max_committed_bytes_per_ready)?;
        at_least_one("max_pending_reads", self.max_pending_reads as u64)?;
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(Error::config("read_only_option", "lease-based reads require check_quorum"));
        }
        Ok(())
    }
}

/// `field` must be at least 1.
pub fn at_least_one(field: &'static str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::config(field, "must be at least 1"));
    }
    Ok(())
}

/// `field` must be at most `max`.
pub fn at_most(field: &'static str, value: u64, max: u64) -> Result<()> {
    if value > max {
        return Err(Error::config(field, format!("must be at most {max}")));
    }
    Ok(())
}

/// `field` must be in `1..=max`.
pub fn in_range(field: &'static str, value: u64, max: u64) -> Result<()> {
    if value == 0 || value > max {
        return Err(Error::config(field, format!("must be in 1..={max}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_name_the_field_and_accept_the_bounds() {
        assert!(at_least_one("f", 1).is_ok());
        assert!(matches!(at_least_one("f", 0), Err(Error::Config { field: "f", .. })));
        assert!(in_range("f", 5, 5).is_ok());
        assert!(in_range("f", 6, 5).is_err());
        assert!(in_range("f", 0, 5).is_err());
        assert!(at_most("f", 5, 5).is_ok());
        assert!(at_most("f", 6, 5).is_err());
    }
}
