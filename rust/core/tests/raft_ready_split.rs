//! The Ready's two message lists for Raft (docs/design.md §2): a leader's appends may leave before
//! its own write (Raft thesis §10.2.1), while votes and anything sent under a term or vote that is
//! not yet durable wait for the disk (Raft §5, Figure 2: "before responding to RPCs"). The same
//! rule for Paxos is checked in `paxos_scenarios.rs` (PML-5).

use bytes::Bytes;
use consensus_core::raft::storage::MemStorage;
use consensus_core::raft::{Config, RawNode, Ready};
use consensus_core::{ProtocolNode, Role};

fn node(id: u64) -> (RawNode<MemStorage>, MemStorage) {
    let storage = MemStorage::new();
    let config = Config { pre_vote: false, seed: id, ..Config::default() };
    (RawNode::new(id, config, storage.clone(), &[1, 2, 3], &[], 0).unwrap(), storage)
}

fn persist(storage: &MemStorage, rd: &Ready) {
    let mut core = storage.wl();
    core.append(&rd.entries).unwrap();
    if let Some(hard_state) = rd.hard_state {
        core.set_hard_state(hard_state);
    }
}

#[test]
fn votes_wait_for_the_disk_and_a_leaders_appends_do_not() {
    let (mut n1, s1) = node(1);
    let (mut n2, s2) = node(2);

    // §5.2: a candidate's vote for itself must be durable before it asks for votes.
    n1.campaign();
    let rd = n1.ready().unwrap();
    assert!(rd.must_sync && rd.hard_state.unwrap().vote == 1);
    assert!(rd.messages.is_empty(), "vote requests went out before the candidate's own vote was durable");
    assert_eq!(rd.persisted_messages.len(), 2);
    persist(&s1, &rd);
    let request = rd.persisted_messages.iter().find(|(to, _)| *to == 2).unwrap().1.clone();
    n1.advance(rd.mark()).unwrap();

    // A granted vote is a promise: it leaves only once durable.
    n2.step(&request).unwrap();
    let rd = n2.ready().unwrap();
    assert_eq!(rd.hard_state.unwrap().vote, 1);
    assert!(rd.messages.is_empty(), "a vote left before it was durable");
    let response = rd.persisted_messages[0].1.clone();
    persist(&s2, &rd);
    n2.advance(rd.mark()).unwrap();

    // The new leader's appends carry nothing that depends on its own disk: they may go at once.
    n1.step(&response).unwrap();
    assert_eq!(n1.role(), Role::Leader);
    let rd = n1.ready().unwrap();
    assert!(!rd.entries.is_empty(), "the leader's empty entry of its term");
    assert!(!rd.messages.is_empty() && rd.persisted_messages.is_empty());
    persist(&s1, &rd);
    let append = rd.messages.iter().find(|(to, _)| *to == 2).unwrap().1.clone();
    n1.advance(rd.mark()).unwrap();

    // A follower's acknowledgement waits for its write.
    n2.step(&append).unwrap();
    let rd = n2.ready().unwrap();
    assert!(!rd.entries.is_empty() && rd.messages.is_empty());
    let ack = rd.persisted_messages[0].1.clone();
    persist(&s2, &rd);
    n2.advance(rd.mark()).unwrap();
    n1.step(&ack).unwrap();
    if n1.has_ready() {
        let rd = n1.ready().unwrap();
        persist(&s1, &rd);
        n1.advance(rd.mark()).unwrap();
    }

    // And the appends of a proposal go at once too.
    n1.propose(Bytes::from_static(b"x")).unwrap();
    let rd = n1.ready().unwrap();
    assert!(rd.messages.iter().any(|(to, _)| *to == 2) && rd.persisted_messages.is_empty());
}

#[test]
fn every_ready_names_how_far_it_applies() {
    let s1 = MemStorage::new();
    let config = Config { pre_vote: false, seed: 1, ..Config::default() };
    // A single-voter cluster commits on its own write.
    let mut solo = RawNode::new(1, config, s1.clone(), &[1], &[], 0).unwrap();
    solo.campaign();
    let mut applied = 0;
    for _ in 0..4 {
        if !solo.has_ready() {
            solo.propose(Bytes::from_static(b"y")).unwrap();
        }
        let rd = solo.ready().unwrap();
        if let Some(last) = rd.committed_entries.last() {
            assert_eq!(rd.applied_through, last.index);
            applied = last.index;
        } else {
            assert_eq!(rd.applied_through, 0, "a Ready that applies nothing names no index");
        }
        persist(&s1, &rd);
        solo.advance(rd.mark()).unwrap();
    }
    assert!(applied >= 1);
    assert_eq!(solo.applied_index(), applied);
}
