//! The deterministic simulator: many seeds of 5-node Raft with every fault on, determinism, and
//! proof that each checker catches the bug it is there for.
//!
//! `SIM_SEEDS=n` sets the number of seeds of the big run (default: 2000 in release builds, 300 in
//! debug builds); `SIM_SEED_START` its first seed. A failing seed prints its report with the trace.

use bytes::Bytes;
use consensus_core::raft::storage::MemStorage;
use consensus_core::role::Role;
use consensus_core::sim::raft::{check_append_only, check_leader_completeness, check_log_matching, LogView};
use consensus_core::sim::{
    invariants::entry_hash, run, run_raft, DurableFacts, Faults, NodeOptions, Protocol, RaftAdapter, ReadyOf,
    SafetyChecker, SimConfig,
};

mod common;
use common::{
    assert_every_fault_run_is_clean, assert_same_seed_same_run, assert_shapes_are_clean, assert_sums_at_least, env_u64,
    exercised_reports, fault_free_report, Shape,
};

#[test]
fn five_node_raft_with_every_fault_is_safe_and_live() {
    assert_every_fault_run_is_clean(run_raft);
}

#[test]
fn a_run_exercises_elections_crashes_and_snapshots() {
    assert_sums_at_least(
        &exercised_reports(run_raft),
        &[
            ("elections", |r| r.leaders_seen, 60),
            ("crashes", |r| r.crashes, 20),
            ("restarts", |r| r.restarts, 20),
            ("pauses", |r| r.pauses, 10),
            ("partitions", |r| r.partitions, 20),
            ("snapshots", |r| r.snapshots_installed, 20),
            ("compactions", |r| r.compactions, 100),
            ("drops", |r| r.messages_dropped, 1),
            ("duplicates", |r| r.messages_duplicated, 1),
            ("reads", |r| r.reads_answered, 1),
        ],
    );
}

#[test]
fn other_shapes_and_options_are_safe_and_live() {
    let pre_vote_off: Vec<Shape> = vec![
        Box::new(|seed| SimConfig { pre_vote: false, ..SimConfig::new(seed) }),
        Box::new(|seed| SimConfig { pre_vote: false, check_quorum: false, ..SimConfig::new(seed) }),
    ];
    assert_shapes_are_clean(run_raft, pre_vote_off);
}

#[test]
fn no_faults_means_no_drops_and_a_quick_leader() {
    let report = fault_free_report(run_raft);
    assert_eq!(report.drop_percent, 0);
    assert_eq!(report.messages_duplicated, 0);
    assert_eq!(report.crashes + report.pauses + report.partitions, 0);
}

#[test]
fn the_same_seed_gives_the_identical_run() {
    assert_same_seed_same_run(run_raft);
    let digests: std::collections::BTreeSet<u64> =
        (0..10).map(|seed| run_raft(&SimConfig::new(seed)).trace_digest).collect();
    assert_eq!(digests.len(), 10, "different seeds give different runs");
}

#[test]
fn report_display_summarises_the_run() {
    let report = run_raft(&SimConfig::new(3));
    let text = report.to_string();
    assert!(text.starts_with("raft seed 3: ok"), "{text}");
    assert!(text.contains("crashes") && text.contains("liveness"), "{text}");
    assert!(report.trace.is_empty());
}

#[test]
fn invalid_config_is_reported_not_panicked() {
    let report = run_raft(&SimConfig { steps_per_tick: 0, ..SimConfig::new(1) });
    assert!(!report.ok);
    assert!(report.violation.unwrap().contains("steps_per_tick"));
}

// ---------------------------------------------------------------- the checkers catch bugs

#[test]
fn checker_catches_two_leaders_in_one_term() {
    let mut safety = SafetyChecker::new();
    safety.observe_leader(1, 4).unwrap();
    safety.observe_leader(2, 5).unwrap();
    let error = safety.observe_leader(3, 4).unwrap_err();
    assert!(error.contains("election safety"), "{error}");
}

#[test]
fn checker_catches_two_entries_applied_at_one_index() {
    let mut safety = SafetyChecker::new();
    safety.observe_apply(1, 1, 1, b"x").unwrap();
    safety.observe_apply(2, 1, 1, b"x").unwrap();
    let error = safety.observe_apply(3, 1, 1, b"y").unwrap_err();
    assert!(error.contains("state machine safety"), "{error}");
    // The same data under another term is another entry too.
    let mut safety = SafetyChecker::new();
    safety.observe_apply(1, 1, 1, b"x").unwrap();
    let error = safety.observe_apply(2, 1, 2, b"x").unwrap_err();
    assert!(error.contains("state machine safety"), "{error}");
}

#[test]
fn checker_catches_durable_term_going_back_and_vote_changing() {
    let mut safety = SafetyChecker::new();
    safety.observe_durable(1, DurableFacts { term: 5, vote: 2, commit: 3 }).unwrap();
    let error = safety.observe_durable(1, DurableFacts { term: 4, vote: 2, commit: 3 }).unwrap_err();
    assert!(error.contains("went back"), "{error}");
    let mut safety = SafetyChecker::new();
    safety.observe_durable(1, DurableFacts { term: 5, vote: 2, commit: 3 }).unwrap();
    let error = safety.observe_durable(1, DurableFacts { term: 5, vote: 3, commit: 3 }).unwrap_err();
    assert!(error.contains("vote"), "{error}");
    safety.observe_durable(1, DurableFacts { term: 6, vote: 3, commit: 3 }).unwrap();
}

#[test]
fn checker_catches_commit_going_back_and_unpersisted_sends() {
    let mut safety = SafetyChecker::new();
    safety.observe_commit(1, 10).unwrap();
    assert!(safety.observe_commit(1, 9).is_err());
    let at_ready = DurableFacts { term: 3, vote: 1, commit: 10 };
    let stale = DurableFacts { term: 2, vote: 1, commit: 10 };
    assert!(safety.check_persisted(1, at_ready, stale).unwrap_err().contains("persist-before-send"));
}

fn log(node: u64, first: u64, terms: &[u64]) -> LogView {
    LogView::new(node, first, terms.iter().enumerate().map(|(i, t)| (*t, entry_hash(*t, &[i as u8]))).collect())
}

#[test]
fn checker_catches_log_matching_leader_completeness_and_append_only_violations() {
    // Same (index, term) at 3, different entry at 2.
    let a = log(1, 1, &[1, 1, 2]);
    let b = log(2, 1, &[1, 2, 2]);
    assert!(check_log_matching(&[a.clone(), b]).unwrap_err().contains("log matching"));
    assert!(check_log_matching(&[a.clone(), log(3, 1, &[1, 1, 3, 3])]).is_ok());

    let mut safety = SafetyChecker::new();
    safety.observe_term(2);
    for (index, term) in [(1, 1), (2, 1), (3, 2)] {
        safety.observe_apply(1, index, term, &[index as u8 - 1]).unwrap();
    }
    let error = check_leader_completeness(3, &log(4, 1, &[1, 1]), safety.history()).unwrap_err();
    assert!(error.contains("leader completeness"), "{error}");
    assert!(check_leader_completeness(3, &a, safety.history()).is_ok());

    let error = check_append_only(3, &log(1, 1, &[1, 3, 3]), &log(1, 1, &[1, 3])).unwrap_err();
    assert!(error.contains("append-only"), "{error}");
}

/// Raft with an injected bug, to show the whole pipeline (checks, report, trace) catches it.
struct Buggy<const BUG: u8>(RaftAdapter);

/// Persists everything but the vote: a restarted node could vote twice in a term.
const FORGET_VOTE: u8 = 1;
/// The state machine applies a corrupted command at index 5 on some nodes.
const CORRUPT_APPLY: u8 = 2;

impl<const BUG: u8> Protocol for Buggy<BUG> {
    type Node = <RaftAdapter as Protocol>::Node;
    type Durable = MemStorage;
    type Checker = ();
    const NAME: &'static str = "buggy-raft";

    fn new_durable(id: u64, members: &[u64]) -> MemStorage {
        RaftAdapter::new_durable(id, members)
    }
    fn start(id: u64, members: &[u64], o: &NodeOptions, d: &MemStorage, applied: u64) -> Result<Self, String> {
        RaftAdapter::start(id, members, o, d, applied).map(Buggy)
    }
    fn core(&self) -> &Self::Node {
        self.0.core()
    }
    fn core_mut(&mut self) -> &mut Self::Node {
        self.0.core_mut()
    }
    fn after_tick(&mut self) {
        self.0.after_tick()
    }
    fn persist(durable: &mut MemStorage, ready: &ReadyOf<Self>) -> Result<(), String> {
        RaftAdapter::persist(durable, ready)?;
        if BUG == FORGET_VOTE {
            let mut core = durable.wl();
            let mut hs = core.hard_state();
            hs.vote = 0;
            core.set_hard_state(hs);
        }
        Ok(())
    }
    fn committed(ready: &ReadyOf<Self>) -> Vec<(u64, u64, Bytes)> {
        let mut entries = RaftAdapter::committed(ready);
        // Only followers' Readies (their messages go to the leader alone) are corrupted.
        if BUG == CORRUPT_APPLY && ready.role == Some(Role::Follower) {
            for entry in entries.iter_mut().filter(|e| e.0 == 5) {
                entry.2 = Bytes::from_static(b"corrupted");
            }
        }
        entries
    }
    fn hard_state(&self) -> DurableFacts {
        self.0.hard_state()
    }
    fn durable_hard_state(durable: &MemStorage) -> DurableFacts {
        RaftAdapter::durable_hard_state(durable)
    }
    fn describe_message(message: &consensus_core::raft::Message) -> String {
        RaftAdapter::describe_message(message)
    }
}

#[test]
fn an_injected_persistence_bug_is_reported_with_a_reproducible_trace() {
    let cfg = SimConfig::new(5);
    let report = run::<Buggy<FORGET_VOTE>>(&cfg);
    assert!(!report.ok);
    assert!(!report.liveness_failure);
    let violation = report.violation.clone().unwrap();
    assert!(violation.contains("persist-before-send"), "{violation}");
    assert!(!report.trace.is_empty() && report.trace.len() <= cfg.trace_events + cfg.nodes);
    assert!(report.to_string().contains("SAFETY VIOLATION"));
    assert_eq!(report, run::<Buggy<FORGET_VOTE>>(&cfg), "a failing seed replays identically");
}

#[test]
fn an_injected_state_machine_bug_is_reported() {
    let report = run::<Buggy<CORRUPT_APPLY>>(&SimConfig { faults: Faults::none(), ..SimConfig::new(1) });
    assert!(!report.ok);
    let violation = report.violation.unwrap();
    assert!(violation.contains("state machine safety"), "{violation}");
    assert!(report.trace.iter().any(|line| line.contains("applies 5@")), "{:?}", report.trace);
}

/// `cargo test -p consensus-core --release --test sim -- --ignored --nocapture milliseconds_per_seed`
#[test]
#[ignore = "timing measurement; run in release mode by hand"]
fn milliseconds_per_seed() {
    let count = env_u64("SIM_SEEDS").unwrap_or(500);
    let started = std::time::Instant::now();
    for seed in 0..count {
        let report = run_raft(&SimConfig::new(seed));
        assert!(report.ok, "{report}");
    }
    let per_seed_ms = started.elapsed().as_secs_f64() * 1000.0 / count as f64;
    println!("5-node Raft, every fault on: {per_seed_ms:.2} ms per seed over {count} seeds (one thread)");
}
