//! The structure-aware hostile-peer fuzzing of both cores (`consensus_core::sim::hostile`) with
//! every node persisting into a real data directory: whatever the hostile frames leave, the WAL
//! takes it, and every node reopens its directory and restarts from it (issue 9: never a durable
//! state a node cannot restart from). `HOSTILE_SEEDS` sets the number of seeds per mode.

use std::collections::BTreeMap;

use consensus_core::paxos;
use consensus_core::raft;
use consensus_core::raft::storage::MemStorage;
use consensus_core::rng::Rng;
use consensus_core::sim::hostile::{run_hostile_on, Durable, Mode, Paxos, PaxosCluster, Raft, RaftCluster};
use consensus_core::StorageError;
use consensus_storage::{DurableStorage, FileStorage, FsyncPolicy, Options, PaxosFileStorage};

mod common;
use common::TempDir;

const IDS: [u64; 3] = [1, 2, 3];

/// Small segments, so that runs roll segments too; no fsync (nothing here survives a power loss).
fn options() -> Options {
    Options { fsync: FsyncPolicy::Never, segment_bytes: 4096, ..Options::default() }
}

fn seeds() -> u64 {
    std::env::var("HOSTILE_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30)
}

struct RaftWal {
    dirs: BTreeMap<u64, TempDir>,
    files: BTreeMap<u64, FileStorage>,
}

impl Durable<Raft> for RaftWal {
    fn persist(&mut self, id: u64, rd: &raft::Ready) -> Result<(), StorageError> {
        self.files.get_mut(&id).expect("a node").persist(rd)
    }

    fn set_conf_state(&mut self, id: u64, index: u64, cs: raft::ConfState) -> Result<(), StorageError> {
        self.files.get_mut(&id).expect("a node").set_conf_state(index, cs)
    }

    fn reopen(&mut self, id: u64) -> Result<MemStorage, StorageError> {
        self.files.get_mut(&id).expect("a node").close()?;
        let file = FileStorage::open(&self.dirs[&id].0, options())?;
        let mem = file.mem().clone();
        self.files.insert(id, file);
        Ok(mem)
    }
}

fn raft_cluster_on_disk(seed: u64) -> RaftCluster {
    let dirs: BTreeMap<u64, TempDir> =
        IDS.iter().map(|id| (*id, TempDir::new(&format!("hostile-raft-{id}")))).collect();
    let files: BTreeMap<u64, FileStorage> =
        dirs.iter().map(|(id, dir)| (*id, FileStorage::open(&dir.0, options()).unwrap())).collect();
    let mut files = files;
    for file in files.values_mut() {
        // The bootstrap configuration, as the bindings record it for a new node.
        file.set_conf_state(0, raft::ConfState { voters: IDS.to_vec(), ..Default::default() }).unwrap();
    }
    let storages = files.iter().map(|(id, f)| (*id, f.mem().clone())).collect();
    RaftCluster::with_durable(storages, Box::new(RaftWal { dirs, files }), seed)
}

struct PaxosWal {
    dirs: BTreeMap<u64, TempDir>,
    files: BTreeMap<u64, PaxosFileStorage>,
}

impl Durable<Paxos> for PaxosWal {
    fn persist(&mut self, id: u64, rd: &paxos::Ready) -> Result<(), StorageError> {
        self.files.get_mut(&id).expect("a node").persist(rd)
    }

    fn reopen(&mut self, id: u64) -> Result<paxos::MemStorage, StorageError> {
        self.files.get_mut(&id).expect("a node").close()?;
        let file = PaxosFileStorage::open(&self.dirs[&id].0, options())?;
        let mem = file.mem().clone();
        self.files.insert(id, file);
        Ok(mem)
    }
}

fn paxos_cluster_on_disk(seed: u64) -> PaxosCluster {
    let dirs: BTreeMap<u64, TempDir> =
        IDS.iter().map(|id| (*id, TempDir::new(&format!("hostile-paxos-{id}")))).collect();
    let mut files: BTreeMap<u64, PaxosFileStorage> =
        dirs.iter().map(|(id, dir)| (*id, PaxosFileStorage::open(&dir.0, options()).unwrap())).collect();
    for file in files.values_mut() {
        file.set_initial_members(&IDS).unwrap();
    }
    let storages = files.iter().map(|(id, f)| (*id, f.mem().clone())).collect();
    PaxosCluster::with_durable(storages, Box::new(PaxosWal { dirs, files }), seed)
}

#[test]
fn hostile_frames_leave_a_raft_wal_every_node_reopens_and_restarts_from() {
    for mode in [Mode::Door, Mode::Chaos] {
        for seed in 0..seeds() {
            let outcome = run_hostile_on(&mut Rng::new(seed), mode, 200, raft_cluster_on_disk);
            assert!(outcome.is_ok(), "raft {mode:?} seed {seed}: {outcome:?}");
        }
    }
}

#[test]
fn hostile_frames_leave_a_paxos_wal_every_node_reopens_and_restarts_from() {
    for mode in [Mode::Door, Mode::Chaos] {
        for seed in 0..seeds() {
            let outcome = run_hostile_on(&mut Rng::new(seed), mode, 200, paxos_cluster_on_disk);
            assert!(outcome.is_ok(), "paxos {mode:?} seed {seed}: {outcome:?}");
        }
    }
}
