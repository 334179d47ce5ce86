//! Hostile frames for Raft: any message type at any term, with entries, snapshots and
//! configuration changes shaped as a correct leader sends them or as none does.

use bytes::Bytes;

use super::{
    any_bytes, any_id, any_ids, any_number, any_term, near_number, other_member, Cluster, Mode, Source, Target,
};
use crate::raft;
use crate::raft::storage::MemStorage;
use crate::role::Role;

/// Raft as the hostile-peer harness drives it.
pub struct Raft;

impl Target for Raft {
    type Node = raft::RawNode<MemStorage>;
    type Message = raft::Message;
    type Storage = MemStorage;
    type Config = raft::Config;
    type ConfState = raft::ConfState;
    type Promise = u64;
    type Fingerprint = (u64, u64, u64, u64, Role, u64, usize);

    const PROMISE: &'static str = "term";

    fn config(seed: u64) -> raft::Config {
        raft::Config { election_tick: 10, heartbeat_tick: 1, seed, ..raft::Config::default() }
    }

    fn new_storage(_ids: &[u64]) -> MemStorage {
        MemStorage::new()
    }

    fn start(id: u64, config: &raft::Config, storage: MemStorage, ids: &[u64]) -> crate::Result<Self::Node> {
        raft::RawNode::new(id, config.clone(), storage, ids, &[], 0)
    }

    fn set_conf_state(storage: &MemStorage, index: u64, cs: raft::ConfState) {
        storage.wl().set_conf_state(index, cs);
    }

    fn apply(c: &mut Cluster<Self>, id: u64, rd: &raft::Ready) {
        for entry in &rd.committed_entries {
            match entry.kind {
                raft::EntryKind::Normal if !entry.data.is_empty() => {
                    c.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
                }
                raft::EntryKind::Normal => {}
                raft::EntryKind::ConfChange => {
                    // A change that does not apply is logged and skipped by the runtime; so here.
                    if let Ok(cs) = c.node(id).apply_conf_change_entry(entry) {
                        if let Err(e) = c.durable.set_conf_state(id, entry.index, cs) {
                            c.violations.push(format!("node {id}: storage refused a configuration: {e}"));
                        }
                    }
                }
            }
        }
    }

    fn promise(node: &Self::Node) -> u64 {
        node.raft.term
    }

    fn promise_round(term: &u64) -> u64 {
        *term
    }

    fn fingerprint(node: &Self::Node) -> Self::Fingerprint {
        let r = &node.raft;
        (r.term, r.vote, r.log.committed, r.leader, r.role, r.log.last_index(), r.msgs.len())
    }

    /// Half of the hostile frames are plausible: from another member, to the target, every number
    /// near the target's own; only their type, term and a few fields stray. The rest are wild.
    fn hostile_message(src: &mut impl Source, core: &Self::Node, target: u64, mode: Mode) -> raft::Message {
        let mut m = raft_wild_message(src, core, target, mode);
        if src.chance(50) {
            let node = &core.raft;
            m.from = other_member(src, target);
            m.to = target;
            m.index = near_number(src, node.log.last_index());
            m.commit = near_number(src, node.log.committed);
            m.reject_hint = near_number(src, node.log.last_index());
            m.log_term = match node.log.term(m.index) {
                Ok(term) if src.chance(70) => term,
                _ => m.log_term.min(m.term),
            };
            m.entries.clear();
            if m.msg_type == raft::MessageType::AppendEntries && src.chance(70) {
                m.entries = raft_entries(src, &m, mode);
            }
            m.snapshot = match m.msg_type {
                raft::MessageType::InstallSnapshot if src.chance(60) => Some(raft_snapshot(src, &m, target)),
                raft::MessageType::InstallSnapshot => m.snapshot.take(),
                _ => None,
            };
        }
        m
    }

    fn encode(message: &raft::Message) -> Bytes {
        raft::wire::encode(message)
    }
}

/// The message types that carry a leader's (or a voter's) authority.
fn raft_dangerous(msg_type: raft::MessageType) -> bool {
    use raft::MessageType as T;
    matches!(
        msg_type,
        T::AppendEntries | T::Heartbeat | T::InstallSnapshot | T::RequestVoteResponse | T::AppendEntriesResponse
    )
}

fn raft_wild_message(
    src: &mut impl Source,
    core: &raft::RawNode<MemStorage>,
    target: u64,
    mode: Mode,
) -> raft::Message {
    let node = &core.raft;
    let msg_type = raft::MessageType::ALL[src.below(14) as usize];
    let dangerous = raft_dangerous(msg_type);
    let to = if src.chance(90) { target } else { any_id(src, target) };
    let mut m = raft::Message::new(msg_type, any_id(src, target), to, any_term(src, node.term, mode, dangerous));
    m.log_term = match src.below(4) {
        0 => m.term,
        1 => src.below(m.term.saturating_add(1)),
        _ => any_number(src, node.log.last_term()),
    };
    m.index = any_number(src, node.log.last_index());
    m.commit = any_number(src, node.log.committed);
    m.reject_hint = any_number(src, node.log.last_index());
    m.reject = src.chance(50);
    m.context = match src.below(5) {
        0 => Bytes::from_static(raft::core::CAMPAIGN_TRANSFER),
        1 => any_bytes(src, 16),
        _ => Bytes::new(),
    };
    if src.chance(40) {
        m.entries = raft_entries(src, &m, mode);
    }
    if src.chance(15) {
        m.snapshot = Some(raft_snapshot(src, &m, target));
    }
    m
}

/// Entries after `m.index`: in order from `index + 1` as a correct leader sends them, or in a
/// shape no correct leader sends: starting elsewhere, with a gap, with a term going down, wild.
fn raft_entries(src: &mut impl Source, m: &raft::Message, mode: Mode) -> Vec<raft::Entry> {
    let shape = src.below(5);
    let mut index = if shape == 1 { near_number(src, m.index) } else { m.index };
    let mut term = m.log_term.max(1);
    (0..1 + src.below(4))
        .map(|i| {
            index = match shape {
                4 => any_number(src, index),
                2 if i == 1 => index.saturating_add(2),
                _ => index.saturating_add(1),
            };
            term = match shape {
                4 => any_number(src, term),
                3 if i > 0 => term.saturating_sub(1),
                _ => term.saturating_add(src.below(2)).min(m.term.max(1)),
            };
            let (kind, data) = match src.below(7) {
                0 => (raft::EntryKind::ConfChange, any_bytes(src, 12)),
                1 if mode == Mode::Chaos => (raft::EntryKind::ConfChange, raft_conf_change(src)),
                _ => (raft::EntryKind::Normal, any_bytes(src, 8)),
            };
            raft::Entry::new(index, term, kind, data)
        })
        .collect()
}

fn raft_conf_change(src: &mut impl Source) -> Bytes {
    let change = raft::ConfChange {
        add_voters: any_ids(src, 0),
        remove_voters: any_ids(src, 0),
        add_learners: any_ids(src, 0),
        remove_learners: any_ids(src, 0),
    };
    raft::wire::encode_conf_change(&change)
}

fn raft_snapshot(src: &mut impl Source, m: &raft::Message, target: u64) -> raft::Snapshot {
    let conf_state = raft::ConfState {
        voters: if src.chance(70) { vec![1, 2, 3] } else { any_ids(src, target) },
        learners: any_ids(src, target),
        voters_outgoing: if src.chance(20) { any_ids(src, target) } else { Vec::new() },
        learners_next: Vec::new(),
        auto_leave: src.chance(50),
    };
    raft::Snapshot {
        index: any_number(src, m.commit),
        term: if src.chance(70) { m.term } else { any_number(src, m.term) },
        conf_state,
        data: any_bytes(src, 8),
    }
}
