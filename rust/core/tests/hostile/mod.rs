//! Small hand-driven clusters of real `RawNode`s on `MemStorage` for the hostile-frame tests:
//! every Ready is persisted, sent and applied, and a node can be rebuilt from its storage.
#![allow(dead_code)] // each suite uses its own subset

use std::collections::BTreeMap;

use bytes::Bytes;
use consensus_core::error::Result;
use consensus_core::paxos;
use consensus_core::raft;
use consensus_core::role::Role;
use consensus_core::storage::MemStorage;

/// Deliveries per `stabilize` before giving up (a cluster under attack may never go quiet).
const STABILIZE_ROUNDS: usize = 200;

pub struct RaftCluster {
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, raft::RawNode<MemStorage>>,
    pub storages: BTreeMap<u64, MemStorage>,
    /// Frames sent and not yet delivered: (from, to, frame).
    pub network: Vec<(u64, u64, Bytes)>,
    /// Committed normal entries each node applied: (index, data).
    pub applied: BTreeMap<u64, Vec<(u64, Bytes)>>,
    pub config: raft::Config,
}

pub fn raft_config(seed: u64) -> raft::Config {
    raft::Config { election_tick: 10, heartbeat_tick: 1, seed, ..raft::Config::default() }
}

impl RaftCluster {
    pub fn new(n: u64, seed: u64) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let config = raft_config(seed);
        let storages: BTreeMap<u64, MemStorage> = ids.iter().map(|id| (*id, MemStorage::new())).collect();
        let nodes = ids
            .iter()
            .map(|id| (*id, raft::RawNode::new(*id, config.clone(), storages[id].clone(), &ids, &[], 0).unwrap()))
            .collect();
        RaftCluster { ids, nodes, storages, network: Vec::new(), applied: BTreeMap::new(), config }
    }

    pub fn node(&mut self, id: u64) -> &mut raft::RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Persists, sends, applies and advances every Ready of node `id`. Storage refusing what the
    /// node hands it (an append it could not read back) fails the test.
    pub fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().unwrap();
            {
                let mut core = self.storages[&id].wl();
                if let Some(snapshot) = &rd.snapshot {
                    core.apply_snapshot(snapshot.clone()).expect("the node handed storage a stale snapshot");
                }
                core.append(&rd.entries).expect("the node handed storage entries it cannot hold");
                if let Some(hs) = rd.hard_state {
                    core.set_hard_state(hs);
                }
            }
            for (to, frame) in &rd.messages {
                self.network.push((id, *to, frame.clone()));
            }
            for entry in &rd.committed_entries {
                self.apply(id, entry);
            }
            self.node(id).advance(rd.mark()).unwrap();
        }
    }

    fn apply(&mut self, id: u64, entry: &raft::Entry) {
        match entry.kind {
            raft::EntryKind::Normal if !entry.data.is_empty() => {
                self.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
            }
            raft::EntryKind::Normal => {}
            raft::EntryKind::ConfChange => {
                // A change that does not apply is skipped, as the runtime does.
                if let Ok(cs) = self.node(id).apply_conf_change_entry(entry) {
                    self.storages[&id].wl().set_conf_state(entry.index, cs);
                }
            }
        }
    }

    pub fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    /// Delivers one frame to `to`; a refused one is returned as the error.
    pub fn deliver(&mut self, to: u64, frame: &Bytes) -> Result<()> {
        let Some(node) = self.nodes.get_mut(&to) else { return Ok(()) };
        let outcome = node.step(frame);
        self.process(to);
        outcome
    }

    /// Delivers until the network is quiet (or a round limit). Frames between correct nodes are
    /// never refused.
    pub fn stabilize(&mut self) {
        for _ in 0..STABILIZE_ROUNDS {
            self.process_all();
            let batch = std::mem::take(&mut self.network);
            if batch.is_empty() {
                return;
            }
            for (from, to, frame) in batch {
                if let Err(e) = self.deliver(to, &frame) {
                    panic!("a frame from correct node {from} to {to} was refused: {e}");
                }
            }
        }
    }

    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.node(id).tick();
        }
        self.stabilize();
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes.values().find(|n| n.raft.role == Role::Leader).map(|n| n.raft.id)
    }

    pub fn elect(&mut self, id: u64) {
        self.node(id).campaign();
        self.stabilize();
        assert_eq!(self.nodes[&id].raft.role, Role::Leader, "node {id} should lead");
    }

    /// Ticks until some node leads (bounded); returns it.
    pub fn await_leader(&mut self, max_ticks: usize) -> Option<u64> {
        for _ in 0..max_ticks {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            self.tick_all();
        }
        self.leader()
    }

    /// Whether `data` was applied by a majority of the nodes.
    pub fn committed_on_majority(&self, data: &[u8]) -> bool {
        let count = self.applied.values().filter(|entries| entries.iter().any(|(_, d)| d.as_ref() == data)).count();
        count > self.ids.len() / 2
    }

    /// Rebuilds node `id` from its storage, as after a crash (unpersisted state is lost).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.applied.remove(&id);
        let node = raft::RawNode::new(id, self.config.clone(), self.storages[&id].clone(), &self.ids, &[], 0)?;
        self.nodes.insert(id, node);
        Ok(())
    }
}

pub struct PaxosCluster {
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, paxos::RawNode<paxos::MemStorage>>,
    pub storages: BTreeMap<u64, paxos::MemStorage>,
    pub network: Vec<(u64, u64, Bytes)>,
    pub applied: BTreeMap<u64, Vec<(u64, Bytes)>>,
    pub config: paxos::Config,
}

pub fn paxos_config(seed: u64) -> paxos::Config {
    paxos::Config { election_tick: 10, heartbeat_tick: 1, seed, ..paxos::Config::default() }
}

impl PaxosCluster {
    pub fn new(n: u64, seed: u64) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let config = paxos_config(seed);
        let storages: BTreeMap<u64, paxos::MemStorage> =
            ids.iter().map(|id| (*id, paxos::MemStorage::new(&ids))).collect();
        let nodes = ids
            .iter()
            .map(|id| (*id, paxos::RawNode::new(*id, config.clone(), storages[id].clone(), &ids, 0).unwrap()))
            .collect();
        PaxosCluster { ids, nodes, storages, network: Vec::new(), applied: BTreeMap::new(), config }
    }

    pub fn node(&mut self, id: u64) -> &mut paxos::RawNode<paxos::MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn process(&mut self, id: u64) {
        while self.nodes[&id].has_ready() {
            let rd = self.node(id).ready().unwrap();
            {
                let mut core = self.storages[&id].wl();
                if let Some(snapshot) = &rd.snapshot {
                    core.apply_snapshot(snapshot.clone()).expect("the node handed storage a stale snapshot");
                }
                core.put_accepted(&rd.accepted);
                if let Some(hs) = rd.hard_state {
                    core.set_hard_state(hs);
                }
            }
            for (to, frame) in &rd.messages {
                self.network.push((id, *to, frame.clone()));
            }
            for entry in &rd.committed_entries {
                if entry.kind == paxos::EntryKind::Normal {
                    self.applied.entry(id).or_default().push((entry.index, entry.data.clone()));
                }
            }
            self.node(id).advance(rd.mark()).unwrap();
        }
    }

    pub fn process_all(&mut self) {
        for id in self.ids.clone() {
            self.process(id);
        }
    }

    pub fn deliver(&mut self, to: u64, frame: &Bytes) -> Result<()> {
        let Some(node) = self.nodes.get_mut(&to) else { return Ok(()) };
        let outcome = node.step(frame);
        self.process(to);
        outcome
    }

    pub fn stabilize(&mut self) {
        for _ in 0..STABILIZE_ROUNDS {
            self.process_all();
            let batch = std::mem::take(&mut self.network);
            if batch.is_empty() {
                return;
            }
            for (from, to, frame) in batch {
                if let Err(e) = self.deliver(to, &frame) {
                    panic!("a frame from correct node {from} to {to} was refused: {e}");
                }
            }
        }
    }

    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.node(id).tick();
        }
        self.stabilize();
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes.values().find(|n| n.paxos.role == Role::Leader).map(|n| n.paxos.id)
    }

    pub fn elect(&mut self, id: u64) {
        self.node(id).campaign();
        self.stabilize();
        assert_eq!(self.nodes[&id].paxos.role, Role::Leader, "node {id} should lead");
    }

    pub fn await_leader(&mut self, max_ticks: usize) -> Option<u64> {
        for _ in 0..max_ticks {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            self.tick_all();
        }
        self.leader()
    }

    pub fn committed_on_majority(&self, data: &[u8]) -> bool {
        let count = self.applied.values().filter(|entries| entries.iter().any(|(_, d)| d.as_ref() == data)).count();
        count > self.ids.len() / 2
    }

    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.applied.remove(&id);
        let node = paxos::RawNode::new(id, self.config.clone(), self.storages[&id].clone(), &self.ids, 0)?;
        self.nodes.insert(id, node);
        Ok(())
    }
}
