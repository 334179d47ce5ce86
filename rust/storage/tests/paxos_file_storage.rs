//! PaxosFileStorage against a real directory: the promise, the accepted slots and the membership
//! survive a reopen; a torn tail is cut; damage and another protocol's directory are refused; a
//! node restarted from disk never reuses a ballot.

use consensus_core::ProtocolNode;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use consensus_core::paxos::{
    AcceptedSlot, Ballot, Config, HardState, MemStorage, PaxosStorage, RawNode, Ready, Snapshot, Value,
};
use consensus_core::role::Role;
use consensus_core::StorageError;
use consensus_storage::{DurableStorage, FileStorage, Options, PaxosFileStorage};
use proptest::prelude::*;

mod common;
use common::{flip_bit, segments, TempDir};

fn open(dir: &Path) -> Result<PaxosFileStorage, StorageError> {
    PaxosFileStorage::open(dir, Options::default())
}

fn slot(slot: u64, round: u64) -> AcceptedSlot {
    AcceptedSlot {
        slot,
        ballot: Ballot::new(round, 1),
        value: Value::batch(round, vec![Bytes::from(format!("slot-{slot}-{round}"))]),
    }
}

fn ready(accepted: Vec<AcceptedSlot>, hard_state: Option<HardState>) -> Ready {
    Ready { accepted, hard_state, must_sync: true, ..Default::default() }
}

fn hs(round: u64, commit: u64) -> Option<HardState> {
    Some(HardState { promised: Ballot::new(round, 1), commit })
}

fn held(storage: &PaxosFileStorage) -> Vec<(u64, u64)> {
    storage.mem().accepted_slots().iter().map(|s| (s.slot, s.ballot.round)).collect()
}

#[test]
fn promise_accepted_slots_commit_and_members_survive_reopen() {
    let dir = TempDir::new("paxos-reopen");
    {
        let mut s = open(&dir.0).unwrap();
        s.set_initial_members(&[1, 2, 3]).unwrap();
        s.persist(&ready(vec![slot(1, 1), slot(2, 1)], hs(1, 0))).unwrap();
        s.persist(&ready(vec![slot(3, 1)], hs(1, 2))).unwrap();
        s.close().unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().hard_state(), HardState { promised: Ballot::new(1, 1), commit: 2 });
    assert_eq!(held(&s), vec![(1, 1), (2, 1), (3, 1)]);
    assert_eq!(s.mem().accepted_slots()[2], slot(3, 1));
    assert_eq!(s.mem().membership().unwrap().latest(), &[1, 2, 3]);
}

#[test]
fn a_slot_accepted_again_replays_as_its_last_value_and_leaves_other_slots_alone() {
    // Paxos Made Simple §2.2: an acceptor's accepted value per slot is the last one it accepted.
    // Replaying slot records positionally (a log truncated at the first rewritten slot) would
    // lose slot 3, which a quorum may have chosen.
    let dir = TempDir::new("paxos-rewrite");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![slot(1, 1), slot(2, 1), slot(3, 1)], hs(1, 0))).unwrap();
        s.persist(&ready(vec![slot(2, 4)], hs(4, 0))).unwrap();
        s.close().unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(held(&s), vec![(1, 1), (2, 4), (3, 1)]);
    assert_eq!(s.mem().hard_state().promised, Ballot::new(4, 1));
}

#[test]
fn tail_cut_mid_record_is_truncated_and_earlier_records_recovered() {
    let dir = TempDir::new("paxos-torn");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![slot(1, 1), slot(2, 1)], hs(1, 2))).unwrap();
        s.persist(&ready(vec![slot(3, 1)], None)).unwrap();
        s.close().unwrap();
    }
    let last =
        segments(&dir.0).into_iter().rev().find(|p| fs::read(p).unwrap().windows(8).any(|w| w == b"slot-3-1")).unwrap();
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 6).unwrap();
    let s = open(&dir.0).unwrap();
    assert_eq!(held(&s), vec![(1, 1), (2, 1)]);
    assert_eq!(s.mem().hard_state().commit, 2);
    assert!(s.stats().torn_bytes_truncated > 0);
}

#[test]
fn commit_above_the_slots_held_is_lowered_so_the_node_can_restart() {
    // A node refuses to start when its commit index covers a slot it does not hold; a commit
    // record read back must never claim more than the slots held contiguously.
    let dir = TempDir::new("paxos-commit-clamp");
    {
        let mut s = open(&dir.0).unwrap();
        s.set_initial_members(&[1]).unwrap();
        s.persist(&ready(vec![slot(1, 1), slot(2, 1), slot(4, 1)], hs(1, 4))).unwrap();
        s.close().unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().hard_state().commit, 2);
    RawNode::new(1, Config::default(), s.mem().clone(), &[1], 0).expect("restarts");
}

#[test]
fn flipped_bit_in_a_middle_record_is_refused() {
    let dir = TempDir::new("paxos-flip");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![slot(1, 1)], hs(1, 0))).unwrap();
        s.persist(&ready(vec![slot(2, 1)], hs(1, 1))).unwrap();
        s.close().unwrap();
    }
    let segment =
        segments(&dir.0).into_iter().find(|p| fs::read(p).unwrap().windows(8).any(|w| w == b"slot-1-1")).unwrap();
    let at = fs::read(&segment).unwrap().windows(8).position(|w| w == b"slot-1-1").unwrap();
    flip_bit(&segment, at + 2);
    assert!(matches!(open(&dir.0), Err(StorageError::Corrupt { .. })));
}

#[test]
fn compaction_keeps_slots_above_the_snapshot_and_deletes_covered_segments() {
    let dir = TempDir::new("paxos-compact");
    let options = Options { segment_bytes: 1024, ..Options::default() };
    {
        let mut s = PaxosFileStorage::open(&dir.0, options).unwrap();
        s.set_initial_members(&[1, 2, 3]).unwrap();
        for i in 1..=60 {
            s.persist(&ready(vec![slot(i, 1)], hs(1, i.saturating_sub(5)))).unwrap();
        }
        let before = segments(&dir.0).len();
        assert!(before > 3, "{before} segments");
        s.compact(50, Bytes::from_static(b"app state at 50")).unwrap();
        assert!(segments(&dir.0).len() < before);
        assert_eq!(s.mem().first_slot(), 51);
        s.close().unwrap();
    }
    let s = PaxosFileStorage::open(&dir.0, options).unwrap();
    let snapshot = s.mem().snapshot();
    assert_eq!(
        (snapshot.index, snapshot.members.as_slice(), &snapshot.data[..]),
        (50, &[1, 2, 3][..], &b"app state at 50"[..])
    );
    assert_eq!(held(&s).first(), Some(&(51, 1)));
    assert_eq!(held(&s).len(), 10);
    assert_eq!(s.mem().hard_state().commit, 55);
}

#[test]
fn compaction_above_the_commit_is_refused() {
    let dir = TempDir::new("paxos-compact-commit");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready(vec![slot(1, 1), slot(2, 1)], hs(1, 1))).unwrap();
    assert_eq!(s.compact(2, Bytes::new()), Err(StorageError::Unavailable(2)));
}

#[test]
fn installed_snapshot_keeps_later_slots_and_survives_reopen() {
    let dir = TempDir::new("paxos-install");
    {
        let mut s = open(&dir.0).unwrap();
        s.set_initial_members(&[1, 2, 3]).unwrap();
        s.persist(&ready(vec![slot(1, 1), slot(9, 2)], hs(2, 1))).unwrap();
        let snapshot = Snapshot {
            index: 5,
            term: 2,
            members: vec![1, 2, 3, 4],
            pending: vec![],
            data: Bytes::from_static(b"five"),
        };
        s.persist(&Ready { snapshot: Some(snapshot), hard_state: hs(2, 5), must_sync: true, ..Default::default() })
            .unwrap();
        s.close().unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().snapshot().index, 5);
    assert_eq!(held(&s), vec![(9, 2)]);
    assert_eq!(s.mem().membership().unwrap().latest(), &[1, 2, 3, 4]);
    assert_eq!(s.mem().hard_state().commit, 5);
}

#[test]
fn a_raft_directory_is_refused_as_paxos_storage_and_the_other_way_round() {
    let raft_dir = TempDir::new("raft-as-paxos");
    FileStorage::open(&raft_dir.0, Options::default()).unwrap().close().unwrap();
    match open(&raft_dir.0) {
        Err(StorageError::Other(reason)) => assert!(reason.contains("holds a raft log"), "{reason}"),
        other => panic!("expected a protocol mismatch, got {other:?}"),
    }
    let paxos_dir = TempDir::new("paxos-as-raft");
    open(&paxos_dir.0).unwrap().close().unwrap();
    assert!(matches!(FileStorage::open(&paxos_dir.0, Options::default()), Err(StorageError::Other(_))));
}

/// Runs a one-node cluster on `storage` until nothing is ready, persisting every Ready.
fn drive(node: &mut RawNode<MemStorage>, storage: &mut PaxosFileStorage) {
    while node.has_ready() {
        let rd = node.ready().unwrap();
        storage.persist(&rd).unwrap();
        node.advance(rd.mark()).unwrap();
    }
}

#[test]
fn a_node_restarted_from_disk_never_reuses_a_ballot_and_keeps_its_decided_slots() {
    // A ballot led twice could get two values chosen for one slot: the promise must be durable
    // before Prepare leaves, and a restart must lead only higher ballots.
    let dir = TempDir::new("paxos-restart");
    let (ballot, commit) = {
        let mut storage = open(&dir.0).unwrap();
        storage.set_initial_members(&[1]).unwrap();
        let mut node = RawNode::new(1, Config::default(), storage.mem().clone(), &[1], 0).unwrap();
        node.campaign();
        drive(&mut node, &mut storage);
        assert_eq!(node.status().role, Role::Leader);
        for i in 0..5 {
            node.propose(Bytes::from(format!("command-{i}"))).unwrap();
            drive(&mut node, &mut storage);
        }
        let status = node.status();
        storage.close().unwrap();
        (status.ballot, status.commit)
    };
    assert!(commit >= 5);
    let mut storage = open(&dir.0).unwrap();
    assert_eq!(storage.mem().hard_state().promised, ballot);
    let mut node = RawNode::new(1, Config::default(), storage.mem().clone(), &[1], 0).unwrap();
    assert!(node.status().commit >= commit);
    node.campaign();
    drive(&mut node, &mut storage);
    let status = node.status();
    assert_eq!(status.role, Role::Leader);
    assert!(status.ballot > ballot, "ballot {} reused after restart (was {ballot})", status.ballot);
}

/// A compaction or installed snapshot without members would be written, then refused at the next
/// open (a snapshot names the membership): it is refused before anything is written.
#[test]
fn a_compaction_never_writes_a_snapshot_that_open_refuses() {
    let dir = TempDir::new("review-paxos-members");
    {
        let mut s = PaxosFileStorage::open(&dir.0, Options::default()).unwrap();
        let slot = AcceptedSlot { slot: 1, ballot: Ballot::new(1, 1), value: Value::batch(1, vec![Bytes::from("c")]) };
        s.persist(&Ready {
            accepted: vec![slot],
            hard_state: Some(HardState { promised: Ballot::new(1, 1), commit: 1 }),
            must_sync: true,
            ..Default::default()
        })
        .unwrap();
        // Either refused here, or written so that it reads back.
        if s.compact(1, Bytes::from_static(b"state")).is_err() {
            return;
        }
        s.close().unwrap();
    }
    PaxosFileStorage::open(&dir.0, Options::default()).expect("the directory reopens after a successful compact");
}

// ------------------------------------------------------------------------------ properties

/// One step of a random workload: a Ready (slots accepted at `round`, an optional new promise and
/// commit), a compaction, or a restart.
#[derive(Debug, Clone)]
enum Op {
    Persist { slots: Vec<u64>, round: u64, promise: bool, commit_to_held: bool },
    Compact,
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::collection::vec(1u64..40, 0..5), 1u64..5, any::<bool>(), any::<bool>())
            .prop_map(|(slots, round, promise, commit_to_held)| Op::Persist { slots, round, promise, commit_to_held }),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// The Ready a `Persist` op stands for, given what the model holds.
fn ready_of(model: &MemStorage, slots: &[u64], round: u64, promise: bool, commit_to_held: bool) -> Ready {
    let core = model.rl();
    let held = core.hard_state();
    let accepted: Vec<AcceptedSlot> = slots.iter().map(|&s| slot(s, round)).collect();
    let mut hard_state = None;
    if promise || commit_to_held {
        let promised = if promise { Ballot::new(held.promised.round + 1, 1) } else { held.promised };
        // A commit index only ever covers slots held without a gap (what the core guarantees).
        let mut through = core.contiguous_through();
        let extra: std::collections::BTreeSet<u64> = slots.iter().copied().collect();
        while extra.contains(&(through + 1)) {
            through += 1;
        }
        let commit = if commit_to_held { held.commit.max(through) } else { held.commit };
        hard_state = Some(HardState { promised, commit });
    }
    Ready { accepted, hard_state, must_sync: true, ..Default::default() }
}

/// The model's view and the file storage's view of what is held.
fn state_of(mem: &MemStorage) -> (HardState, Vec<AcceptedSlot>, u64, Vec<u64>, Bytes) {
    let snapshot = mem.snapshot();
    let members = mem.membership().map(|m| m.latest().to_vec()).unwrap_or_default();
    (mem.hard_state(), mem.accepted_slots(), snapshot.index, members, snapshot.data)
}

fn model_persist(model: &MemStorage, rd: &Ready) {
    let mut core = model.wl();
    core.put_accepted(&rd.accepted);
    if let Some(hs) = rd.hard_state {
        core.set_hard_state(hs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever was persisted, compacted and restarted, reopening the directory gives exactly the
    /// state an in-memory storage given the same calls holds (Paxos Made Live §5: what an acceptor
    /// promised and accepted survives its restarts).
    #[test]
    fn reopening_gives_back_what_an_in_memory_storage_holds(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let dir = TempDir::new("paxos-prop");
        let options = Options { segment_bytes: 1024, ..Options::default() };
        let mut storage = PaxosFileStorage::open(&dir.0, options).unwrap();
        storage.set_initial_members(&[1, 2, 3]).unwrap();
        let model = MemStorage::new(&[1, 2, 3]);
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Persist { slots, round, promise, commit_to_held } => {
                    let rd = ready_of(&model, slots, *round, *promise, *commit_to_held);
                    storage.persist(&rd).unwrap();
                    model_persist(&model, &rd);
                }
                Op::Compact => {
                    let commit = model.hard_state().commit;
                    let data = Bytes::from(format!("state at {commit}"));
                    let expected = model.compact(commit, data.clone());
                    prop_assert_eq!(storage.compact(commit, data), expected);
                }
                Op::Reopen => {
                    storage.close().unwrap();
                    storage = PaxosFileStorage::open(&dir.0, options).unwrap();
                }
            }
            prop_assert_eq!(state_of(storage.mem()), state_of(&model), "after step {} ({:?})", step, op);
        }
        storage.close().unwrap();
        let reopened = PaxosFileStorage::open(&dir.0, options).unwrap();
        prop_assert_eq!(state_of(reopened.mem()), state_of(&model));
    }

    /// A crash can tear the last write anywhere: reopening never fails and gives back the state
    /// after some whole record — never a slot, promise or commit that was not written.
    #[test]
    fn a_tail_torn_anywhere_reopens_to_the_state_after_some_whole_record(
        ops in proptest::collection::vec((proptest::collection::vec(1u64..20, 1..4), 1u64..4, any::<bool>()), 1..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = TempDir::new("paxos-torn-prop");
        let mut storage = open(&dir.0).unwrap();
        storage.set_initial_members(&[1, 2, 3]).unwrap();
        // A fresh segment (its preamble repeats the members): the cut below lands in it.
        storage.close().unwrap();
        let mut storage = open(&dir.0).unwrap();
        let model = MemStorage::new(&[1, 2, 3]);
        // Every state a record boundary can leave: after each Ready's ACCEPTED record, then after
        // its HARD_STATE record.
        let mut states = vec![state_of(&model)];
        for (slots, round, promise) in &ops {
            let rd = ready_of(&model, slots, *round, *promise, true);
            storage.persist(&rd).unwrap();
            model.wl().put_accepted(&rd.accepted);
            states.push(state_of(&model));
            if let Some(hs) = rd.hard_state {
                model.wl().set_hard_state(hs);
                states.push(state_of(&model));
            }
        }
        storage.close().unwrap();
        let last = segments(&dir.0).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len() as usize;
        let header = consensus_storage::format::SEGMENT_HEADER_BYTES;
        let keep = header + cut.index(len - header + 1);
        fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(keep as u64).unwrap();
        let reopened = open(&dir.0).unwrap();
        let found = state_of(reopened.mem());
        prop_assert!(states.contains(&found), "reopened to a state no whole record gives: {:?}", found);
    }
}
