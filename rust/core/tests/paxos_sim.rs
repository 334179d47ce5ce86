//! The deterministic simulator on Multi-Paxos: many seeds of 5 nodes with every fault on, other
//! cluster shapes, determinism, and that the runs really exercise what they claim to.
//!
//! `SIM_SEEDS=n` sets the number of seeds of the big run (default: 2000 in release builds, 300 in
//! debug builds); `SIM_SEED_START` its first seed. A failing seed prints its report with the trace.

use consensus_core::sim::{
    self, run_paxos, run_paxos_with_lease_reads, run_paxos_with_reconfiguration, Faults, SimConfig,
};

mod common;
use common::{
    assert_every_fault_run_is_clean, assert_no_failures, assert_same_seed_same_run, assert_shapes_are_clean,
    assert_sums_at_least, env_u64, exercised_reports, failures, fault_free_report, Shape,
};

#[test]
fn five_node_multi_paxos_with_every_fault_is_safe_and_live() {
    assert_every_fault_run_is_clean(run_paxos);
}

#[test]
fn a_run_exercises_ballots_crashes_catch_up_snapshots_and_leader_transfers() {
    assert_sums_at_least(
        &exercised_reports(run_paxos),
        &[
            ("leaderships", |r| r.leaders_seen, 60),
            ("crashes", |r| r.crashes, 20),
            ("restarts", |r| r.restarts, 20),
            ("partitions", |r| r.partitions, 20),
            ("snapshots", |r| r.snapshots_installed, 5),
            ("compactions", |r| r.compactions, 100),
            ("drops", |r| r.messages_dropped, 1),
            ("duplicates", |r| r.messages_duplicated, 1),
            ("reads", |r| r.reads_answered, 1),
            ("leaderships handed over by TimeoutNow", |r| r.leader_transfers, 5),
        ],
    );
}

#[test]
fn other_shapes_are_safe_and_live() {
    let busy: Vec<Shape> = vec![Box::new(|seed| SimConfig { propose_percent: 60, ..SimConfig::new(seed) })];
    assert_shapes_are_clean(run_paxos, busy);
}

#[test]
fn no_faults_means_a_quick_leader_and_steady_commits() {
    fault_free_report(run_paxos);
}

#[test]
fn the_same_seed_gives_the_identical_run() {
    assert_same_seed_same_run(run_paxos);
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
