//! Well-formed but hostile peer frames (issue 9, cases 1-4), against both cores: each is refused
//! with a typed error, never a panic or a wrap, and leaves the node's state as it was.

use std::fmt::Debug;

use bytes::Bytes;
use consensus_core::error::Error;
use consensus_core::limits::{INDEX_MAX, TERM_MAX};
use consensus_core::paxos::{self, AcceptedSlot, Ballot, Value, ValueKind};
use consensus_core::raft::{self, wire, ConfChange, Entry, EntryKind, MessageType};
use consensus_core::role::Role;
use consensus_core::sim::hostile::{Cluster, PaxosCluster, RaftCluster, Target};
use consensus_core::ProtocolNode;

fn is_protocol<T: std::fmt::Debug>(outcome: Result<T, Error>) -> bool {
    matches!(outcome, Err(Error::Protocol(_)))
}

/// A 3-node cluster led by node 1, with one command committed.
fn led_cluster<P: Target + 'static>() -> Cluster<P> {
    let mut c = Cluster::<P>::new(3, 7);
    c.elect(1);
    assert_eq!(c.leader(), Some(1));
    c.node(1).propose(Bytes::from_static(b"first")).unwrap();
    c.stabilize();
    c
}

/// Steps `frame` (encoding `m`) into node 2 and asserts it is refused as a protocol error with
/// no change of `state` and nothing sent.
fn assert_refused<P: Target, S: PartialEq + Debug>(
    c: &mut Cluster<P>,
    m: &dyn Debug,
    frame: Bytes,
    state: fn(&Cluster<P>, u64) -> S,
) {
    let to = 2;
    let before = state(c, to);
    let outcome = c.deliver(to, &frame);
    assert!(is_protocol(outcome.clone()), "{m:?} gave {outcome:?}");
    assert_eq!(state(c, to), before, "{m:?} changed the state");
    assert!(c.network.is_empty(), "{m:?} made the node send {:?}", c.network);
}

/// `frame` from node 1 to node 2 is refused on the connection of node 3 (changing nothing) and
/// taken on node 1's.
fn assert_only_the_named_sender_is_heard<P: Target, S: PartialEq + Debug>(
    c: &mut Cluster<P>,
    frame: &Bytes,
    state: fn(&Cluster<P>, u64) -> S,
) {
    let before = state(c, 2);
    assert!(is_protocol(c.node(2).step_from(frame, Some(3))));
    assert_eq!(state(c, 2), before);
    c.node(2).step_from(frame, Some(1)).unwrap();
}

// ------------------------------------------------------------------------------------------ Raft

/// What a refused frame must leave untouched: term, vote, commit, leader, role, last index and
/// every `(index, term)` of the log.
type RaftState = (u64, u64, u64, u64, Role, u64, Vec<(u64, u64)>);

fn raft_state(c: &RaftCluster, id: u64) -> RaftState {
    let r = &c.nodes[&id].raft;
    let log = r.log.all_entries().iter().map(|e| (e.index, e.term)).collect();
    (r.term, r.vote, r.log.committed, r.leader, r.role, r.log.last_index(), log)
}

/// A 3-node Raft cluster led by node 1, with one entry committed.
fn raft_cluster() -> RaftCluster {
    led_cluster()
}

fn raft_msg(msg_type: MessageType, from: u64, to: u64, term: u64) -> raft::Message {
    raft::Message::new(msg_type, from, to, term)
}

/// Steps `m` into node `to` and asserts it is refused as a protocol error with no state change.
fn assert_raft_refused(c: &mut RaftCluster, m: &raft::Message) {
    assert_refused(c, m, wire::encode(m), raft_state);
}

#[test]
fn case_1_raft_frame_with_term_0_or_wrong_to_or_from_0_or_own_id_is_refused() {
    let mut c = raft_cluster();
    let term = c.nodes[&2].raft.term;
    for msg_type in
        [MessageType::Heartbeat, MessageType::AppendEntries, MessageType::RequestVote, MessageType::TimeoutNow]
    {
        assert_raft_refused(&mut c, &raft_msg(msg_type, 1, 2, 0));
    }
    assert_raft_refused(&mut c, &raft_msg(MessageType::Heartbeat, 1, 3, term));
    assert_raft_refused(&mut c, &raft_msg(MessageType::Heartbeat, 0, 2, term));
    assert_raft_refused(&mut c, &raft_msg(MessageType::Heartbeat, 2, 2, term));
}

#[test]
fn case_1_raft_forwarded_requests_without_a_term_still_work() {
    let mut c = raft_cluster();
    // A follower's proposal goes to the leader with term 0 and commits.
    assert_eq!(c.node(2).propose(Bytes::from_static(b"forwarded")).unwrap(), 0);
    c.stabilize();
    assert!(c.committed_on_majority(b"forwarded"));
    // A follower's transfer request names the transferee in `index`, its own id in `from`.
    c.node(2).transfer_leader(3).unwrap();
    c.stabilize();
    assert_eq!(c.leader(), Some(3));
}

#[test]
fn case_1_raft_frame_whose_from_is_not_the_connection_sender_is_refused() {
    let mut c = raft_cluster();
    let term = c.nodes[&2].raft.term;
    let frame = wire::encode(&raft_msg(MessageType::Heartbeat, 1, 2, term));
    assert_only_the_named_sender_is_heard(&mut c, &frame, raft_state);
}

#[test]
fn case_2_raft_heartbeat_at_u64_max_is_refused_and_the_term_does_not_wrap() {
    let mut c = raft_cluster();
    for term in [u64::MAX, TERM_MAX + 1] {
        assert_raft_refused(&mut c, &raft_msg(MessageType::Heartbeat, 1, 2, term));
        assert_raft_refused(&mut c, &raft_msg(MessageType::RequestVote, 3, 2, term));
    }
    let mut m = raft_msg(MessageType::Heartbeat, 1, 2, 3);
    m.commit = u64::MAX;
    assert_raft_refused(&mut c, &m);
}

#[test]
fn case_2_raft_node_at_term_max_cannot_campaign_and_never_wraps() {
    let mut c = RaftCluster::new(3, 7);
    // TERM_MAX itself is a valid term: the node follows it.
    c.deliver(2, &wire::encode(&raft_msg(MessageType::Heartbeat, 1, 2, TERM_MAX))).unwrap();
    assert_eq!(c.nodes[&2].raft.term, TERM_MAX);
    assert!(c.nodes[&2].term_exhausted());
    c.network.clear();
    c.node(2).campaign();
    for _ in 0..50 {
        c.node(2).tick();
    }
    c.process(2);
    let node = &c.nodes[&2].raft;
    assert_eq!(node.term, TERM_MAX, "the term never wraps");
    assert_eq!(node.role, Role::Follower);
    assert!(c.network.is_empty(), "no vote request at a wrapped term: {:?}", c.network);
}

fn append(from: u64, term: u64, index: u64, log_term: u64, entries: &[(u64, u64)]) -> raft::Message {
    let mut m = raft_msg(MessageType::AppendEntries, from, 2, term);
    m.index = index;
    m.log_term = log_term;
    m.entries = entries.iter().map(|&(i, t)| Entry::new(i, t, EntryKind::Normal, Bytes::from_static(b"x"))).collect();
    m
}

#[test]
fn case_3_raft_append_whose_entries_do_not_start_at_index_plus_one_is_refused_without_a_panic() {
    let mut c = raft_cluster();
    let (term, last) = (c.nodes[&2].raft.term, c.nodes[&2].raft.log.last_index());
    let log_term = c.nodes[&2].raft.log.last_term();
    // Before validation this one panicked in log.rs (the conflict index below `index + 1`).
    assert_raft_refused(&mut c, &append(1, term, last, log_term, &[(1, term)]));
    assert_raft_refused(&mut c, &append(1, term, last, log_term, &[(last + 2, term)]));
    assert_raft_refused(&mut c, &append(1, term, last, log_term, &[(last + 1, term), (last + 3, term)]));
    assert_raft_refused(&mut c, &append(1, term, INDEX_MAX, log_term, &[(0, term)]));
}

#[test]
fn case_3_raft_append_with_decreasing_terms_or_terms_above_the_message_is_refused() {
    let mut c = raft_cluster();
    let (term, last) = (c.nodes[&2].raft.term, c.nodes[&2].raft.log.last_index());
    let log_term = c.nodes[&2].raft.log.last_term();
    assert_raft_refused(&mut c, &append(1, term, last, log_term, &[(last + 1, term + 1)]));
    assert_raft_refused(&mut c, &append(1, term + 1, last, log_term, &[(last + 1, term + 1), (last + 2, term)]));
    assert_raft_refused(&mut c, &append(1, term, last, log_term, &[(last + 1, 0)]));
}

#[test]
fn case_3_raft_append_response_beyond_the_leaders_log_is_refused() {
    let mut c = raft_cluster();
    let term = c.nodes[&1].raft.term;
    let mut m = raft_msg(MessageType::AppendEntriesResponse, 2, 1, term);
    m.index = c.nodes[&1].raft.log.last_index() + 1;
    assert!(is_protocol(c.deliver(1, &wire::encode(&m))));
    m.index = u64::MAX;
    assert!(is_protocol(c.deliver(1, &wire::encode(&m))));
    assert_eq!(c.nodes[&1].raft.role, Role::Leader);
}

#[test]
fn case_4_raft_append_carrying_a_conf_change_that_does_not_decode_is_refused() {
    let mut c = raft_cluster();
    let (term, last) = (c.nodes[&2].raft.term, c.nodes[&2].raft.log.last_index());
    let log_term = c.nodes[&2].raft.log.last_term();
    let mut m = append(1, term, last, log_term, &[(last + 1, term)]);
    m.entries[0].kind = EntryKind::ConfChange;
    m.entries[0].data = Bytes::from_static(b"\x09garbage");
    assert_raft_refused(&mut c, &m);
    // And as a forwarded proposal to the leader.
    let mut propose = raft_msg(MessageType::Propose, 2, 1, 0);
    propose.entries = m.entries.clone();
    assert!(is_protocol(c.deliver(1, &wire::encode(&propose))));
}

#[test]
fn case_4_raft_committed_conf_change_that_does_not_decode_is_a_config_error_and_changes_nothing() {
    let mut c = raft_cluster();
    let before = c.nodes[&1].raft.conf_state();
    let garbage = Entry::new(9, 1, EntryKind::ConfChange, Bytes::from_static(b"\x01\x02garbage"));
    let outcome = c.node(1).apply_conf_change_entry(&garbage);
    assert!(matches!(outcome, Err(Error::Config { field: "conf_change", .. })), "{outcome:?}");
    assert_eq!(c.nodes[&1].raft.conf_state(), before);
    // A change that decodes but does not apply (removing a non-voter) is refused the same way.
    let change = ConfChange { remove_voters: vec![9], ..Default::default() };
    let entry = Entry::new(9, 1, EntryKind::ConfChange, wire::encode_conf_change(&change));
    assert!(matches!(c.node(1).apply_conf_change_entry(&entry), Err(Error::Config { .. })));
    assert_eq!(c.nodes[&1].raft.conf_state(), before);
    // The node goes on: a write still commits.
    c.node(1).propose(Bytes::from_static(b"after")).unwrap();
    c.stabilize();
    assert!(c.committed_on_majority(b"after"));
}

// ----------------------------------------------------------------------------------- Multi-Paxos

/// Promise, highest round seen, commit, leader, role and every `(slot, ballot)` held.
type PaxosState = (Ballot, u64, u64, u64, Role, Vec<(u64, Ballot)>);

fn paxos_state(c: &PaxosCluster, id: u64) -> PaxosState {
    let p = &c.nodes[&id].paxos;
    let slots = p.slots.values().map(|s| (s.slot, s.ballot)).collect();
    (p.promised, p.max_round_seen, p.commit, p.leader, p.role, slots)
}

/// A 3-node Multi-Paxos cluster led by node 1, with one value chosen.
fn paxos_cluster() -> PaxosCluster {
    led_cluster()
}

fn assert_paxos_refused(c: &mut PaxosCluster, m: &paxos::Message) {
    assert_refused(c, m, paxos::wire::encode(m), paxos_state);
}

fn accept(from: u64, ballot: Ballot, slots: &[u64]) -> paxos::Message {
    let mut m = paxos::Message::new(paxos::MessageType::Accept, from, 2, ballot);
    m.entries = slots
        .iter()
        .map(|s| AcceptedSlot { slot: *s, ballot, value: Value::batch(ballot.round, vec![Bytes::from_static(b"x")]) })
        .collect();
    m
}

#[test]
fn case_1_paxos_frame_with_round_0_or_wrong_to_or_from_0_or_own_id_is_refused() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    assert_paxos_refused(&mut c, &accept(1, Ballot::new(0, 1), &[]));
    let mut commit = paxos::Message::new(paxos::MessageType::Commit, 1, 3, ballot);
    assert_paxos_refused(&mut c, &commit);
    commit.to = 2;
    commit.from = 0;
    assert_paxos_refused(&mut c, &commit);
    commit.from = 2;
    assert_paxos_refused(&mut c, &commit);
}

#[test]
fn case_1_paxos_frame_whose_from_is_not_the_connection_sender_is_refused() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let frame = paxos::wire::encode(&paxos::Message::new(paxos::MessageType::Commit, 1, 2, ballot));
    assert_only_the_named_sender_is_heard(&mut c, &frame, paxos_state);
}

#[test]
fn case_2_paxos_prepare_at_u64_max_is_refused_and_the_promise_never_goes_down() {
    let mut c = paxos_cluster();
    let mut prepare = paxos::Message::new(paxos::MessageType::Prepare, 3, 2, Ballot::new(u64::MAX, 3));
    assert_paxos_refused(&mut c, &prepare);
    prepare.ballot = Ballot::new(TERM_MAX + 1, 3);
    assert_paxos_refused(&mut c, &prepare);
    // Before the fix: the acceptor promised round 2^64-1, then its own campaign wrapped to round 0.
    let nack = paxos::Message::new(paxos::MessageType::Nack, 3, 2, Ballot::new(u64::MAX, 3));
    assert_paxos_refused(&mut c, &nack);
}

#[test]
fn case_2_paxos_acceptor_at_term_max_cannot_campaign_and_never_lowers_its_promise() {
    let mut c = paxos_cluster();
    let top = Ballot::new(TERM_MAX, 3);
    let prepare = paxos::Message::new(paxos::MessageType::Prepare, 3, 2, top);
    c.deliver(2, &paxos::wire::encode(&prepare)).unwrap();
    assert_eq!(c.nodes[&2].paxos.promised, top);
    assert!(c.nodes[&2].term_exhausted());
    c.network.clear();
    c.node(2).campaign();
    for _ in 0..50 {
        c.node(2).tick();
    }
    c.process(2);
    assert_eq!(c.nodes[&2].paxos.promised, top, "the promise never goes down");
    let prepares =
        c.network.iter().filter(|(_, _, f)| paxos::wire::decode(f).unwrap().msg_type == paxos::MessageType::Prepare);
    assert_eq!(prepares.count(), 0);
}

#[test]
fn case_3_paxos_accept_with_a_gap_or_descending_or_slot_0_is_refused() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let next = c.nodes[&2].paxos.commit + 1;
    assert_paxos_refused(&mut c, &accept(1, ballot, &[next, next + 2]));
    assert_paxos_refused(&mut c, &accept(1, ballot, &[next + 1, next]));
    assert_paxos_refused(&mut c, &accept(1, ballot, &[0, 1]));
    let mut later_round = accept(1, ballot, &[next]);
    later_round.entries[0].value.round = ballot.round + 1;
    assert_paxos_refused(&mut c, &later_round);
}

#[test]
fn case_3_paxos_accept_far_beyond_the_commit_is_dropped_and_the_cluster_goes_on() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let before = paxos_state(&c, 2);
    c.deliver(2, &paxos::wire::encode(&accept(1, ballot, &[INDEX_MAX]))).unwrap();
    assert_eq!(paxos_state(&c, 2), before, "a far-away slot is not stored");
    c.network.clear();
    c.node(1).propose(Bytes::from_static(b"after")).unwrap();
    for _ in 0..3 {
        c.tick_all(); // followers learn the commit from the next heartbeats
    }
    assert!(c.committed_on_majority(b"after"));
}

#[test]
fn case_4_paxos_membership_value_that_does_not_decode_is_refused() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let next = c.nodes[&2].paxos.commit + 1;
    let mut m = accept(1, ballot, &[next]);
    m.entries[0].value = Value { kind: ValueKind::Reconfig, round: ballot.round, commands: vec![Bytes::from("junk")] };
    assert_paxos_refused(&mut c, &m);
    m.entries[0].value.commands = vec![paxos::encode_reconfig(4, &[]), paxos::encode_reconfig(4, &[1])];
    assert_paxos_refused(&mut c, &m);
}

#[test]
fn case_4_paxos_snapshot_without_members_is_refused_before_storage_sees_it() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let mut m = paxos::Message::new(paxos::MessageType::Snapshot, 1, 2, ballot);
    m.snapshot = Some(paxos::Snapshot { index: 50, term: 1, members: vec![], ..Default::default() });
    assert_paxos_refused(&mut c, &m);
}

#[test]
fn paxos_promise_sent_before_an_installed_snapshot_is_persisted_carries_no_empty_snapshot() {
    let mut c = paxos_cluster();
    let ballot = c.nodes[&2].paxos.promised;
    let mut install = paxos::Message::new(paxos::MessageType::Snapshot, 1, 2, ballot);
    install.commit = 50;
    install.snapshot = Some(paxos::Snapshot { index: 50, term: 1, members: vec![1, 2, 3], ..Default::default() });
    // Both frames are stepped before node 2's Ready is persisted: its storage still holds no snapshot.
    c.node(2).step(&paxos::wire::encode(&install)).unwrap();
    let mut prepare = paxos::Message::new(paxos::MessageType::Prepare, 3, 2, Ballot::new(ballot.round + 1, 3));
    prepare.index = 1;
    c.node(2).step(&paxos::wire::encode(&prepare)).unwrap();
    c.network.clear();
    c.process(2);
    let promises: Vec<Bytes> = c
        .network
        .iter()
        .filter(|(_, to, f)| *to == 3 && paxos::wire::decode(f).unwrap().msg_type == paxos::MessageType::Promise)
        .map(|(_, _, f)| f.clone())
        .collect();
    assert_eq!(promises.len(), 1);
    c.network.clear();
    // A correct acceptor's promise passes the candidate's door.
    c.deliver(3, &promises[0]).unwrap();
}
