//! The deterministic simulator on Multi-Paxos: many seeds of 5 nodes with every fault on, other
//! cluster shapes, determinism, and that the runs really exercise what they claim to.
//!
//! `SIM_SEEDS=n` sets the number of seeds of the big run (default: 2000 in release builds, 300 in
//! debug builds); `SIM_SEED_START` its first seed. A failing seed prints its report with the trace.

use consensus_core::sim::{
    self, run_paxos, run_paxos_with_lease_reads, run_paxos_with_reconfiguration, Faults, Report, SimConfig,
};

mod common;
use common::{assert_no_failures, env_u64, failures};

/// Runs `count` seeds from `start` on all cores; returns the failing reports.
fn run_seeds(start: u64, count: u64, config: &(dyn Fn(u64) -> SimConfig + Sync)) -> Vec<Report> {
    failures(sim::run_seeds(run_paxos, start..start + count, config))
}

#[test]
fn five_node_multi_paxos_with_every_fault_is_safe_and_live() {
    let default_count = if cfg!(debug_assertions) { 300 } else { 2000 };
    let count = env_u64("SIM_SEEDS").unwrap_or(default_count);
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    assert_no_failures(&run_seeds(start, count, &SimConfig::new));
}

#[test]
fn a_run_exercises_ballots_crashes_catch_up_snapshots_and_leader_transfers() {
    let reports: Vec<Report> = (0..20).map(|seed| run_paxos(&SimConfig::new(seed))).collect();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    for report in &reports {
        assert!(report.ok, "{report}");
        assert!(report.entries_committed > 20, "{report}");
        assert!(report.liveness_ticks_to_leader.is_some() && report.liveness_ticks_to_commit.is_some());
    }
    assert!(sum(|r| r.leaders_seen) >= 60, "leaderships");
    assert!(sum(|r| r.crashes) >= 20 && sum(|r| r.restarts) >= 20, "crashes");
    assert!(sum(|r| r.partitions) >= 20, "partitions");
    assert!(sum(|r| r.snapshots_installed) >= 5, "snapshots");
    assert!(sum(|r| r.compactions) >= 100, "compactions");
    assert!(sum(|r| r.messages_dropped) > 0 && sum(|r| r.messages_duplicated) > 0);
    assert!(sum(|r| r.reads_answered) > 0, "reads");
    assert!(sum(|r| r.leader_transfers) >= 5, "leaderships handed over by TimeoutNow");
}

#[test]
fn other_shapes_are_safe_and_live() {
    type Shape = Box<dyn Fn(u64) -> SimConfig + Sync>;
    let shapes: Vec<Shape> = vec![
        Box::new(|seed| SimConfig { nodes: 3, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { nodes: 1, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig {
            nodes: 7,
            faults: Faults { max_nodes_down: 3, ..Faults::all() },
            ..SimConfig::new(seed)
        }),
        Box::new(|seed| SimConfig { check_quorum: false, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { heartbeat_tick: 3, election_tick: 20, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { propose_percent: 60, ..SimConfig::new(seed) }),
    ];
    let count = if cfg!(debug_assertions) { 15 } else { 100 };
    for shape in &shapes {
        assert_no_failures(&run_seeds(10_000, count, shape.as_ref()));
    }
}

#[test]
fn no_faults_means_a_quick_leader_and_steady_commits() {
    let report = run_paxos(&SimConfig { faults: Faults::none(), ..SimConfig::new(7) });
    assert!(report.ok, "{report}");
    assert_eq!(report.messages_dropped, 0);
    assert!(report.proposals_dropped < report.proposals / 4, "{report}");
    assert!(report.entries_committed > 200, "{report}");
}

#[test]
fn the_same_seed_gives_the_identical_run() {
    for seed in [1, 99, 12_345] {
        let a = run_paxos(&SimConfig::new(seed));
        let b = run_paxos(&SimConfig::new(seed));
        assert_eq!(a, b, "two runs of seed {seed} differ");
        assert!(a.events > 1000);
    }
    let report = run_paxos(&SimConfig::new(3));
    assert!(report.to_string().starts_with("paxos seed 3: ok"), "{report}");
}

#[test]
fn membership_changes_under_every_fault_are_safe() {
    let count = env_u64("SIM_RECONFIG_SEEDS").unwrap_or(if cfg!(debug_assertions) { 50 } else { 500 });
    let config = |seed| SimConfig { liveness: false, propose_percent: 30, ..SimConfig::new(seed) };
    let failures = failures(sim::run_seeds(run_paxos_with_reconfiguration, 20_000..20_000 + count, &config));
    assert_no_failures(&failures);
}

#[test]
fn lease_reads_without_pauses_are_linearizable() {
    let count = env_u64("SIM_LEASE_SEEDS").unwrap_or(if cfg!(debug_assertions) { 50 } else { 500 });
    let config = |seed| SimConfig {
        read_per_mille: 100,
        faults: Faults { pauses: false, ..Faults::all() },
        ..SimConfig::new(seed)
    };
    let reports = sim::run_seeds(run_paxos_with_lease_reads, 30_000..30_000 + count, &config);
    let answered: u64 = reports.iter().map(|r| r.reads_answered).sum();
    let transfers: u64 = reports.iter().map(|r| r.leader_transfers).sum();
    let failures = failures(reports);
    assert_no_failures(&failures);
    assert!(answered > count * 5, "lease reads were answered ({answered})");
    assert!(transfers > count / 10, "leaderships were handed over inside leases ({transfers})");
}
