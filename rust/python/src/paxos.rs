//! `consensus.paxos`: the Multi-Paxos core (`consensus_core::paxos`) with the same shape as
//! `consensus.raft` — `PaxosNode` driven by `tick`, `step` and `propose`, whose `Ready` the caller
//! persists, sends and applies before `advance`. Classes are registered in `_core` as `Paxos*` and
//! aliased in `python/consensus/paxos.py`.

use consensus_core::paxos::{
    self as core, Ballot as CoreBallot, Config as CoreConfig, HardState as CoreHardState, MemStorage,
    Message as CoreMessage, MessageType as CoreMessageType, RawNode, Snapshot as CoreSnapshot,
};
use consensus_storage::PaxosFileStorage as CorePaxosFileStorage;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::common::{message_type_class, pymethods_with_getters, EntryKind};
use crate::convert::{bytes_of, member_ids, node_id, parse_read_only_option, unsigned_arg};
use crate::errors::{config_error, storage_to_py, to_py};
use crate::node::{node_class, ready_class};
use crate::role::Role;
use crate::storage::{file_storage_class, memory_storage_class, pymethods_of, NodeStorage, StorageClass};

// -------------------------------------------------------------------- values

/// A ballot `(round, node)`, totally ordered by round, then node.
#[pyclass(name = "Ballot", module = "consensus.paxos", from_py_object, frozen, eq, ord, hash)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    pub inner: CoreBallot,
}

pymethods_with_getters!(Ballot, copy { round: u64 = round, node: u64 = node }, bytes {}, {
    #[new]
    fn new(round: u64, node: u64) -> Self {
        Ballot { inner: CoreBallot::new(round, node) }
    }
    fn __repr__(&self) -> String {
        format!("Ballot(round={}, node={})", self.inner.round, self.inner.node)
    }
});

/// One applied command: `index` is its slot, `term` the round of the ballot that first proposed
/// the slot's value (the same on every replica), `kind` NORMAL or CONF_CHANGE.
#[pyclass(name = "Entry", module = "consensus.paxos", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Entry {
    pub inner: core::Entry,
}

pymethods_with_getters!(Entry, copy { index: u64 = index, term: u64 = term }, bytes { data }, {
    #[getter]
    fn kind(&self) -> EntryKind {
        self.inner.kind.into()
    }
    /// `(alpha, members)` of a CONF_CHANGE entry: the configuration it installs, which governs the
    /// slots after this one's slot + alpha (the α-window).
    fn reconfig(&self) -> PyResult<(u64, Vec<u64>)> {
        core::decode_reconfig(&self.inner.data).map_err(|e| to_py(e.into()))
    }
    fn __repr__(&self) -> String {
        format!("Entry(index={}, term={}, {} bytes)", self.inner.index, self.inner.term, self.inner.data.len())
    }
});

/// What must be durable before a message that depends on it leaves: the promised ballot and the
/// commit (decided) slot.
#[pyclass(name = "HardState", module = "consensus.paxos", from_py_object, frozen, eq)]
#[derive(Clone, Copy, PartialEq)]
pub struct HardState {
    pub inner: CoreHardState,
}

pymethods_with_getters!(HardState, copy { commit: u64 = commit }, bytes {}, {
    #[getter]
    fn promised(&self) -> Ballot {
        Ballot { inner: self.inner.promised }
    }
    /// The promised round (what `term` means for Paxos).
    #[getter]
    fn term(&self) -> u64 {
        self.inner.promised.round
    }
    /// The promised ballot's node (the proposer this node promised to).
    #[getter]
    fn vote(&self) -> u64 {
        self.inner.promised.node
    }
    fn __repr__(&self) -> String {
        format!("HardState(promised={}, commit={})", self.inner.promised, self.inner.commit)
    }
});

/// The application's state at slot `index` and the members governing the slots after it.
#[pyclass(name = "Snapshot", module = "consensus.paxos", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Snapshot {
    pub inner: CoreSnapshot,
}

pymethods_with_getters!(Snapshot, copy { index: u64 = index, term: u64 = term }, bytes { data }, {
    #[new]
    #[pyo3(signature = (index, term, members, data = None))]
    fn new(index: u64, term: u64, members: Vec<u64>, data: Option<&[u8]>) -> Self {
        Snapshot {
            inner: CoreSnapshot { index, term, members, pending: Vec::new(), data: bytes_of(data.unwrap_or_default()) },
        }
    }
    #[getter]
    fn members(&self) -> Vec<u64> {
        self.inner.members.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(index={}, term={}, members={:?}, {} bytes)",
            self.inner.index,
            self.inner.term,
            self.inner.members,
            self.inner.data.len()
        )
    }
});

// -------------------------------------------------------------------- messages

message_type_class!(
    MessageType in "consensus.paxos" mirrors CoreMessageType {
        PREPARE = 1 => Prepare,
        PROMISE = 2 => Promise,
        ACCEPT = 3 => Accept,
        ACCEPTED = 4 => Accepted,
        COMMIT = 5 => Commit,
        COMMIT_ACK = 6 => CommitAck,
        NACK = 7 => Nack,
        CATCH_UP = 8 => CatchUp,
        SNAPSHOT = 9 => Snapshot,
        PROPOSE = 10 => Propose,
        READ_INDEX = 11 => ReadIndex,
        READ_INDEX_RESPONSE = 12 => ReadIndexResponse,
        TIMEOUT_NOW = 13 => TimeoutNow,
        PROMISE_PAGE = 14 => PromisePage,
    }
);

/// One slot for `Message(slots=...)`: `(slot, ballot, kind, round, commands)`, `kind` being 0
/// (no-op), 1 (batch) or 2 (membership).
type SlotTuple = (u64, Ballot, u8, u64, Vec<Vec<u8>>);

fn slot_from_tuple((slot, ballot, kind, round, commands): SlotTuple) -> PyResult<core::AcceptedSlot> {
    let kind = match kind {
        0 => core::ValueKind::Noop,
        1 => core::ValueKind::Batch,
        2 => core::ValueKind::Reconfig,
        other => return Err(config_error("slots", format!("value kind {other} is not 0, 1 or 2"))),
    };
    let commands = commands.into_iter().map(bytes::Bytes::from).collect();
    Ok(core::AcceptedSlot { slot, ballot: ballot.inner, value: core::Value { kind, round, commands } })
}

/// A peer message. The constructor checks nothing beyond the types (tests build hostile frames
/// with it); `encode` gives its frame.
#[pyclass(name = "Message", module = "consensus.paxos", frozen)]
pub struct Message {
    pub inner: CoreMessage,
}

pymethods_with_getters!(
    Message,
    copy { from_: u64 = from, to: u64 = to, index: u64 = index, last_index: u64 = last_index, commit: u64 = commit },
    bytes { context },
    converted { r#type: MessageType = msg_type },
    {
        #[new]
        #[pyo3(signature = (r#type, from_, to, ballot, index = 0, last_index = 0, commit = 0, slots = Vec::new(),
                        commands = Vec::new(), context = None, snapshot = None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            r#type: MessageType,
            from_: u64,
            to: u64,
            ballot: Ballot,
            index: u64,
            last_index: u64,
            commit: u64,
            slots: Vec<SlotTuple>,
            commands: Vec<Vec<u8>>,
            context: Option<&[u8]>,
            snapshot: Option<Snapshot>,
        ) -> PyResult<Self> {
            Ok(Message {
                inner: CoreMessage {
                    msg_type: r#type.into(),
                    from: from_,
                    to,
                    ballot: ballot.inner,
                    index,
                    last_index,
                    commit,
                    entries: slots.into_iter().map(slot_from_tuple).collect::<PyResult<_>>()?,
                    commands: commands.into_iter().map(bytes::Bytes::from).collect(),
                    context: bytes_of(context.unwrap_or_default()),
                    snapshot: snapshot.map(|s| s.inner),
                },
            })
        }
        #[getter]
        fn ballot(&self) -> Ballot {
            Ballot { inner: self.inner.ballot }
        }
        /// `(slot, ballot, number of commands)` of each slot the message carries.
        #[getter]
        fn slots(&self) -> Vec<(u64, Ballot, usize)> {
            self.inner.entries.iter().map(|s| (s.slot, Ballot { inner: s.ballot }, s.value.commands.len())).collect()
        }
        fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
            PyBytes::new(py, &core::wire::encode(&self.inner))
        }
        fn __repr__(&self) -> String {
            format!(
                "Message({:?}, from_={}, to={}, ballot={}, index={}, commit={})",
                self.inner.msg_type,
                self.inner.from,
                self.inner.to,
                self.inner.ballot,
                self.inner.index,
                self.inner.commit
            )
        }
    }
);

/// Decodes a Multi-Paxos frame; malformed bytes raise `DecodeError`.
#[pyfunction]
pub fn paxos_decode(frame: &[u8]) -> PyResult<Message> {
    let inner = core::wire::decode(&bytes_of(frame)).map_err(|e| to_py(e.into()))?;
    Ok(Message { inner })
}

// -------------------------------------------------------------------- config

/// Multi-Paxos settings. `election_tick`, `heartbeat_tick` and `seed` mean what they mean for Raft;
/// `max_inflight_slots` is also the α of reconfiguration (docs/paxos.md).
#[pyclass(name = "Config", module = "consensus.paxos", from_py_object, frozen)]
#[derive(Clone)]
pub struct Config {
    pub inner: CoreConfig,
}

pymethods_with_getters!(
    Config,
    copy {
        election_tick: u64 = election_tick,
        heartbeat_tick: u64 = heartbeat_tick,
        max_inflight_slots: u64 = max_inflight_slots,
        seed: u64 = seed,
    },
    bytes {},
    {
        #[new]
        #[pyo3(signature = (*, election_tick = 10, heartbeat_tick = 1, max_inflight_slots = 256, max_batch_commands = 1024,
                        max_batch_bytes = 1 << 20, max_size_per_msg = 1 << 20, max_uncommitted_bytes = 64 << 20,
                        max_entry_bytes = 8 << 20, max_committed_bytes_per_ready = 64 << 20, max_pending_reads = 4096,
                        read_only_option = "safe", check_quorum = true, disable_proposal_forwarding = false, seed = 0))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            election_tick: i64,
            heartbeat_tick: i64,
            max_inflight_slots: i64,
            max_batch_commands: i64,
            max_batch_bytes: i64,
            max_size_per_msg: i64,
            max_uncommitted_bytes: i64,
            max_entry_bytes: i64,
            max_committed_bytes_per_ready: i64,
            max_pending_reads: i64,
            read_only_option: &str,
            check_quorum: bool,
            disable_proposal_forwarding: bool,
            seed: i64,
        ) -> PyResult<Self> {
            let read_only_option = parse_read_only_option(read_only_option)?;
            let inner = CoreConfig {
                election_tick: unsigned_arg!(election_tick),
                heartbeat_tick: unsigned_arg!(heartbeat_tick),
                max_inflight_slots: unsigned_arg!(max_inflight_slots),
                max_batch_commands: unsigned_arg!(max_batch_commands) as usize,
                max_batch_bytes: unsigned_arg!(max_batch_bytes),
                max_size_per_msg: unsigned_arg!(max_size_per_msg),
                max_uncommitted_bytes: unsigned_arg!(max_uncommitted_bytes),
                max_entry_bytes: unsigned_arg!(max_entry_bytes),
                max_committed_bytes_per_ready: unsigned_arg!(max_committed_bytes_per_ready),
                max_pending_reads: unsigned_arg!(max_pending_reads) as usize,
                read_only_option,
                check_quorum,
                disable_proposal_forwarding,
                seed: seed as u64,
            };
            inner.validate().map_err(to_py)?;
            Ok(Config { inner })
        }
        fn __repr__(&self) -> String {
            format!(
                "Config(election_tick={}, heartbeat_tick={}, max_inflight_slots={}, seed={})",
                self.inner.election_tick, self.inner.heartbeat_tick, self.inner.max_inflight_slots, self.inner.seed
            )
        }
    }
);

// -------------------------------------------------------------------- ready

ready_class!(
    #[pyclass(name = "Ready", module = "consensus.paxos", frozen)]
    Ready {
        core: core::Ready,
        mark: core::ReadyMark,
        persists: accepted,
        entry: Entry,
        hard_state: HardState,
        snapshot: Snapshot,
    },
    {
        /// Accepted slots to store: `(slot, ballot, number of commands)`.
        #[getter]
        fn accepted(&self) -> Vec<(u64, Ballot, usize)> {
            self.inner.accepted.iter().map(|s| (s.slot, Ballot { inner: s.ballot }, s.value.commands.len())).collect()
        }
        /// Raft's name for what must be stored; for Paxos, the accepted slots.
        #[getter]
        fn entries(&self) -> Vec<u64> {
            self.inner.accepted.iter().map(|s| s.slot).collect()
        }
        /// The first slot this Ready decides for the application (no-op slots included); 0 when none.
        #[getter]
        fn committed_from(&self) -> u64 {
            self.inner.committed_from
        }
        /// The last slot this Ready decides for the application (no-op slots included, which have no
        /// entry): the applied index once it is advanced. 0 when none.
        #[getter]
        fn committed_through(&self) -> u64 {
            self.inner.committed_through
        }
        /// The role when it changed since the previous Ready, else `None`.
        #[getter]
        fn role(&self) -> Option<Role> {
            self.inner.role.map(Role::from)
        }
        #[getter]
        fn ballot(&self) -> Ballot {
            Ballot { inner: self.inner.ballot }
        }
    },
);

// -------------------------------------------------------------------- storage

/// Passes to `$mac` (after `$args`) the reads both Multi-Paxos storages answer from their
/// in-memory part `mem`.
macro_rules! with_paxos_storage_reads {
    ($mac:ident!($($args:tt)*)) => {
        $mac!($($args)* {
            fn hard_state(&self) -> HardState {
                HardState { inner: self.mem.rl().hard_state() }
            }
            fn snapshot(&self) -> Snapshot {
                Snapshot { inner: self.mem.rl().snapshot().clone() }
            }
            fn first_index(&self) -> u64 {
                self.mem.rl().snapshot().index + 1
            }
            /// The highest accepted slot held (the snapshot index when none).
            fn last_index(&self) -> u64 {
                let core = self.mem.rl();
                core.accepted().keys().next_back().copied().unwrap_or(core.snapshot().index)
            }
            /// The ballot this storage accepted `slot` at, if it holds one.
            fn accepted_ballot(&self, slot: u64) -> Option<Ballot> {
                self.mem.rl().accepted().get(&slot).map(|s| Ballot { inner: s.ballot })
            }
        });
    };
}

memory_storage_class!(
    /// In-memory storage: the promise, the accepted slots, the commit slot, the snapshot and the
    /// membership. A node built on a non-empty storage restarts from it.
    #[pyclass(name = "MemoryStorage", module = "consensus.paxos", from_py_object, frozen)]
    #[derive(Clone)]
    MemoryStorage { mem: MemStorage, core_ready: core::Ready },
    store = |core, rd| core.put_accepted(&rd.accepted),
);

with_paxos_storage_reads!(pymethods_of!(MemoryStorage, {
    /// `members`: the initial configuration of a new cluster (empty for a node that joins one).
    #[new]
    #[pyo3(signature = (members = Vec::new()))]
    fn new(members: Vec<u64>) -> Self {
        MemoryStorage { mem: MemStorage::new(&members) }
    }
    fn persist(&self, py: Python<'_>, rd: &Ready) -> PyResult<()> {
        self.persist_ready(py, &rd.inner)
    }
    /// Records a snapshot of the application at an applied `index` and drops the slots up to it.
    #[pyo3(signature = (index, data = None))]
    fn compact(&self, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        self.mem.compact(index, bytes_of(data.unwrap_or_default())).map_err(storage_to_py)
    }
    fn apply_snapshot(&self, snapshot: &Snapshot) -> PyResult<()> {
        self.mem.wl().apply_snapshot(snapshot.inner.clone()).map_err(storage_to_py)
    }
    fn __repr__(&self) -> String {
        let core = self.mem.rl();
        format!("MemoryStorage(snapshot_index={}, accepted={})", core.snapshot().index, core.accepted().len())
    }
},));

with_paxos_storage_reads!(file_storage_class!(
    /// Durable Multi-Paxos storage in a directory: the promise, the accepted slots and the commit
    /// slot in a write-ahead log of CRC32C records, plus snapshot files. Usable wherever
    /// `paxos.MemoryStorage` is; a node built on a reopened one restarts from disk.
    #[pyclass(name = "FileStorage", module = "consensus.paxos", frozen)]
    FileStorage {
        durable: CorePaxosFileStorage,
        mem: MemStorage,
        ready: Ready,
        core_ready: core::Ready,
        snapshot: Snapshot,
    },
    {
    },
));

// -------------------------------------------------------------------- node

impl PaxosNode {
    /// Records the members of a new cluster when the storage knows none, so a restart from this
    /// storage finds them.
    fn bootstrap(&self, py: Python<'_>, members: &[u64]) -> PyResult<()> {
        if members.is_empty() || self.storage.mem().rl().membership().is_some() {
            return Ok(());
        }
        match &self.storage {
            NodeStorage::Memory(memory) => {
                memory.mem.wl().set_initial_members(members);
                Ok(())
            }
            NodeStorage::File(file) => file.get().handle.with(py, |s| s.set_initial_members(members)),
        }
    }
}

node_class!(
    /// A Multi-Paxos node: the same methods and Ready contract as `raft.RaftNode`.
    #[pyclass(name = "PaxosNode", module = "consensus.paxos")]
    PaxosNode {
        core: RawNode<MemStorage>,
        memory: MemoryStorage,
        file: FileStorage,
        ready: Ready,
        config: Config,
        exhausted: "the ballot round reached TERM_MAX: no campaign is possible",
    },
    {
            #[new]
            #[pyo3(signature = (id, members = Vec::new(), config = None, storage = None, applied = 0))]
            fn new(
                py: Python<'_>,
                id: i64,
                members: Vec<i64>,
                config: Option<Config>,
                storage: Option<&Bound<'_, PyAny>>,
                applied: u64,
            ) -> PyResult<Self> {
                let id = node_id(id)?;
                let members = member_ids("members", members)?;
                let config = config.unwrap_or_else(|| Config { inner: CoreConfig::default()
    },
);
            let storage = NodeStorage::from_py(
                storage,
                || MemoryStorage { mem: MemStorage::new(&members) },
                "storage must be a paxos.MemoryStorage or a paxos.FileStorage",
            )?;
            let node = RawNode::new(id, config.inner.clone(), storage.mem(), &members, applied).map_err(to_py)?;
            let paxos = PaxosNode { node, storage, config };
            paxos.bootstrap(py, &members)?;
            Ok(paxos)
        }

        /// The promised ballot.
        #[getter]
        fn ballot(&self) -> Ballot {
            Ballot { inner: self.node.paxos.promised }
        }
        #[getter]
        fn first_index(&self) -> u64 {
            self.node.paxos.first_slot
        }
        /// The latest configuration known (it may take effect at a later slot).
        #[getter]
        fn members(&self) -> Vec<u64> {
            self.node.members().to_vec()
        }

        /// Proposes a new member list (the α-window rule: it governs slots from its slot + α + 1).
        fn propose_reconfig(&mut self, members: Vec<u64>) -> PyResult<u64> {
            self.node.propose_reconfig(&members).map_err(to_py)
        }
        fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let s = self.node.status();
            let d = PyDict::new(py);
            d.set_item("id", s.id)?;
            d.set_item("role", s.role.as_str())?;
            d.set_item("term", s.ballot.round)?;
            d.set_item("ballot", (s.ballot.round, s.ballot.node))?;
            d.set_item("leader", s.leader)?;
            d.set_item("commit", s.commit)?;
            d.set_item("applied", s.applied)?;
            d.set_item("first_index", s.first_slot)?;
            d.set_item("last_index", s.last_slot)?;
            d.set_item("voters", s.members.clone())?;
            d.set_item("learners", Vec::<u64>::new())?;
            d.set_item("uncommitted_bytes", s.uncommitted_bytes)?;
            d.set_item("lead_transferee", s.transfer_target)?;
            let progress = PyDict::new(py);
            for p in &s.progress {
                let entry = PyDict::new(py);
                entry.set_item("match", p.decided)?;
                entry.set_item("recent_active", p.recent_active)?;
                progress.set_item(p.id, entry)?;
            }
            d.set_item("progress", progress)?;
            Ok(d)
        }
        fn __repr__(&self) -> String {
            let p = &self.node.paxos;
            format!(
                "PaxosNode(id={}, role={}, ballot={}, leader={}, commit={})",
                p.id,
                p.role.as_str(),
                p.promised,
                p.leader,
                p.commit
            )
        }
    }
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PaxosBallot", py.get_type::<Ballot>())?;
    m.add("PaxosEntry", py.get_type::<Entry>())?;
    m.add("PaxosHardState", py.get_type::<HardState>())?;
    m.add("PaxosSnapshot", py.get_type::<Snapshot>())?;
    m.add("PaxosMessageType", py.get_type::<MessageType>())?;
    m.add("PaxosMessage", py.get_type::<Message>())?;
    m.add("PaxosConfig", py.get_type::<Config>())?;
    m.add("PaxosReady", py.get_type::<Ready>())?;
    m.add("PaxosMemoryStorage", py.get_type::<MemoryStorage>())?;
    m.add("PaxosFileStorage", py.get_type::<FileStorage>())?;
    m.add("PaxosNode", py.get_type::<PaxosNode>())?;
    m.add_function(wrap_pyfunction!(paxos_decode, m)?)?;
    Ok(())
}
