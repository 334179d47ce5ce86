//! Hostile frames for Multi-Paxos: any message type at any ballot, with accepted slots, values
//! and snapshots shaped as a correct leader sends them or as none does.

use bytes::Bytes;

use super::{
    any_bytes, any_id, any_ids, any_number, any_term, near_number, other_member, Cluster, Mode, Source, Target,
};
use crate::paxos;
use crate::role::Role;

/// Multi-Paxos as the hostile-peer harness drives it.
pub struct Paxos;

impl Target for Paxos {
    type Node = paxos::RawNode<paxos::MemStorage>;
    type Message = paxos::Message;
    type Storage = paxos::MemStorage;
    type Config = paxos::Config;
    /// Paxos records no configuration apart: membership changes are slots like any other.
    type ConfState = ();
    type Promise = paxos::Ballot;
    type Fingerprint = (paxos::Ballot, u64, u64, u64, Role, usize, usize);

    const PROMISE: &'static str = "promise";

    fn config(seed: u64) -> paxos::Config {
        paxos::Config { election_tick: 10, heartbeat_tick: 1, seed, ..paxos::Config::default() }
    }

    fn new_storage(ids: &[u64]) -> paxos::MemStorage {
        paxos::MemStorage::new(ids)
    }

    fn start(id: u64, config: &paxos::Config, storage: paxos::MemStorage, ids: &[u64]) -> crate::Result<Self::Node> {
        paxos::RawNode::new(id, config.clone(), storage, ids, 0)
    }

    fn set_conf_state(_storage: &paxos::MemStorage, _index: u64, _cs: ()) {}

    fn apply(c: &mut Cluster<Self>, id: u64, rd: &paxos::Ready) {
        for entry in rd.committed_entries.iter().filter(|entry| entry.kind == paxos::EntryKind::Normal) {
            c.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
        }
    }

    fn promise(node: &Self::Node) -> paxos::Ballot {
        node.paxos.promised
    }

    fn promise_round(ballot: &paxos::Ballot) -> u64 {
        ballot.round
    }

    fn fingerprint(node: &Self::Node) -> Self::Fingerprint {
        let p = &node.paxos;
        (p.promised, p.max_round_seen, p.commit, p.leader, p.role, p.slots.len(), p.msgs.len())
    }

    /// Half plausible, half wild, as for Raft.
    fn hostile_message(src: &mut impl Source, core: &Self::Node, target: u64, mode: Mode) -> paxos::Message {
        let mut m = paxos_wild_message(src, core, target, mode);
        if src.chance(50) {
            let node = &core.paxos;
            m.from = other_member(src, target);
            m.to = target;
            m.ballot.node = m.from;
            m.index = near_number(src, node.commit + 1);
            m.last_index = near_number(src, m.index);
            m.commit = near_number(src, node.commit);
            let carries_slots = matches!(
                m.msg_type,
                paxos::MessageType::Accept | paxos::MessageType::CatchUp | paxos::MessageType::Promise
            );
            m.entries = if carries_slots { paxos_slots(src, &m, node.commit, true) } else { Vec::new() };
            let carries_snapshot = matches!(m.msg_type, paxos::MessageType::Snapshot | paxos::MessageType::Promise);
            m.snapshot = (carries_snapshot && src.chance(50)).then(|| paxos_snapshot(src, &m, target));
        }
        m
    }

    fn encode(message: &paxos::Message) -> Bytes {
        paxos::wire::encode(message)
    }
}

/// The message types that carry a leader's (or an acceptor's) authority.
fn paxos_dangerous(msg_type: paxos::MessageType) -> bool {
    use paxos::MessageType as T;
    matches!(
        msg_type,
        T::Accept | T::Commit | T::CatchUp | T::Snapshot | T::Promise | T::PromisePage | T::Accepted | T::CommitAck
    )
}

fn paxos_wild_message(
    src: &mut impl Source,
    core: &paxos::RawNode<paxos::MemStorage>,
    target: u64,
    mode: Mode,
) -> paxos::Message {
    let node = &core.paxos;
    let msg_type = paxos::MessageType::ALL[src.below(14) as usize];
    let to = if src.chance(90) { target } else { any_id(src, target) };
    let from = any_id(src, target);
    let round = any_term(src, node.promised.round, mode, paxos_dangerous(msg_type));
    let ballot_node = if src.chance(80) { from } else { any_id(src, target) };
    let mut m = paxos::Message::new(msg_type, from, to, paxos::Ballot::new(round, ballot_node));
    m.index = any_number(src, node.commit + 1);
    m.last_index = any_number(src, m.index);
    m.commit = any_number(src, node.commit);
    m.context = if src.chance(20) { any_bytes(src, 16) } else { Bytes::new() };
    if src.chance(50) {
        m.entries = paxos_slots(src, &m, node.commit, false);
    }
    if src.chance(20) {
        m.commands = (0..src.below(3)).map(|_| any_bytes(src, 8)).collect();
    }
    if src.chance(10) {
        m.snapshot = Some(paxos_snapshot(src, &m, target));
    }
    m
}

fn paxos_slots(src: &mut impl Source, m: &paxos::Message, commit: u64, plausible: bool) -> Vec<paxos::AcceptedSlot> {
    let contiguous = plausible || src.chance(60);
    let mut slot = if plausible || src.chance(70) { commit } else { any_number(src, commit) };
    (0..1 + src.below(4))
        .map(|_| {
            slot = if contiguous { slot.saturating_add(1) } else { any_number(src, slot) };
            let ballot = if plausible || src.chance(80) {
                m.ballot
            } else {
                paxos::Ballot::new(any_number(src, 1), any_id(src, 0))
            };
            let round = if plausible || src.chance(80) { ballot.round.min(m.ballot.round) } else { any_number(src, 1) };
            let value = match src.below(6) {
                0 => paxos::Value::noop(round),
                1 => paxos::Value {
                    kind: paxos::ValueKind::Reconfig,
                    round,
                    commands: vec![paxos::encode_reconfig(any_number(src, 4), &any_ids(src, 0))],
                },
                2 => paxos::Value { kind: paxos::ValueKind::Reconfig, round, commands: vec![any_bytes(src, 12)] },
                _ => paxos::Value::batch(round, vec![any_bytes(src, 8)]),
            };
            paxos::AcceptedSlot { slot, ballot, value }
        })
        .collect()
}

fn paxos_snapshot(src: &mut impl Source, m: &paxos::Message, target: u64) -> paxos::Snapshot {
    let index = any_number(src, m.commit);
    paxos::Snapshot {
        index,
        term: any_number(src, m.ballot.round),
        members: if src.chance(70) { vec![1, 2, 3] } else { any_ids(src, target) },
        pending: if src.chance(20) { vec![(index.saturating_add(2), any_ids(src, target))] } else { Vec::new() },
        data: any_bytes(src, 8),
    }
}
