//! Helpers shared by the simulator test suites (one per protocol).
#![allow(dead_code)] // each suite uses its own subset

use consensus_core::sim::Report;

/// A number from the environment (`SIM_SEEDS`, `SIM_SEED_START`, ...), if set and valid.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The reports that found a violation.
pub fn failures(reports: Vec<Report>) -> Vec<Report> {
    reports.into_iter().filter(|r| !r.ok).collect()
}

/// Fails the test with every failing seed and the first one's report (its trace included).
pub fn assert_no_failures(failures: &[Report]) {
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|r| r.seed).collect();
        panic!("{} failing seeds {seeds:?}; first:\n{first}", failures.len());
    }
}
