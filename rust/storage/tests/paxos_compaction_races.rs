//! PaxosFileStorage under installed snapshots and three-step compactions (prepare, write without
//! the lock, finish) interleaved with persists, installs and crashes: every state and every reopen
//! equals an in-memory storage given the same calls.

use bytes::Bytes;
use consensus_core::paxos::{AcceptedSlot, Ballot, HardState, MemStorage, PaxosStorage, Ready, Snapshot, Value};
use consensus_storage::{DurableStorage, Options, PaxosFileStorage};
use proptest::prelude::*;

mod common;
use common::TempDir;

fn slot(slot: u64, round: u64) -> AcceptedSlot {
    AcceptedSlot {
        slot,
        ballot: Ballot::new(round, 1),
        value: Value::batch(round, vec![Bytes::from(format!("slot-{slot}-{round}-{}", "x".repeat(40)))]),
    }
}

fn state_of(mem: &MemStorage) -> (HardState, Vec<AcceptedSlot>, u64, Vec<u64>, Bytes) {
    let snapshot = mem.snapshot();
    let members = mem.membership().map(|m| m.latest().to_vec()).unwrap_or_default();
    (mem.hard_state(), mem.accepted_slots(), snapshot.index, members, snapshot.data)
}

#[derive(Debug, Clone)]
enum Op {
    Persist { slots: Vec<u64>, round: u64, promise: bool, commit: bool },
    Install { ahead: u64 },
    Compact3 { slots: Vec<u64>, install_between: Option<u64> },
    Crash,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::collection::vec(1u64..8, 0..5), 1u64..5, any::<bool>(), any::<bool>())
            .prop_map(|(slots, round, promise, commit)| Op::Persist { slots, round, promise, commit }),
        1 => (1u64..6).prop_map(|ahead| Op::Install { ahead }),
        2 => (proptest::collection::vec(1u64..8, 0..4), proptest::option::of(1u64..6))
            .prop_map(|(slots, install_between)| Op::Compact3 { slots, install_between }),
        1 => Just(Op::Crash),
    ]
}

/// Slots are offsets above the model's commit (so they land above the snapshot).
fn ready_of(model: &MemStorage, offsets: &[u64], round: u64, promise: bool, commit: bool) -> Ready {
    let core = model.rl();
    let held = core.hard_state();
    let base = held.commit;
    let accepted: Vec<AcceptedSlot> =
        offsets.iter().map(|&o| slot((base + o).saturating_sub(3).max(1), round)).collect();
    let mut hard_state = None;
    if promise || commit {
        let promised = if promise { Ballot::new(held.promised.round + 1, 1) } else { held.promised };
        let mut through = core.contiguous_through();
        let extra: std::collections::BTreeSet<u64> = accepted.iter().map(|s| s.slot).collect();
        while extra.contains(&(through + 1)) {
            through += 1;
        }
        let c = if commit { held.commit.max(through) } else { held.commit };
        hard_state = Some(HardState { promised, commit: c });
    }
    Ready { accepted, hard_state, must_sync: true, ..Default::default() }
}

fn model_persist(model: &MemStorage, rd: &Ready) {
    let mut core = model.wl();
    if let Some(s) = &rd.snapshot {
        core.apply_snapshot(s.clone()).unwrap();
    }
    core.put_accepted(&rd.accepted);
    if let Some(hs) = rd.hard_state {
        core.set_hard_state(hs);
    }
}

fn install_ready(model: &MemStorage, ahead: u64) -> Ready {
    let commit = model.hard_state().commit;
    let index = commit + ahead;
    let snapshot = Snapshot {
        index,
        term: 9,
        members: vec![1, 2, 3, index],
        pending: vec![(index + 3, vec![1, index])],
        data: Bytes::from(format!("leader state at {index}")),
    };
    let hs = HardState { promised: model.hard_state().promised, commit: index };
    Ready { snapshot: Some(snapshot), hard_state: Some(hs), must_sync: true, ..Default::default() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reopen_matches_an_in_memory_storage_through_installs_and_three_step_compactions(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let dir = TempDir::new("paxos-compaction-prop");
        let options = Options { segment_bytes: 1024, ..Options::default() };
        let mut storage = PaxosFileStorage::open(&dir.0, options).unwrap();
        storage.set_initial_members(&[1, 2, 3]).unwrap();
        let model = MemStorage::new(&[1, 2, 3]);
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Persist { slots, round, promise, commit } => {
                    let rd = ready_of(&model, slots, *round, *promise, *commit);
                    storage.persist(&rd).unwrap();
                    model_persist(&model, &rd);
                }
                Op::Install { ahead } => {
                    let rd = install_ready(&model, *ahead);
                    storage.persist(&rd).unwrap();
                    model_persist(&model, &rd);
                }
                Op::Compact3 { slots, install_between } => {
                    let commit = model.hard_state().commit;
                    if commit <= model.snapshot().index { continue; }
                    let data = Bytes::from(format!("state at {commit}"));
                    let snap = storage.prepare_compaction(commit, data.clone()).unwrap();
                    let writer = storage.snapshot_writer();
                    // Persists while the file is written without the lock.
                    let rd = ready_of(&model, slots, 7, false, true);
                    storage.persist(&rd).unwrap();
                    model_persist(&model, &rd);
                    let mut superseded = false;
                    if let Some(ahead) = install_between {
                        let rd = install_ready(&model, *ahead);
                        storage.persist(&rd).unwrap();
                        model_persist(&model, &rd);
                        superseded = true;
                    }
                    let written = writer.write(&snap);
                    storage.finish_compaction(snap, written).unwrap();
                    if !superseded {
                        model.compact(commit, data).unwrap();
                    }
                }
                Op::Crash => {
                    drop(storage);
                    storage = PaxosFileStorage::open(&dir.0, options).unwrap();
                }
            }
            prop_assert_eq!(state_of(storage.mem()), state_of(&model), "after step {} ({:?})", step, op);
        }
        drop(storage);
        let reopened = PaxosFileStorage::open(&dir.0, options).unwrap();
        prop_assert_eq!(state_of(reopened.mem()), state_of(&model));
    }
}
