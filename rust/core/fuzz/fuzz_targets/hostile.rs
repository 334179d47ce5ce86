//! Structure-aware fuzzing of both cores with hostile peers: libFuzzer's input picks the protocol,
//! the mode and the length of a run, and its remaining bytes are every draw of
//! `consensus_core::sim::hostile` (the frames' types and fields, their claimed senders, and the
//! cluster's own ticks and proposals). The run's checks are those of the seed-driven test
//! `rust/core/tests/hostile_fuzz.rs`: no panic, refused frames change nothing, terms and ballots
//! never decrease or pass `TERM_MAX`, storage takes every Ready, every node restarts from its
//! storage and, in door mode, the cluster elects and commits again. A broken check panics with
//! its reason, which libFuzzer reports as a crash.
#![no_main]

use arbitrary::Arbitrary;
use consensus_core::sim::hostile::{run_paxos_hostile, run_raft_hostile, ByteSource, Mode};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Run<'a> {
    paxos: bool,
    chaos: bool,
    /// Actions in the run, minus one.
    steps: u8,
    /// Every draw of the run, eight bytes each (zeros once they run out).
    draws: &'a [u8],
}

fuzz_target!(|run: Run<'_>| {
    let mut source = ByteSource::new(run.draws);
    let mode = if run.chaos { Mode::Chaos } else { Mode::Door };
    let steps = usize::from(run.steps) + 1;
    let outcome = if run.paxos {
        run_paxos_hostile(&mut source, mode, steps)
    } else {
        run_raft_hostile(&mut source, mode, steps)
    };
    if let Err(reason) = outcome {
        panic!("{} {mode:?}: {reason}", if run.paxos { "paxos" } else { "raft" });
    }
});
