//! The settings every protocol's `Config` has (timing, sizes, reads): their defaults and their
//! bounds, written once. Each protocol declares its `Config` with [`protocol_config!`], which adds
//! these settings to the protocol's own, so users still name every field directly.

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

/// The shared settings of one `Config`, gathered to be checked (every `Config` declared by
/// [`protocol_config!`] has `common_settings()`).
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

/// Declares a protocol's `Config`: the shared settings (declared, documented and defaulted here,
/// once) followed by the protocol's own fields, each with its default. It also gives the type
/// `Default` and `common_settings()`, the shared part gathered for [`CommonSettings`]' checks.
#[macro_export]
macro_rules! protocol_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Ticks without hearing from a leader before a follower tries to lead (a Raft election,
            /// a Paxos Phase 1). The actual timeout is drawn from `[election_tick, 2 * election_tick)`.
            pub election_tick: u64,
            /// Ticks between leader heartbeats. Invariant: `heartbeat_tick < election_tick`.
            pub heartbeat_tick: u64,
            /// A leader steps down when it has not heard from a quorum for an election timeout (Raft
            /// followers also ignore vote requests while they hear from a leader: the vote lease).
            pub check_quorum: bool,
            /// Payload bytes per replication message (at least one entry or slot is always sent).
            pub max_size_per_msg: u64,
            /// Payload bytes of the leader's uncommitted entries (queued and undecided commands)
            /// before proposals are dropped.
            pub max_uncommitted_bytes: u64,
            /// The largest payload a single proposal (command) may have.
            pub max_entry_bytes: u64,
            /// Payload bytes of committed entries (decided slots) handed out per `Ready` (at least one).
            pub max_committed_bytes_per_ready: u64,
            /// Pending read-index requests held by the leader.
            pub max_pending_reads: usize,
            pub read_only_option: $crate::common_config::ReadOnlyOption,
            /// Followers refuse proposals (`NotLeader`) instead of forwarding them.
            pub disable_proposal_forwarding: bool,
            /// Seeds the election-timeout PRNG together with the node id.
            pub seed: u64,
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                use $crate::common_config::defaults;
                $name {
                    election_tick: defaults::ELECTION_TICK,
                    heartbeat_tick: defaults::HEARTBEAT_TICK,
                    check_quorum: defaults::CHECK_QUORUM,
                    max_size_per_msg: defaults::MAX_SIZE_PER_MSG,
                    max_uncommitted_bytes: defaults::MAX_UNCOMMITTED_BYTES,
                    max_entry_bytes: defaults::MAX_ENTRY_BYTES,
                    max_committed_bytes_per_ready: defaults::MAX_COMMITTED_BYTES_PER_READY,
                    max_pending_reads: defaults::MAX_PENDING_READS,
                    read_only_option: $crate::common_config::ReadOnlyOption::Safe,
                    disable_proposal_forwarding: false,
                    seed: 0,
                    $( $field: $default, )*
                }
            }
        }

        impl $name {
            /// The shared settings, for the checks every protocol runs.
            pub fn common_settings(&self) -> $crate::common_config::CommonSettings {
                $crate::common_config::CommonSettings {
                    election_tick: self.election_tick,
                    heartbeat_tick: self.heartbeat_tick,
                    max_size_per_msg: self.max_size_per_msg,
                    max_uncommitted_bytes: self.max_uncommitted_bytes,
                    max_entry_bytes: self.max_entry_bytes,
                    max_committed_bytes_per_ready: self.max_committed_bytes_per_ready,
                    max_pending_reads: self.max_pending_reads,
                    check_quorum: self.check_quorum,
                    read_only_option: self.read_only_option,
                }
            }
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

/// For the protocols' config tests: each config in `cases` is refused with a config error naming
/// its field.
#[cfg(test)]
pub(crate) fn assert_refused_naming_the_field<C: std::fmt::Debug>(
    cases: Vec<(C, &'static str)>,
    validate: impl Fn(&C) -> Result<()>,
) {
    for (config, field) in cases {
        match validate(&config) {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a config error on {field}, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> CommonSettings {
        CommonSettings {
            election_tick: defaults::ELECTION_TICK,
            heartbeat_tick: defaults::HEARTBEAT_TICK,
            max_size_per_msg: defaults::MAX_SIZE_PER_MSG,
            max_uncommitted_bytes: defaults::MAX_UNCOMMITTED_BYTES,
            max_entry_bytes: defaults::MAX_ENTRY_BYTES,
            max_committed_bytes_per_ready: defaults::MAX_COMMITTED_BYTES_PER_READY,
            max_pending_reads: defaults::MAX_PENDING_READS,
            check_quorum: defaults::CHECK_QUORUM,
            read_only_option: ReadOnlyOption::Safe,
        }
    }

    #[test]
    fn the_defaults_pass_and_each_bad_shared_setting_is_named() {
        let check = |c: &CommonSettings| c.check_ticks().and_then(|()| c.check_sizes_and_reads());
        check(&defaults()).unwrap();
        let cases = vec![
            (CommonSettings { heartbeat_tick: 0, ..defaults() }, "heartbeat_tick"),
            (CommonSettings { election_tick: 1, ..defaults() }, "election_tick"),
            (CommonSettings { election_tick: ELECTION_TICK_MAX + 1, ..defaults() }, "election_tick"),
            (CommonSettings { max_size_per_msg: 0, ..defaults() }, "max_size_per_msg"),
            (CommonSettings { max_uncommitted_bytes: 0, ..defaults() }, "max_uncommitted_bytes"),
            (CommonSettings { max_entry_bytes: ENTRY_BYTES_LIMIT + 1, ..defaults() }, "max_entry_bytes"),
            (CommonSettings { max_committed_bytes_per_ready: 0, ..defaults() }, "max_committed_bytes_per_ready"),
            (CommonSettings { max_pending_reads: 0, ..defaults() }, "max_pending_reads"),
            (
                CommonSettings { read_only_option: ReadOnlyOption::LeaseBased, check_quorum: false, ..defaults() },
                "read_only_option",
            ),
        ];
        assert_refused_naming_the_field(cases, check);
    }

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
