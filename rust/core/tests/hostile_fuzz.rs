//! Structure-aware fuzzing of both cores with well-formed hostile frames (issue 9), seed-driven
//! and deterministic: see `consensus_core::sim::hostile` for what is sent and checked. The same
//! runs go on for longer in the cargo-fuzz target `hostile` (rust/core/fuzz, `make fuzz`).
//!
//! `HOSTILE_SEEDS` and `HOSTILE_STEPS` change the number of seeds per mode and the steps per run.

mod common;

use common::env_u64;
use consensus_core::rng::Rng;
use consensus_core::sim::hostile::{run_paxos_hostile, run_raft_hostile, Mode, Outcome};

fn seeds() -> u64 {
    env_u64("HOSTILE_SEEDS").unwrap_or(150)
}

fn steps() -> usize {
    env_u64("HOSTILE_STEPS").unwrap_or(300) as usize
}

/// Runs every seed in both modes and fails with each failing seed.
fn sweep(name: &str, run: impl Fn(&mut Rng, Mode, usize) -> Result<Outcome, String>) {
    let mut failures = Vec::new();
    let (mut injected, mut refused) = (0, 0);
    for mode in [Mode::Door, Mode::Chaos] {
        for seed in 0..seeds() {
            match run(&mut Rng::new(seed), mode, steps()) {
                Ok(outcome) => {
                    injected += outcome.injected;
                    refused += outcome.refused;
                }
                Err(reason) => failures.push(format!("{name} {mode:?} seed {seed}: {reason}")),
            }
        }
    }
    eprintln!("{name}: {refused} of {injected} hostile frames refused");
    assert!(failures.is_empty(), "{} failing runs:\n{}", failures.len(), failures.join("\n"));
    assert!(refused > 0 && refused < injected, "{name}: {refused} of {injected} hostile frames refused");
}

#[test]
fn hostile_frames_never_panic_wrap_or_wedge_raft() {
    sweep("raft", run_raft_hostile);
}

#[test]
fn hostile_frames_never_panic_wrap_or_wedge_multi_paxos() {
    sweep("paxos", run_paxos_hostile);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let a = run_raft_hostile(&mut Rng::new(5), Mode::Chaos, 100);
    let b = run_raft_hostile(&mut Rng::new(5), Mode::Chaos, 100);
    assert_eq!(a, b);
    let a = run_paxos_hostile(&mut Rng::new(5), Mode::Chaos, 100);
    let b = run_paxos_hostile(&mut Rng::new(5), Mode::Chaos, 100);
    assert_eq!(a, b);
}
