//! Helpers shared by the simulator test suites (one per protocol).
#![allow(dead_code)] // each suite uses its own subset

use consensus_core::sim::{self, Faults, Report, SimConfig};

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

/// One protocol's simulation: `run_raft`, `run_paxos`, ...
pub type Runner = fn(&SimConfig) -> Report;
/// A family of configurations, one per seed.
pub type Shape = Box<dyn Fn(u64) -> SimConfig + Sync>;

/// Runs `count` seeds from `start` on all cores; returns the failing reports.
pub fn failing_seeds(
    runner: Runner,
    start: u64,
    count: u64,
    config: &(dyn Fn(u64) -> SimConfig + Sync),
) -> Vec<Report> {
    failures(sim::run_seeds(runner, start..start + count, config))
}

/// The big run: 5 nodes with every fault on, `SIM_SEEDS` seeds (default: 2000 in release
/// builds, 300 in debug builds) from `SIM_SEED_START`.
pub fn assert_every_fault_run_is_clean(runner: Runner) {
    let default_count = if cfg!(debug_assertions) { 300 } else { 2000 };
    let count = env_u64("SIM_SEEDS").unwrap_or(default_count);
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    assert_no_failures(&failing_seeds(runner, start, count, &SimConfig::new));
}

/// The cluster shapes and options every protocol runs (3, 1 and 7 nodes, no check-quorum, slow
/// heartbeats), followed by the protocol's own `extra` ones, each over 100 seeds from 10 000.
pub fn assert_shapes_are_clean(runner: Runner, extra: Vec<Shape>) {
    let mut shapes: Vec<Shape> = vec![
        Box::new(|seed| SimConfig { nodes: 3, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { nodes: 1, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig {
            nodes: 7,
            faults: Faults { max_nodes_down: 3, ..Faults::all() },
            ..SimConfig::new(seed)
        }),
        Box::new(|seed| SimConfig { check_quorum: false, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { heartbeat_tick: 3, election_tick: 20, ..SimConfig::new(seed) }),
    ];
    shapes.extend(extra);
    let count = if cfg!(debug_assertions) { 15 } else { 100 };
    for shape in &shapes {
        assert_no_failures(&failing_seeds(runner, 10_000, count, shape.as_ref()));
    }
}

/// Seeds 0..20 with every fault on, each clean, committing and live; returns them for the
/// caller's sums (each kind of event must happen, or the big run proves little).
pub fn exercised_reports(runner: Runner) -> Vec<Report> {
    let reports: Vec<Report> = (0..20).map(|seed| runner(&SimConfig::new(seed))).collect();
    for report in &reports {
        assert!(report.ok, "{report}");
        assert!(report.entries_committed > 20, "{report}");
        assert!(report.liveness_ticks_to_leader.is_some() && report.liveness_ticks_to_commit.is_some());
    }
    reports
}

/// One count a batch of runs must reach: `(what, the count of one report, the least sum)`.
pub type Least = (&'static str, fn(&Report) -> u64, u64);

/// Each count summed over `reports` reaches its least value.
pub fn assert_sums_at_least(reports: &[Report], least: &[Least]) {
    for (what, count, min) in least {
        let sum: u64 = reports.iter().map(count).sum();
        assert!(sum >= *min, "{what}: {sum} over {} runs, expected at least {min}", reports.len());
    }
}

/// Two runs of one seed are identical, and long enough to mean something.
pub fn assert_same_seed_same_run(runner: Runner) {
    for seed in [1, 99, 12_345] {
        let a = runner(&SimConfig::new(seed));
        let b = runner(&SimConfig::new(seed));
        assert_eq!(a, b, "two runs of seed {seed} differ");
        assert!(a.events > 1000);
    }
}

/// With no faults: the run is clean, drops nothing, and few proposals are dropped for want of a
/// leader; returns the report for the caller's own checks.
pub fn fault_free_report(runner: Runner) -> Report {
    let report = runner(&SimConfig { faults: Faults::none(), ..SimConfig::new(7) });
    assert!(report.ok, "{report}");
    assert_eq!(report.messages_dropped, 0);
    assert!(report.proposals_dropped < report.proposals / 4, "{report}");
    assert!(report.entries_committed > 200, "{report}");
    report
}
