//! Multi-Paxos scenarios, each named after the paper section or the shipped bug it checks
//! (Lamport, "Paxos Made Simple" §2.2 and §3; Chandra et al., "Paxos Made Live" §5). A small
//! harness runs real `RawNode`s on `MemStorage` with hand-controlled delivery.

use consensus_core::ProtocolNode;
use std::collections::BTreeMap;

use bytes::Bytes;
use consensus_core::error::{DecodeError, DropReason, Error};
use consensus_core::paxos::{
    wire, AcceptedSlot, Ballot, Config, Entry, HardState, MemStorage, Message, MessageType, RawNode, Ready, Value,
};
use consensus_core::role::Role;

struct Cluster {
    ids: Vec<u64>,
    nodes: BTreeMap<u64, RawNode<MemStorage>>,
    storages: BTreeMap<u64, MemStorage>,
    /// Frames sent and not yet delivered: (from, to, frame).
    network: Vec<(u64, u64, Bytes)>,
    applied: BTreeMap<u64, Vec<Entry>>,
    read_states: BTreeMap<u64, Vec<(u64, Bytes)>>,
    snapshots_installed: BTreeMap<u64, u64>,
    /// Nodes cut off from everyone: frames to and from them are dropped.
    isolated: Vec<u64>,
    /// Every message type delivered, in order.
    delivered: Vec<(u64, u64, MessageType)>,
    config: Config,
}

fn config() -> Config {
    Config { election_tick: 10, heartbeat_tick: 1, seed: 1, ..Config::default() }
}

impl Cluster {
    fn new(n: u64, config: Config) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
        Self::with_storages(ids, storages, config)
    }

    fn with_storages(ids: Vec<u64>, storages: BTreeMap<u64, MemStorage>, config: Config) -> Self {
        let nodes = ids
            .iter()
            .map(|id| (*id, RawNode::new(*id, config.clone(), storages[id].clone(), &ids, 0).unwrap()))
            .collect();
        Cluster {
            ids,
            nodes,
            storages,
            network: Vec::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            snapshots_installed: BTreeMap::new(),
            isolated: Vec::new(),
            delivered: Vec::new(),
            config,
        }
    }

    fn node(&mut self, id: u64) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Runs node `id`'s Ready loop: persist, send, apply, advance.
    fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().unwrap();
            persist(&self.storages[&id], &rd);
            for (to, frame) in rd.messages.iter().chain(&rd.persisted_messages) {
                self.network.push((id, *to, frame.clone()));
            }
            if let Some(snapshot) = &rd.snapshot {
                self.snapshots_installed.insert(id, snapshot.index);
            }
            self.applied.entry(id).or_default().extend(rd.committed_entries.iter().cloned());
            for rs in &rd.read_states {
                self.read_states.entry(id).or_default().push((rs.index, rs.context.clone()));
            }
            self.node(id).advance(rd.mark()).unwrap();
        }
    }

    fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    /// Takes the frames in flight (after processing every node).
    fn take_network(&mut self) -> Vec<(u64, u64, Bytes)> {
        self.process_all();
        std::mem::take(&mut self.network)
    }

    fn deliver(&mut self, from: u64, to: u64, frame: &Bytes) {
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return;
        }
        let msg = wire::decode(frame).unwrap();
        self.delivered.push((from, to, msg.msg_type));
        self.node(to).step(frame).unwrap();
        self.process(to);
    }

    /// Delivers everything in flight until the network is quiet.
    fn stabilize(&mut self) {
        self.stabilize_watching(|_| {});
    }

    /// `stabilize`, showing the cluster to `watch` after every delivery.
    fn stabilize_watching(&mut self, mut watch: impl FnMut(&Cluster)) {
        for _ in 0..10_000 {
            let batch = self.take_network();
            if batch.is_empty() {
                return;
            }
            for (from, to, frame) in batch {
                self.deliver(from, to, &frame);
                watch(self);
            }
        }
        panic!("the cluster did not quiesce");
    }

    fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.node(id).tick();
        }
        self.stabilize();
    }

    fn elect(&mut self, id: u64) {
        self.node(id).campaign();
        self.stabilize();
        assert_eq!(self.nodes[&id].paxos.role, Role::Leader, "node {id} should lead");
    }

    fn propose(&mut self, id: u64, data: &str) -> u64 {
        let slot = self.node(id).propose(Bytes::copy_from_slice(data.as_bytes())).unwrap();
        self.stabilize();
        slot
    }

    fn applied_data(&self, id: u64) -> Vec<(u64, String)> {
        self.applied
            .get(&id)
            .map(|entries| entries.iter().map(|e| (e.index, String::from_utf8_lossy(&e.data).into_owned())).collect())
            .unwrap_or_default()
    }

    /// Rebuilds node `id` from its storage, as after a crash (unpersisted state is lost).
    fn restart(&mut self, id: u64, applied: u64) {
        let node = RawNode::new(id, self.config.clone(), self.storages[&id].clone(), &self.ids, applied).unwrap();
        self.nodes.insert(id, node);
    }
}

fn persist(storage: &MemStorage, rd: &Ready) {
    let mut core = storage.wl();
    if let Some(snapshot) = &rd.snapshot {
        core.apply_snapshot(snapshot.clone()).unwrap();
    }
    core.put_accepted(&rd.accepted);
    if let Some(hs) = rd.hard_state {
        core.set_hard_state(hs);
    }
}

fn msg_type(frame: &Bytes) -> MessageType {
    wire::decode(frame).unwrap().msg_type
}

fn batch(round: u64, data: &str) -> Value {
    Value::batch(round, vec![Bytes::copy_from_slice(data.as_bytes())])
}

// -------------------------------------------------------------------------------------------------

/// Paxos Made Simple §2.2 (and the classic bug): a proposer may count a promise only if it answers
/// the ballot it is campaigning with now. A promise for its previous, abandoned ballot says
/// nothing about what the acceptor will refuse for the new one.
#[test]
fn pms_2_2_promise_for_an_older_ballot_is_not_counted() {
    let mut c = Cluster::new(3, config());
    c.node(1).campaign();
    let old_prepares = c.take_network();
    assert_eq!(old_prepares.len(), 2);
    // The first attempt's Prepares are slow; node 1 tries again with a higher ballot.
    c.node(1).campaign();
    let new_prepares = c.take_network();
    let ballot = c.nodes[&1].paxos.promised;
    assert_eq!(ballot.round, 2);
    // Now the old Prepares arrive and the acceptors promise the old ballot.
    for (from, to, frame) in &old_prepares {
        c.node(*to).step(frame).unwrap();
        c.process(*to);
        let _ = from;
    }
    for (from, to, frame) in c.take_network() {
        assert_eq!(msg_type(&frame), MessageType::Promise);
        c.deliver(from, to, &frame);
    }
    assert_eq!(c.nodes[&1].paxos.role, Role::Candidate, "promises for ballot 1.1 must not elect 2.1");
    for (from, to, frame) in new_prepares {
        c.deliver(from, to, &frame);
    }
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);
}

/// Paxos Made Live §5 (a bug shipped by several implementations): a restarted proposer must never
/// reuse a ballot, so its next ballot comes from the persisted promise, not from memory.
#[test]
fn pml_5_ballot_never_reused_after_restart() {
    let mut c = Cluster::new(3, config());
    c.isolated = vec![1];
    c.node(1).campaign();
    c.process(1);
    let first = c.nodes[&1].paxos.promised;
    assert_eq!(c.storages[&1].rl().hard_state().promised, first, "the own promise is persisted with the Prepare");
    c.restart(1, 0);
    c.node(1).campaign();
    c.process(1);
    let second = c.nodes[&1].paxos.promised;
    assert!(second > first && second.round > first.round, "{second} after {first}");
    // Higher rounds seen in a Nack are skipped too.
    c.isolated.clear();
    c.node(2).campaign();
    c.node(2).campaign();
    c.node(2).campaign();
    c.stabilize();
    let seen = c.nodes[&2].paxos.promised;
    c.node(1).campaign();
    c.stabilize();
    assert!(c.nodes[&1].paxos.promised > seen);
}

/// Paxos Made Simple §3: a new leader merges the acceptors' logs slot by slot: the value of the
/// highest ballot wins at each slot, gaps become no-ops, and every value stays at its own slot even
/// when the logs have different lengths (the "wrong offset" bug).
#[test]
fn pms_3_new_leader_merges_logs_of_different_lengths_at_the_right_slots() {
    // Five acceptors; 4 and 5 stay unreachable so the Phase 1 quorum is exactly {1, 2, 3}.
    let ids = vec![1, 2, 3, 4, 5];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    let b11 = Ballot::new(1, 1);
    let b22 = Ballot::new(2, 2);
    {
        let mut s2 = storages[&2].wl();
        s2.put_accepted(&[
            AcceptedSlot { slot: 1, ballot: b11, value: batch(1, "a") },
            AcceptedSlot { slot: 3, ballot: b11, value: batch(1, "c") },
        ]);
        s2.set_hard_state(HardState { promised: b11, commit: 0 });
        let mut s3 = storages[&3].wl();
        s3.put_accepted(&[
            AcceptedSlot { slot: 1, ballot: b22, value: batch(2, "A") },
            AcceptedSlot { slot: 5, ballot: b11, value: batch(1, "e") },
        ]);
        s3.set_hard_state(HardState { promised: b22, commit: 0 });
    }
    let mut c = Cluster::with_storages(ids, storages, config());
    // A first attempt at ballot 1.1 reaches only node 3, which promised 2.2: Nacked.
    c.isolated = vec![2, 4, 5];
    c.node(1).campaign();
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Follower);
    c.isolated = vec![4, 5];
    c.elect(1);
    assert_eq!(c.nodes[&1].paxos.promised.round, 3);
    assert_eq!(c.nodes[&1].paxos.phase1_end, 5);
    let slot = c.propose(1, "f");
    assert_eq!(slot, 6, "new proposals come after the Phase 1 range");
    let expected: Vec<(u64, String)> = vec![(1, "A".into()), (3, "c".into()), (5, "e".into()), (6, "f".into())];
    assert_eq!(c.applied_data(1), expected);
    c.tick_all();
    assert_eq!(c.applied_data(2), expected);
    assert_eq!(c.applied_data(3), expected);
    // The re-proposed values keep the round they were first proposed in.
    let terms: Vec<u64> = c.applied[&1].iter().map(|e| e.term).collect();
    assert_eq!(terms, vec![2, 1, 1, 3]);
}

/// Paxos Made Live §5 (persist barrier): a Promise or an Accepted leaves a node only in the Ready
/// that persists the promise or the accepted value, with `must_sync`; the leader counts its own
/// acceptance only after its own persist.
#[test]
fn pml_5_promise_and_accepted_are_sent_only_with_what_they_depend_on() {
    let mut c = Cluster::new(3, config());
    c.node(1).campaign();
    let prepares = c.take_network();
    let (_, to, frame) = prepares[0].clone();
    c.node(to).step(&frame).unwrap();
    let rd = c.node(to).ready().unwrap();
    assert!(rd.persisted_messages.iter().any(|(_, f)| msg_type(f) == MessageType::Promise));
    assert!(rd.messages.is_empty(), "a promise waits for the disk");
    assert!(rd.must_sync);
    assert_eq!(rd.hard_state.unwrap().promised, Ballot::new(1, 1), "the promise is in the same Ready");
    persist(&c.storages[&to], &rd);
    for (dest, frame) in &rd.persisted_messages {
        c.network.push((to, *dest, frame.clone()));
    }
    c.node(to).advance(rd.mark()).unwrap();
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);

    c.node(1).propose(Bytes::from_static(b"x")).unwrap();
    let rd = c.node(1).ready().unwrap();
    assert_eq!(rd.accepted.len(), 1);
    // The leader's accepts may leave before its own write (its promise is already durable).
    assert!(rd.persisted_messages.is_empty());
    let accepts: Vec<Bytes> = rd.messages.iter().map(|(_, f)| f.clone()).collect();
    let (follower_id, accept) = (rd.messages[0].0, accepts[0].clone());
    // A follower's Accepted comes out with the accepted slot to persist.
    c.node(follower_id).step(&accept).unwrap();
    let frd = c.node(follower_id).ready().unwrap();
    assert!(frd.persisted_messages.iter().any(|(_, f)| msg_type(f) == MessageType::Accepted));
    assert!(frd.messages.is_empty(), "an Accepted waits for the disk");
    assert_eq!(frd.accepted.len(), 1);
    assert!(frd.must_sync);
    let accepted_frame = frd.persisted_messages[0].1.clone();
    persist(&c.storages[&follower_id], &frd);
    c.node(follower_id).advance(frd.mark()).unwrap();
    // One follower's Accepted plus the leader's own acceptance make a quorum of 3, but the
    // leader's own acceptance counts only once its Ready is persisted and advanced.
    c.node(1).step(&accepted_frame).unwrap();
    assert_eq!(c.nodes[&1].paxos.commit, 0, "own acceptance not yet durable");
    persist(&c.storages[&1], &rd);
    c.node(1).advance(rd.mark()).unwrap();
    assert_eq!(c.nodes[&1].paxos.commit, 1);
}

/// Paxos Made Simple §3 (leader change): an acceptor that promised a higher ballot answers the
/// old leader with a Nack carrying that ballot, and the old leader steps down at once.
#[test]
fn pms_3_nack_makes_a_stale_leader_step_down() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.propose(1, "a");
    c.isolated = vec![1];
    c.elect(2);
    c.isolated.clear();
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader, "node 1 has not heard of ballot 2 yet");
    c.node(1).propose(Bytes::from_static(b"stale")).unwrap();
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Follower);
    assert!(c
        .delivered
        .iter()
        .any(|(from, to, t)| (*from, *to, *t) == (3, 1, MessageType::Nack)
            || (*from, *to, *t) == (2, 1, MessageType::Nack)));
    c.tick_all();
    assert_eq!(c.nodes[&1].paxos.leader, 2);
    for id in 1..=3 {
        assert!(c.applied_data(id).iter().all(|(_, d)| d != "stale"), "the stale leader's value was not chosen");
    }
}

/// Paxos Made Simple §3 (progress): two proposers that keep pre-empting each other converge,
/// because a Nacked candidate backs off for a randomized timeout before trying again.
#[test]
fn pms_3_duelling_proposers_converge() {
    let mut c = Cluster::new(3, config());
    // Both start at once, and their Prepares cross.
    c.node(1).campaign();
    c.node(2).campaign();
    c.stabilize();
    for _ in 0..200 {
        c.tick_all();
        let leaders: Vec<u64> = c.ids.iter().copied().filter(|id| c.nodes[id].paxos.role == Role::Leader).collect();
        if leaders.len() == 1 {
            let leader = leaders[0];
            c.propose(leader, "v");
            c.tick_all();
            for id in 1..=3 {
                assert_eq!(c.applied_data(id).last().map(|(_, d)| d.clone()), Some("v".to_string()));
            }
            return;
        }
    }
    panic!("no single leader after 200 ticks");
}

/// Catch-up: a replica that missed decided slots learns them from the leader's CatchUp messages.
#[test]
fn lagging_replica_catches_up_by_catch_up_messages() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.isolated = vec![3];
    for i in 0..20 {
        c.propose(1, &format!("v{i}"));
    }
    assert!(c.applied_data(3).is_empty());
    c.isolated.clear();
    for _ in 0..5 {
        c.tick_all();
    }
    assert_eq!(c.applied_data(3), c.applied_data(1));
    assert!(c.delivered.iter().any(|(_, to, t)| *to == 3 && *t == MessageType::CatchUp));
}

/// Catch-up past the trimmed prefix: the leader compacted the slots the replica lacks, so it sends
/// its snapshot (with the membership) and then the slots after it.
#[test]
fn lagging_replica_catches_up_by_snapshot() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.isolated = vec![3];
    for i in 0..10 {
        c.propose(1, &format!("v{i}"));
    }
    c.storages[&1].compact(8, Bytes::from_static(b"state@8")).unwrap();
    c.tick_all();
    assert_eq!(c.nodes[&1].paxos.first_slot, 9, "the leader trimmed its memory");
    c.isolated.clear();
    for _ in 0..5 {
        c.tick_all();
    }
    assert_eq!(c.snapshots_installed.get(&3), Some(&8));
    assert_eq!(c.storages[&3].rl().snapshot().data, Bytes::from_static(b"state@8"));
    assert_eq!(c.storages[&3].rl().snapshot().members, vec![1, 2, 3]);
    assert_eq!(c.applied_data(3), vec![(9, "v8".to_string()), (10, "v9".to_string())]);
    assert_eq!(c.nodes[&3].paxos.commit, 10);
}

/// Read index: the leader answers only after a quorum acknowledged a heartbeat carrying the read's
/// context for its ballot, and with the commit index taken when the read arrived.
#[test]
fn read_index_is_answered_only_after_leadership_is_confirmed() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.propose(1, "a");
    c.node(1).read_index(Bytes::from_static(b"r1")).unwrap();
    let heartbeats = c.take_network();
    assert!(!c.read_states.contains_key(&1));
    // Acks lost: still no answer.
    for (from, to, frame) in &heartbeats {
        c.node(*to).step(frame).unwrap();
        c.process(*to);
        let _ = from;
    }
    let acks = c.take_network();
    assert!(!c.read_states.contains_key(&1));
    // A quorum (one follower plus the leader) acknowledges: answered at the commit index.
    let (from, to, frame) = acks.into_iter().find(|(_, _, f)| msg_type(f) == MessageType::CommitAck).unwrap();
    c.deliver(from, to, &frame);
    assert_eq!(c.read_states[&1], vec![(1, Bytes::from_static(b"r1"))]);
    // A follower's read is forwarded to the leader and answered the same way.
    c.node(2).read_index(Bytes::from_static(b"r2")).unwrap();
    c.stabilize();
    assert_eq!(c.read_states[&2], vec![(1, Bytes::from_static(b"r2"))]);
    // A deposed leader never answers.
    c.isolated = vec![1];
    c.elect(2);
    c.node(1).read_index(Bytes::from_static(b"r3")).unwrap();
    for _ in 0..3 {
        c.tick_all();
    }
    assert_eq!(c.read_states[&1].len(), 1);
}

/// Limits: at most `max_inflight_slots` slots between the commit index and the highest slot in
/// flight; commands queued meanwhile are batched (at most `max_batch_commands` per slot); the
/// uncommitted-bytes cap and the command size cap drop proposals with a typed error.
#[test]
fn limits_bound_the_window_batches_and_queued_bytes() {
    let cfg = Config {
        max_inflight_slots: 2,
        max_batch_commands: 3,
        max_uncommitted_bytes: 40,
        max_entry_bytes: 16,
        ..config()
    };
    let mut c = Cluster::new(3, cfg);
    c.elect(1);
    c.isolated = vec![2, 3];
    let mut slots = Vec::new();
    for i in 0..9 {
        slots.push(c.node(1).propose(Bytes::from(format!("c{i}"))).unwrap());
    }
    c.process_all();
    let p = &c.nodes[&1].paxos;
    assert_eq!(p.next_slot - p.commit - 1, 2, "only the window is in flight");
    // Commands proposed before the next Ready share slots, three per slot.
    assert_eq!(slots, vec![1, 1, 1, 2, 2, 2, 3, 3, 3]);
    assert_eq!(c.nodes[&1].paxos.queued_batches(), 1, "slot 3 waits for the window");
    assert!(matches!(
        c.node(1).propose(Bytes::from(vec![0u8; 17])),
        Err(Error::ProposalDropped { reason: DropReason::EntryTooLarge, .. })
    ));
    c.node(1).propose(Bytes::from(vec![7u8; 16])).unwrap();
    assert!(matches!(
        c.node(1).propose(Bytes::from(vec![0u8; 16])),
        Err(Error::ProposalDropped { reason: DropReason::UncommittedBytes, .. })
    ));
    c.isolated.clear();
    for _ in 0..3 {
        c.tick_all();
    }
    let applied = c.applied_data(2);
    assert_eq!(applied.len(), 10);
    let per_slot = applied.iter().fold(BTreeMap::<u64, usize>::new(), |mut m, (s, _)| {
        *m.entry(*s).or_default() += 1;
        m
    });
    assert!(per_slot.values().all(|n| *n <= 3));
    // A follower with forwarding disabled names the leader.
    let mut c = Cluster::new(3, Config { disable_proposal_forwarding: true, ..config() });
    c.elect(1);
    c.tick_all();
    assert_eq!(c.node(2).propose(Bytes::from_static(b"x")), Err(Error::NotLeader { leader_hint: 1 }));
}

/// Bad input: garbage, truncated frames and frames of another protocol are typed decode errors.
#[test]
fn bad_frames_are_decode_errors_never_panics() {
    let mut c = Cluster::new(3, config());
    let garbage = Bytes::from_static(b"\x05\x00\x00\x00garbage");
    assert!(matches!(c.node(1).step(&garbage), Err(Error::Decode(_))));
    let raft = consensus_core::raft::wire::encode(&consensus_core::raft::Message::default());
    assert!(matches!(c.node(1).step(&raft), Err(Error::Decode(DecodeError::WrongProtocol { .. }))));
    let mut msg = Message::new(MessageType::Commit, 2, 9, Ballot::new(1, 2));
    msg.commit = 3;
    assert!(matches!(c.node(1).step(&wire::encode(&msg)), Err(Error::Protocol(_))), "addressed to another node");
}

/// A follower never decides a slot it holds from an older ballot just because the leader's commit
/// index covers it: only values held at the leader's ballot (or sent by CatchUp) are decided.
#[test]
fn follower_decides_only_values_of_the_leaders_ballot() {
    let ids = vec![1, 2, 3];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    {
        let mut s3 = storages[&3].wl();
        s3.put_accepted(&[AcceptedSlot { slot: 1, ballot: Ballot::new(1, 3), value: batch(1, "orphan") }]);
        s3.set_hard_state(HardState { promised: Ballot::new(1, 3), commit: 0 });
        // Node 1 promised node 3's ballot too (its Phase 1 got no further).
        storages[&1].wl().set_hard_state(HardState { promised: Ballot::new(1, 3), commit: 0 });
    }
    let mut c = Cluster::with_storages(ids, storages, config());
    c.isolated = vec![3];
    c.elect(1);
    assert_eq!(c.nodes[&1].paxos.promised, Ballot::new(2, 1));
    c.propose(1, "chosen");
    c.isolated.clear();
    for _ in 0..3 {
        c.tick_all();
    }
    assert_eq!(c.applied_data(3), vec![(1, "chosen".to_string())]);
}

/// Paxos Made Simple §3 (the α rule): a membership change chosen at slot `i` governs the slots
/// above `i + α` and no earlier one; the new member learns the log by catch-up and becomes an
/// acceptor; slots after the change need a majority of the new configuration. The slots of the
/// window are the leader's no-ops (docs/paxos.md §9), decided like any slot under the old
/// configuration: with 3 and 4 cut off, a majority of {1, 2, 3} still decides them.
#[test]
fn pms_3_alpha_window_reconfiguration_adds_a_member_alpha_slots_later() {
    let ids = vec![1, 2, 3, 4];
    // Node 4 joins: it starts empty, knowing the current members only.
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&[1, 2, 3]))).collect();
    let mut c = Cluster::with_storages(ids, storages, Config { max_inflight_slots: 4, ..config() });
    assert_eq!(c.nodes[&4].paxos.role, Role::Learner);
    c.elect(1);
    assert_eq!(c.propose(1, "a"), 1);
    c.isolated = vec![3, 4];
    let slot = c.node(1).propose_reconfig(&[1, 2, 3, 4]).unwrap();
    assert_eq!(slot, 2);
    assert!(
        matches!(
            c.node(1).propose_reconfig(&[1, 2]),
            Err(Error::ProposalDropped { reason: DropReason::ConfChangePending, .. })
        ),
        "one at a time"
    );
    c.stabilize();
    let p = &c.nodes[&1].paxos;
    assert_eq!(p.commit, 6, "the change and the no-ops of its window, each by {{1, 2}}, a majority of {{1, 2, 3}}");
    assert_eq!(p.membership.at(6), &[1, 2, 3], "slots up to i + α keep the old configuration");
    assert_eq!(p.membership.at(7), &[1, 2, 3, 4]);
    let change = c.applied[&1].iter().find(|e| e.index == 2).unwrap();
    assert_eq!(change.kind, consensus_core::paxos::EntryKind::ConfChange);
    assert_eq!(consensus_core::paxos::decode_reconfig(&change.data).unwrap(), (4, vec![1, 2, 3, 4]));
    assert_eq!(c.applied_data(1).len(), 2, "no-ops are applied as slots, never as entries");
    // Slot 7 needs three of {1, 2, 3, 4}: {1, 2} do not decide it.
    assert_eq!(c.propose(1, "v7"), 7);
    assert_eq!(c.nodes[&1].paxos.commit, 6);
    // The new member learns the decided slots (and the change) by catch-up, and its acceptance
    // decides slot 7 with 1 and 2.
    c.isolated = vec![3];
    for _ in 0..3 {
        c.tick_all();
    }
    assert_eq!(c.nodes[&1].paxos.commit, 7);
    assert_eq!(c.nodes[&4].paxos.commit, 7);
    assert_eq!(c.nodes[&4].paxos.role, Role::Follower);
    // Node 4 is now an acceptor whose acceptance counts: with 2 cut off instead, 1, 3 and 4 decide.
    c.isolated = vec![2];
    c.propose(1, "v8");
    assert_eq!(c.nodes[&1].paxos.commit, 8);
}

/// Paxos Made Simple §3: removing a member; after the window the remaining two must both accept,
/// and the removed node, once it knows, stops campaigning; its Prepares get no promise. The
/// window's slots (the leader's no-ops) are governed by {1, 2, 3}: node 3's acceptance counts there.
#[test]
fn pms_3_alpha_window_reconfiguration_removes_a_member() {
    let mut c = Cluster::new(3, Config { max_inflight_slots: 2, ..config() });
    c.elect(1);
    c.isolated = vec![2];
    assert_eq!(c.node(1).propose_reconfig(&[1, 2]).unwrap(), 1);
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.commit, 3, "slots 1 to 3 decided by 1 and 3");
    c.tick_all();
    assert_eq!(c.nodes[&3].paxos.commit, 3);
    assert_eq!(c.nodes[&3].paxos.role, Role::Learner, "node 3 governs no undecided slot any more");
    // Slot 4 needs both 1 and 2.
    assert_eq!(c.propose(1, "c"), 4);
    assert_eq!(c.nodes[&1].paxos.commit, 3);
    c.isolated.clear();
    c.tick_all();
    assert_eq!(c.nodes[&1].paxos.commit, 4);
    // The removed node cannot disrupt the leader.
    c.node(3).campaign();
    c.stabilize();
    assert_eq!(c.nodes[&3].paxos.role, Role::Learner);
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);
}

/// Paxos Made Simple §3, the α rule with no-op filling (docs/paxos.md §9): on an idle cluster the
/// leader closes the window of a decided change with no-ops, so the change takes effect without
/// any client write, and the next change is taken as soon as the first one is applied ("remove
/// and re-add a wiped member", docs/operations.md). The no-ops of the whole window travel in one
/// Accept per follower, and the new configuration governs every slot after it.
#[test]
fn pms_3_an_idle_leaders_reconfiguration_takes_effect_without_client_writes() {
    let mut c = Cluster::new(3, config());
    let alpha = c.config.max_inflight_slots;
    c.elect(1);
    assert_eq!(c.propose(1, "before"), 1);
    let accepts_before = c.delivered.iter().filter(|(_, _, t)| *t == MessageType::Accept).count();
    assert_eq!(c.node(1).propose_reconfig(&[1, 2]).unwrap(), 2);
    c.stabilize();
    let p = &c.nodes[&1].paxos;
    assert_eq!(p.commit, 2 + alpha, "the window is decided: the change is in effect");
    assert_eq!(p.membership.at(p.commit + 1), &[1, 2]);
    assert_eq!(c.nodes[&1].status().members, vec![1, 2]);
    let accepts = c.delivered.iter().filter(|(_, _, t)| *t == MessageType::Accept).count() - accepts_before;
    assert_eq!(accepts, 2 * 2, "per follower: one Accept for the change, one for the {alpha} no-ops of its window");
    // Removed and added again at once, with no write in between.
    assert_eq!(c.node(1).propose_reconfig(&[1, 2, 3]).unwrap(), 3 + alpha);
    c.stabilize();
    c.tick_all();
    assert_eq!(c.nodes[&1].paxos.commit, 3 + 2 * alpha);
    assert_eq!(c.nodes[&3].paxos.commit, 3 + 2 * alpha);
    assert_eq!(c.nodes[&3].paxos.role, Role::Follower, "node 3 is an acceptor again");
    assert_eq!(c.nodes[&1].status().members, vec![1, 2, 3]);
    // Node 3's acceptance counts again: with 2 cut off, 1 and 3 decide.
    c.isolated = vec![2];
    let slot = c.propose(1, "after");
    assert_eq!(c.nodes[&1].paxos.commit, slot);
    c.tick_all();
    let applied = c.applied_data(3);
    assert_eq!((applied.first(), applied.last()), (Some(&(1, "before".into())), Some(&(slot, "after".into()))));
}

/// The no-ops that close the window respect the flow control of every other slot: a leader whose
/// α (its window) is smaller than the α a change was chosen with fills the change's window a
/// window at a time, as its commit index advances, and the change still takes effect without
/// client writes; nothing beyond the leader's window is ever in flight.
#[test]
fn no_ops_closing_a_window_stay_within_the_leaders_window() {
    let ids = vec![1, 2, 3];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    let b11 = Ballot::new(1, 1);
    // Node 1 led with α = 8 and chose a change at slot 1 (on 1 and 2) before it crashed.
    let change = Value {
        kind: consensus_core::paxos::ValueKind::Reconfig,
        round: 1,
        commands: vec![consensus_core::paxos::encode_reconfig(8, &[1, 2])],
    };
    for id in [1, 2] {
        let mut core = storages[&id].wl();
        core.put_accepted(&[AcceptedSlot { slot: 1, ballot: b11, value: change.clone() }]);
        core.set_hard_state(HardState { promised: b11, commit: 0 });
    }
    // Node 2 leads next, with α = 2; the merged change needs promises from both 1 and 2.
    let mut c = Cluster::with_storages(ids, storages, Config { max_inflight_slots: 2, ..config() });
    c.node(2).campaign();
    let mut max_in_flight = 0;
    c.stabilize_watching(|c| {
        let p = &c.nodes[&2].paxos;
        if p.role == Role::Leader {
            max_in_flight = max_in_flight.max(p.next_slot - 1 - p.commit);
        }
    });
    let p = &c.nodes[&2].paxos;
    assert_eq!(p.role, Role::Leader);
    assert_eq!(p.commit, 1 + 8, "the whole window of α = 8 was filled and decided");
    assert!(max_in_flight <= 2, "at most the leader's window of 2 slots in flight, saw {max_in_flight}");
    assert_eq!(p.membership.at(p.commit + 1), &[1, 2]);
}

/// With no known leader there is nobody to take a proposal: `ProposalDropped` with reason
/// `NoLeader`, forwarding on or off (as the Raft core answers). `NotLeader` is only for a node
/// that can name the leader.
#[test]
fn proposal_with_no_known_leader_is_dropped_forwarding_on_or_off() {
    for disable_proposal_forwarding in [false, true] {
        let mut c = Cluster::new(3, Config { disable_proposal_forwarding, ..config() });
        let no_leader =
            |r: Result<u64, Error>| matches!(r, Err(Error::ProposalDropped { reason: DropReason::NoLeader, .. }));
        assert!(no_leader(c.node(2).propose(Bytes::from_static(b"x"))), "a follower that knows no leader");
        c.isolated = vec![3];
        c.node(3).campaign();
        c.process(3);
        assert_eq!(c.nodes[&3].paxos.role, Role::Candidate);
        assert!(no_leader(c.node(3).propose(Bytes::from_static(b"x"))), "a candidate");
    }
}

/// Paxos Made Simple §3 with the α-window, across a leader change: a change chosen at slot 1
/// (remove 4 and 5, α = 2) let the old leader choose slot 4 with {1, 2} alone, a majority of the new
/// configuration that no majority of the old one need intersect. A candidate that knows neither
/// must not lead on promises from {3, 4, 5} (a majority of the old configuration): the merged
/// values imply the new configuration for slot 4, and it needs a majority of that one too.
#[test]
fn pms_3_candidate_needs_a_quorum_of_every_configuration_its_range_implies() {
    let ids = vec![1, 2, 3, 4, 5];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    let b11 = Ballot::new(1, 1);
    let change = Value {
        kind: consensus_core::paxos::ValueKind::Reconfig,
        round: 1,
        commands: vec![consensus_core::paxos::encode_reconfig(2, &[1, 2, 3])],
    };
    let slot = |slot: u64, value: Value| AcceptedSlot { slot, ballot: b11, value };
    for id in [1, 2, 3] {
        let mut core = storages[&id].wl();
        core.put_accepted(&[slot(1, change.clone()), slot(2, batch(1, "a")), slot(3, batch(1, "b"))]);
        if id != 3 {
            core.put_accepted(&[slot(4, batch(1, "x"))]);
        }
        core.set_hard_state(HardState { promised: b11, commit: if id == 1 { 4 } else { 1 } });
    }
    for id in [4, 5] {
        storages[&id].wl().set_hard_state(HardState { promised: b11, commit: 0 });
    }
    let mut c = Cluster::with_storages(ids, storages, Config { max_inflight_slots: 2, ..config() });
    // The old leader is gone; node 2 is slow.
    c.isolated = vec![1, 2];
    c.node(5).campaign();
    c.stabilize();
    assert_eq!(c.nodes[&5].paxos.role, Role::Candidate, "{{3, 4, 5}} is no majority of {{1, 2, 3}}");
    c.isolated = vec![1];
    c.node(5).campaign();
    c.stabilize();
    c.tick_all();
    // Slot 4 kept the chosen value; node 5 led the re-proposal, then left: it governs no slot after 3.
    assert!(c.applied_data(5).contains(&(4, "x".to_string())), "{:?}", c.applied_data(5));
    assert_eq!(c.nodes[&5].paxos.role, Role::Learner);
    // Nodes 2 and 3 (a majority of {1, 2, 3}) elect a leader of their own and learn slot 4.
    for _ in 0..40 {
        c.tick_all();
    }
    assert!(c.applied_data(3).contains(&(4, "x".to_string())), "{:?}", c.applied_data(3));
    assert!([2, 3].iter().any(|id| c.nodes[id].paxos.role == Role::Leader));
}

/// Paxos Made Live §5 (master leases): with lease reads, a follower that heard its leader within
/// an election timeout promises no other candidate (nor does any node in its first election
/// timeout after a start), so the leader answers reads at once while a quorum's lease runs.
#[test]
fn pml_5_lease_reads_are_answered_at_once_and_followers_refuse_other_candidates() {
    let cfg = Config { read_only_option: consensus_core::paxos::ReadOnlyOption::LeaseBased, ..config() };
    let mut c = Cluster::new(3, cfg);
    // Nobody promises anything in its first election timeout.
    c.node(1).campaign();
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Candidate);
    let mut leader = 0;
    for _ in 0..60 {
        c.tick_all();
        if let Some(id) = c.ids.iter().copied().find(|id| c.nodes[id].paxos.role == Role::Leader) {
            leader = id;
            break;
        }
    }
    assert_ne!(leader, 0, "a leader is elected once the start-up timeout passed");
    c.propose(leader, "a");
    c.tick_all();
    c.node(leader).read_index(Bytes::from_static(b"lease")).unwrap();
    c.process(leader);
    assert_eq!(c.read_states[&leader], vec![(1, Bytes::from_static(b"lease"))], "answered without a round trip");
    let follower = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    c.node(follower).campaign();
    c.stabilize();
    assert_eq!(c.nodes[&leader].paxos.role, Role::Leader, "no promise while the lease runs");
    assert_ne!(c.nodes[&follower].paxos.role, Role::Leader);
}

// ------------------------------------------------------------------------- leadership transfer

fn strings(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|(slot, data)| (*slot, data.to_string())).collect()
}

/// Leadership transfer (docs/paxos.md §7.1, after the Raft thesis §3.10): the leader sends
/// `TimeoutNow` to a caught-up acceptor, which starts Phase 1 at once (no tick, no randomized
/// wait) with a ballot above the old leader's and leads; no decided value is lost.
#[test]
fn transfer_leader_to_a_caught_up_acceptor_makes_it_start_phase_1_at_once() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.propose(1, "a");
    c.propose(1, "b");
    c.tick_all();
    let old_ballot = c.nodes[&1].paxos.promised;
    c.node(1).transfer_leader(2).unwrap();
    assert_eq!(c.nodes[&1].status().transfer_target, 2);
    let sent = c.take_network();
    assert!(
        sent.iter().any(|(from, to, f)| (*from, *to) == (1, 2) && msg_type(f) == MessageType::TimeoutNow),
        "node 2 holds every slot: TimeoutNow goes at once"
    );
    for (from, to, frame) in sent {
        c.deliver(from, to, &frame);
    }
    c.stabilize();
    let p2 = &c.nodes[&2].paxos;
    assert_eq!(p2.role, Role::Leader, "elected without a single tick");
    assert!(p2.promised > old_ballot, "{} after {old_ballot}", p2.promised);
    assert!(p2.leading_by_transfer);
    assert_eq!(c.nodes[&1].paxos.role, Role::Follower);
    assert_eq!(c.nodes[&1].paxos.leader, 2);
    assert_eq!(c.nodes[&1].status().transfer_target, 0);
    c.propose(2, "c");
    c.tick_all();
    for id in 1..=3 {
        assert_eq!(c.applied_data(id), strings(&[(1, "a"), (2, "b"), (3, "c")]), "node {id}");
    }
}

/// Leadership transfer catch-up: a target that lacks decided slots gets them first (catch-up),
/// and `TimeoutNow` only once it holds every one; meanwhile the leader takes no new proposals.
#[test]
fn transfer_leader_to_a_lagging_acceptor_first_brings_it_up_to_date() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.isolated = vec![3];
    for i in 0..6 {
        c.propose(1, &format!("v{i}"));
    }
    c.isolated.clear();
    c.node(1).transfer_leader(3).unwrap();
    assert!(
        matches!(c.node(1).propose(Bytes::from_static(b"late")), Err(Error::ProposalDropped { .. })),
        "no new proposal while the transfer lasts"
    );
    let sent = c.take_network();
    assert!(sent.iter().all(|(_, _, f)| msg_type(f) != MessageType::TimeoutNow), "node 3 lacks slots 1..=6");
    for (from, to, frame) in sent {
        c.deliver(from, to, &frame);
    }
    c.tick_all();
    assert_eq!(c.nodes[&3].paxos.role, Role::Leader);
    let timeout_now = c.delivered.iter().position(|d| *d == (1, 3, MessageType::TimeoutNow)).unwrap();
    let catch_up = c.delivered.iter().position(|d| *d == (1, 3, MessageType::CatchUp)).unwrap();
    assert!(catch_up < timeout_now, "catch-up first, then TimeoutNow");
    let expected: Vec<(u64, String)> = (0..6).map(|i| (i + 1, format!("v{i}"))).collect();
    assert_eq!(c.applied_data(3), expected);
    assert!(c.applied_data(1).iter().all(|(_, d)| d != "late"));
}

/// Leadership transfer abort: a transfer that does not complete within an election timeout (the
/// target is unreachable) is abandoned, and the leader takes proposals again. While it lasts,
/// client commands and reconfigurations are `ProposalDropped`.
#[test]
fn transfer_leader_is_abandoned_after_an_election_timeout_and_drops_proposals_meanwhile() {
    let mut c = Cluster::new(3, config());
    c.elect(1);
    c.propose(1, "a");
    c.isolated = vec![3];
    c.node(1).transfer_leader(3).unwrap();
    assert!(matches!(
        c.node(1).propose(Bytes::from_static(b"x")),
        Err(Error::ProposalDropped { reason: DropReason::TransferInProgress, .. })
    ));
    assert!(matches!(
        c.node(1).propose_reconfig(&[1, 2]),
        Err(Error::ProposalDropped { reason: DropReason::TransferInProgress, .. })
    ));
    for _ in 1..c.config.election_tick {
        c.tick_all();
    }
    assert_eq!(c.nodes[&1].status().transfer_target, 3, "still trying one tick before the timeout");
    c.tick_all();
    assert_eq!(c.nodes[&1].status().transfer_target, 0, "abandoned after an election timeout");
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);
    assert_eq!(c.propose(1, "b"), 2);
    c.tick_all();
    assert_eq!(c.applied_data(2), strings(&[(1, "a"), (2, "b")]));
}

/// Leadership transfer misuse is a typed error: on a node that does not lead (`NotLeader` with
/// the leader it knows), to itself or to a node outside the configuration (`Config` on `to`).
#[test]
fn transfer_leader_refuses_a_non_leader_the_leader_itself_and_unknown_nodes() {
    let mut c = Cluster::new(3, config());
    assert_eq!(c.node(1).transfer_leader(2), Err(Error::NotLeader { leader_hint: 0 }));
    c.elect(1);
    c.tick_all();
    assert_eq!(c.node(2).transfer_leader(3), Err(Error::NotLeader { leader_hint: 1 }));
    for to in [1, 9, 0] {
        match c.node(1).transfer_leader(to) {
            Err(Error::Config { field: "to", .. }) => {}
            other => panic!("transfer to {to}: expected a Config error on `to`, got {other:?}"),
        }
    }
    assert_eq!(c.nodes[&1].status().transfer_target, 0);
    assert_eq!(c.propose(1, "still leading"), 1);
}

/// Paxos Made Live §5 (master leases) with a transfer: the acceptors that hold the leader's lease
/// still promise the target, because its Prepares name the ballot of the leader that handed over,
/// and that leader answers no read from its lease once `TimeoutNow` is out.
#[test]
fn pml_5_transfer_overrides_the_lease_of_the_leader_that_handed_over() {
    let cfg = Config { read_only_option: consensus_core::paxos::ReadOnlyOption::LeaseBased, ..config() };
    let mut c = Cluster::new(3, cfg);
    let mut leader = 0;
    for _ in 0..60 {
        c.tick_all();
        if let Some(id) = c.ids.iter().copied().find(|id| c.nodes[id].paxos.role == Role::Leader) {
            leader = id;
            break;
        }
    }
    assert_ne!(leader, 0);
    c.propose(leader, "a");
    c.tick_all();
    c.node(leader).read_index(Bytes::from_static(b"lease")).unwrap();
    c.process(leader);
    assert_eq!(c.read_states[&leader].len(), 1, "answered from the lease");
    let target = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    c.node(leader).transfer_leader(target).unwrap();
    c.process(leader);
    c.node(leader).read_index(Bytes::from_static(b"after")).unwrap();
    c.process(leader);
    assert_eq!(c.read_states[&leader].len(), 1, "no lease read once TimeoutNow is out");
    c.stabilize();
    assert_eq!(c.nodes[&target].paxos.role, Role::Leader, "promised inside the old leader's lease");
    assert_ne!(c.nodes[&leader].paxos.role, Role::Leader);
    c.propose(target, "b");
    c.tick_all();
    assert_eq!(c.applied_data(leader), strings(&[(1, "a"), (2, "b")]));
}

// ------------------------------------------------------------------------- paginated promises

/// A 100-byte value for `slot` tagged `tag`.
fn big(slot: u64, tag: &str) -> String {
    format!("{slot:03}-{tag}-{}", "x".repeat(100 - 5 - tag.len()))
}

/// Node 1 campaigns, every frame is checked, and Promise / PromisePage frames are returned.
fn promises_of_campaign(c: &mut Cluster, max_size_per_msg: u64) -> Vec<Message> {
    let mut promises = Vec::new();
    c.node(1).campaign();
    for _ in 0..1000 {
        let batch = c.take_network();
        if batch.is_empty() {
            return promises;
        }
        for (from, to, frame) in batch {
            let msg = wire::decode(&frame).unwrap();
            if matches!(msg.msg_type, MessageType::Promise | MessageType::PromisePage) {
                let payload: u64 = msg.entries.iter().map(|s| s.value.payload_size()).sum();
                assert!(
                    payload <= max_size_per_msg || msg.entries.len() == 1,
                    "a promise of {payload} payload bytes ({} slots)",
                    msg.entries.len()
                );
                // Frame header and fixed fields, then 41 bytes of slot fields per 100-byte value.
                assert!(frame.len() <= 80 + 2 * (41 + 100), "a promise frame of {} bytes", frame.len());
                promises.push(msg);
            }
            c.deliver(from, to, &frame);
        }
    }
    panic!("the cluster did not quiesce");
}

/// Paxos Made Simple §2.2 (Phase 1b) within the message bound: acceptors whose accepted slots do
/// not fit in `max_size_per_msg` answer in pages, each within the bound, and the new leader still
/// recovers every accepted value at its slot: the highest ballot's per slot, from any page, and a
/// no-op in a hole. Five nodes with 4 and 5 unreachable, so the Phase 1 quorum is exactly
/// {1, 2, 3} and both acceptors' last pages are needed.
#[test]
fn pms_2_2_promise_of_a_big_accepted_suffix_is_paginated_and_every_value_is_recovered() {
    let ids = vec![1, 2, 3, 4, 5];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    let (b12, b23) = (Ballot::new(1, 2), Ballot::new(2, 3));
    let mut expected = Vec::new();
    {
        let mut s2 = storages[&2].wl();
        let mut s3 = storages[&3].wl();
        for slot in 1..=40u64 {
            if slot == 10 {
                continue; // a hole: a no-op for the new leader
            }
            let old = AcceptedSlot { slot, ballot: b12, value: batch(1, &big(slot, "old")) };
            s2.put_accepted(std::slice::from_ref(&old));
            if slot >= 30 {
                // Node 3 accepted another value at a higher ballot: it wins.
                s3.put_accepted(&[AcceptedSlot { slot, ballot: b23, value: batch(2, &big(slot, "new")) }]);
                expected.push((slot, big(slot, "new")));
            } else {
                s3.put_accepted(&[old]);
                expected.push((slot, big(slot, "old")));
            }
        }
        // Only node 2 holds slot 41, on its last page.
        s2.put_accepted(&[AcceptedSlot { slot: 41, ballot: b12, value: batch(1, &big(41, "last")) }]);
        expected.push((41, big(41, "last")));
        s2.set_hard_state(HardState { promised: b23, commit: 0 });
        s3.set_hard_state(HardState { promised: b23, commit: 0 });
    }
    let max_size_per_msg = 250;
    let mut c = Cluster::with_storages(ids, storages, Config { max_size_per_msg, ..config() });
    c.isolated = vec![4, 5];
    // Node 1's first attempt is Nacked (both promised 2.3); the second uses round 3.
    c.node(1).campaign();
    c.stabilize();
    let promises = promises_of_campaign(&mut c, max_size_per_msg);
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);
    for from in [2, 3] {
        let pages = promises.iter().filter(|m| m.from == from && m.msg_type == MessageType::PromisePage).count();
        assert!(pages >= 19, "node {from} answered in {pages} pages plus a last Promise");
    }
    assert!(promises.iter().all(|m| m.entries.len() <= 2));
    c.tick_all();
    assert_eq!(c.applied_data(1), expected);
    assert_eq!(c.applied_data(2), expected);
    assert_eq!(c.nodes[&1].paxos.commit, 41);
}

/// Paxos Made Simple §2.2: a candidate may pick values only once it knows what a quorum accepted
/// in its whole range. A promise that arrived in part does not count toward the Phase 1 quorum;
/// a lost page request is sent again at the next heartbeat.
#[test]
fn pms_2_2_a_promise_counts_toward_the_quorum_only_with_its_last_page() {
    let ids = vec![1, 2, 3];
    let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new(&ids))).collect();
    let b12 = Ballot::new(1, 2);
    {
        let mut s2 = storages[&2].wl();
        for slot in 1..=6u64 {
            s2.put_accepted(&[AcceptedSlot { slot, ballot: b12, value: batch(1, &big(slot, "v")) }]);
        }
        s2.set_hard_state(HardState { promised: b12, commit: 0 });
        // Node 1 promised that ballot too, so it campaigns with round 2.
        storages[&1].wl().set_hard_state(HardState { promised: b12, commit: 0 });
    }
    let mut c = Cluster::with_storages(ids, storages, Config { max_size_per_msg: 250, ..config() });
    c.isolated = vec![3];
    c.node(1).campaign();
    for (from, to, frame) in c.take_network() {
        c.deliver(from, to, &frame);
    }
    let replies = c.take_network();
    assert_eq!(replies.len(), 1);
    let page = wire::decode(&replies[0].2).unwrap();
    assert_eq!(page.msg_type, MessageType::PromisePage);
    assert_eq!((page.index, page.last_index, page.entries.len()), (1, 2, 2));
    c.deliver(2, 1, &replies[0].2);
    assert_eq!(c.nodes[&1].paxos.role, Role::Candidate, "its own promise and part of node 2's are no quorum");
    // The request for the next page is lost; the next heartbeat asks again.
    let lost = c.take_network();
    assert_eq!(lost.len(), 1);
    let request = wire::decode(&lost[0].2).unwrap();
    assert_eq!((request.msg_type, request.to, request.index), (MessageType::Prepare, 2, 3));
    c.node(1).tick();
    c.stabilize();
    assert_eq!(c.nodes[&1].paxos.role, Role::Leader);
    let expected: Vec<(u64, String)> = (1..=6).map(|slot| (slot, big(slot, "v"))).collect();
    assert_eq!(c.applied_data(1), expected);
}

/// Ticks until some node other than `old` leads, with `old` cut off.
fn ticks_to_replace_leader(cluster: &mut Cluster, old: u64) -> u64 {
    cluster.isolated.push(old);
    for tick in 1..=1_000 {
        cluster.tick_all();
        if cluster.ids.iter().any(|id| *id != old && cluster.nodes[id].paxos.role == Role::Leader) {
            return tick;
        }
    }
    panic!("no new leader after 1000 ticks");
}

#[test]
fn survivors_of_a_leader_draw_fresh_election_timeouts_so_failover_is_not_biased_late() {
    // The first leader is the node whose randomized timeout ran out first, so the others hold
    // the larger draws. Followers that kept them when a new ballot came would replace a crashed
    // leader after the second-smallest of three draws on average instead of the smallest of two
    // fresh ones (Raft draws anew on every term for the same reason). With timeouts drawn from
    // [10, 20) ticks: about 12.9 ticks with fresh draws, about 14.5 with kept ones.
    let seeds = 300;
    let mut total = 0;
    for seed in 1..=seeds {
        let mut cluster = Cluster::new(3, Config { election_tick: 10, heartbeat_tick: 1, seed, ..Config::default() });
        let mut leader = None;
        for _ in 0..1_000 {
            cluster.tick_all();
            leader = cluster.ids.iter().copied().find(|id| cluster.nodes[id].paxos.role == Role::Leader);
            if leader.is_some() {
                break;
            }
        }
        let leader = leader.expect("an election by timeout");
        for _ in 0..30 {
            cluster.tick_all();
        }
        total += ticks_to_replace_leader(&mut cluster, leader);
    }
    let mean = total as f64 / seeds as f64;
    assert!(mean < 13.7, "a crashed leader was replaced after {mean:.2} ticks on average");
}
