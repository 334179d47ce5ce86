//! Python classes of `consensus.raft`: the node, its configuration, the Ready batch, the data types
//! and in-memory storage. Each class wraps a core type; conversions happen only at the boundary.

use consensus_core::raft::storage::MemStorage;
use consensus_core::raft::{
    self as core, wire, ConfChange as CoreConfChange, ConfState as CoreConfState, Entry as CoreEntry,
    EntryKind as CoreEntryKind, HardState as CoreHardState, Message as CoreMessage, MessageType as CoreMessageType,
    RawNode, Snapshot as CoreSnapshot,
};
use consensus_storage::FileStorage as CoreFileStorage;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::common::{message_type_class, pymethods_with_getters, EntryKind};
use crate::convert::{bytes_of, member_ids, node_id, parse_read_only_option, read_only_option_name, unsigned_arg};
use crate::errors::{storage_to_py, to_py};
use crate::node::{node_class, ready_class};
use crate::role::Role;
use crate::storage::{file_storage_class, memory_storage_class, pymethods_of, NodeStorage, StorageClass};

// -------------------------------------------------------------------- enums

message_type_class!(
    MessageType in "consensus.raft" mirrors CoreMessageType {
        REQUEST_VOTE = 1 => RequestVote,
        REQUEST_VOTE_RESPONSE = 2 => RequestVoteResponse,
        REQUEST_PRE_VOTE = 3 => RequestPreVote,
        REQUEST_PRE_VOTE_RESPONSE = 4 => RequestPreVoteResponse,
        APPEND_ENTRIES = 5 => AppendEntries,
        APPEND_ENTRIES_RESPONSE = 6 => AppendEntriesResponse,
        HEARTBEAT = 7 => Heartbeat,
        HEARTBEAT_RESPONSE = 8 => HeartbeatResponse,
        INSTALL_SNAPSHOT = 9 => InstallSnapshot,
        TIMEOUT_NOW = 10 => TimeoutNow,
        READ_INDEX = 11 => ReadIndex,
        READ_INDEX_RESPONSE = 12 => ReadIndexResponse,
        PROPOSE = 13 => Propose,
        TRANSFER_LEADER = 14 => TransferLeader,
    }
);

// -------------------------------------------------------------------- value types

/// One log entry.
#[pyclass(name = "Entry", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Entry {
    pub inner: CoreEntry,
}

pymethods_with_getters!(Entry, copy { index: u64 = index, term: u64 = term }, bytes { data }, {
    #[new]
    #[pyo3(signature = (index, term, data = None, kind = EntryKind::NORMAL))]
    fn new(index: u64, term: u64, data: Option<&[u8]>, kind: EntryKind) -> Self {
        Entry { inner: CoreEntry::new(index, term, kind.into(), bytes_of(data.unwrap_or_default())) }
    }
    #[getter]
    fn kind(&self) -> EntryKind {
        self.inner.kind.into()
    }
    fn __repr__(&self) -> String {
        let kind = if self.inner.kind == CoreEntryKind::Normal { "NORMAL" } else { "CONF_CHANGE" };
        format!(
            "Entry(index={}, term={}, kind={kind}, data=<{} bytes>)",
            self.inner.index,
            self.inner.term,
            self.inner.data.len()
        )
    }
});

/// Term, vote and commit index: what must be durable before dependent messages are sent.
#[pyclass(name = "HardState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct HardState {
    pub inner: CoreHardState,
}

pymethods_with_getters!(HardState, copy { term: u64 = term, vote: u64 = vote, commit: u64 = commit }, bytes {}, {
    #[new]
    #[pyo3(signature = (term = 0, vote = 0, commit = 0))]
    fn new(term: u64, vote: u64, commit: u64) -> Self {
        HardState { inner: CoreHardState { term, vote, commit } }
    }
    fn __repr__(&self) -> String {
        format!("HardState(term={}, vote={}, commit={})", self.inner.term, self.inner.vote, self.inner.commit)
    }
});

/// A membership configuration; `voters_outgoing` is non-empty during a joint configuration.
#[pyclass(name = "ConfState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct ConfState {
    pub inner: CoreConfState,
}

pymethods_with_getters!(ConfState, copy { auto_leave: bool = auto_leave }, bytes {}, {
    #[new]
    #[pyo3(signature = (voters = Vec::new(), learners = Vec::new(), voters_outgoing = Vec::new()))]
    fn new(voters: Vec<u64>, learners: Vec<u64>, voters_outgoing: Vec<u64>) -> Self {
        ConfState { inner: CoreConfState { voters, learners, voters_outgoing, ..Default::default() } }
    }
    #[getter]
    fn voters(&self) -> Vec<u64> {
        self.inner.voters.clone()
    }
    #[getter]
    fn learners(&self) -> Vec<u64> {
        self.inner.learners.clone()
    }
    #[getter]
    fn voters_outgoing(&self) -> Vec<u64> {
        self.inner.voters_outgoing.clone()
    }
    #[getter]
    fn learners_next(&self) -> Vec<u64> {
        self.inner.learners_next.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "ConfState(voters={:?}, learners={:?}, voters_outgoing={:?})",
            self.inner.voters, self.inner.learners, self.inner.voters_outgoing
        )
    }
});

/// A membership change: more than one voter changing means joint consensus.
#[pyclass(name = "ConfChange", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct ConfChange {
    pub inner: CoreConfChange,
}

#[pymethods]
impl ConfChange {
    #[new]
    #[pyo3(signature = (add_voters = Vec::new(), remove_voters = Vec::new(), add_learners = Vec::new(), remove_learners = Vec::new()))]
    fn new(add_voters: Vec<u64>, remove_voters: Vec<u64>, add_learners: Vec<u64>, remove_learners: Vec<u64>) -> Self {
        ConfChange { inner: CoreConfChange { add_voters, remove_voters, add_learners, remove_learners } }
    }
    #[getter]
    fn add_voters(&self) -> Vec<u64> {
        self.inner.add_voters.clone()
    }
    #[getter]
    fn remove_voters(&self) -> Vec<u64> {
        self.inner.remove_voters.clone()
    }
    #[getter]
    fn add_learners(&self) -> Vec<u64> {
        self.inner.add_learners.clone()
    }
    #[getter]
    fn remove_learners(&self) -> Vec<u64> {
        self.inner.remove_learners.clone()
    }
    /// The encoding carried in a `CONF_CHANGE` entry's data.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &wire::encode_conf_change(&self.inner))
    }
    #[staticmethod]
    fn decode(data: &[u8]) -> PyResult<Self> {
        let inner = wire::decode_conf_change(&bytes_of(data)).map_err(|e| to_py(e.into()))?;
        Ok(ConfChange { inner })
    }
    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "ConfChange(add_voters={:?}, remove_voters={:?}, add_learners={:?}, remove_learners={:?})",
            c.add_voters, c.remove_voters, c.add_learners, c.remove_learners
        )
    }
}

/// The application's state at `index`, with the configuration in force there.
#[pyclass(name = "Snapshot", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Snapshot {
    pub inner: CoreSnapshot,
}

pymethods_with_getters!(Snapshot, copy { index: u64 = index, term: u64 = term }, bytes { data }, {
    #[new]
    #[pyo3(signature = (index, term, conf_state = None, data = None))]
    fn new(index: u64, term: u64, conf_state: Option<ConfState>, data: Option<&[u8]>) -> Self {
        Snapshot {
            inner: CoreSnapshot {
                index,
                term,
                conf_state: conf_state.map(|c| c.inner).unwrap_or_default(),
                data: bytes_of(data.unwrap_or_default()),
            },
        }
    }
    #[getter]
    fn conf_state(&self) -> ConfState {
        ConfState { inner: self.inner.conf_state.clone() }
    }
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(index={}, term={}, data=<{} bytes>)",
            self.inner.index,
            self.inner.term,
            self.inner.data.len()
        )
    }
});

// -------------------------------------------------------------------- messages

/// A peer message; `encode()` gives the frame, `consensus.raft.decode(frame)` reads one.
#[pyclass(name = "Message", module = "consensus.raft", from_py_object, eq)]
#[derive(Clone, PartialEq)]
pub struct Message {
    pub inner: CoreMessage,
}

pymethods_with_getters!(
    Message,
    copy {
        from_: u64 = from,
        to: u64 = to,
        term: u64 = term,
        log_term: u64 = log_term,
        index: u64 = index,
        commit: u64 = commit,
        reject: bool = reject,
        reject_hint: u64 = reject_hint,
    },
    bytes { context },
    converted { r#type: MessageType = msg_type },
    {
        #[new]
        #[pyo3(signature = (r#type, from_, to, term = 0, log_term = 0, index = 0, commit = 0, entries = Vec::new(),
                        reject = false, reject_hint = 0, context = None, snapshot = None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            r#type: MessageType,
            from_: u64,
            to: u64,
            term: u64,
            log_term: u64,
            index: u64,
            commit: u64,
            entries: Vec<Entry>,
            reject: bool,
            reject_hint: u64,
            context: Option<&[u8]>,
            snapshot: Option<Snapshot>,
        ) -> Self {
            Message {
                inner: CoreMessage {
                    msg_type: r#type.into(),
                    from: from_,
                    to,
                    term,
                    log_term,
                    index,
                    commit,
                    entries: entries.into_iter().map(|e| e.inner).collect(),
                    reject,
                    reject_hint,
                    context: bytes_of(context.unwrap_or_default()),
                    snapshot: snapshot.map(|s| s.inner),
                },
            }
        }
        #[getter]
        fn entries(&self) -> Vec<Entry> {
            self.inner.entries.iter().map(|e| Entry { inner: e.clone() }).collect()
        }
        #[getter]
        fn snapshot(&self) -> Option<Snapshot> {
            self.inner.snapshot.clone().map(|inner| Snapshot { inner })
        }
        fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
            PyBytes::new(py, &wire::encode(&self.inner))
        }
        fn __repr__(&self) -> String {
            let m = &self.inner;
            format!(
            "Message(type={:?}, from_={}, to={}, term={}, log_term={}, index={}, commit={}, entries=<{}>, reject={}, reject_hint={})",
            m.msg_type, m.from, m.to, m.term, m.log_term, m.index, m.commit, m.entries.len(), m.reject, m.reject_hint
        )
        }
    }
);

/// Decodes one frame; malformed input raises `DecodeError`.
#[pyfunction]
pub fn raft_decode(frame: &[u8]) -> PyResult<Message> {
    let inner = wire::decode(&bytes_of(frame)).map_err(|e| to_py(e.into()))?;
    Ok(Message { inner })
}

// -------------------------------------------------------------------- config

/// Raft settings; every field is validated and an invalid one raises `ConfigError` naming it.
#[pyclass(name = "Config", module = "consensus.raft", from_py_object, frozen)]
#[derive(Clone)]
pub struct Config {
    pub inner: core::Config,
}

pymethods_with_getters!(
    Config,
    copy {
        election_tick: u64 = election_tick,
        heartbeat_tick: u64 = heartbeat_tick,
        pre_vote: bool = pre_vote,
        check_quorum: bool = check_quorum,
        max_size_per_msg: u64 = max_size_per_msg,
        max_inflight_msgs: usize = max_inflight_msgs,
        max_inflight_bytes: u64 = max_inflight_bytes,
        max_uncommitted_bytes: u64 = max_uncommitted_bytes,
        max_entry_bytes: u64 = max_entry_bytes,
        max_committed_bytes_per_ready: u64 = max_committed_bytes_per_ready,
        max_committed_entries_per_ready: usize = max_committed_entries_per_ready,
        max_pending_reads: usize = max_pending_reads,
        disable_proposal_forwarding: bool = disable_proposal_forwarding,
        seed: u64 = seed,
    },
    bytes {},
    {
        #[new]
        #[pyo3(signature = (*, election_tick = 10, heartbeat_tick = 1, pre_vote = true, check_quorum = true,
                        max_size_per_msg = 1 << 20, max_inflight_msgs = 256, max_inflight_bytes = 0,
                        max_uncommitted_bytes = 64 << 20, max_entry_bytes = 8 << 20,
                        max_committed_bytes_per_ready = 64 << 20, max_committed_entries_per_ready = 65536,
                        max_pending_reads = 4096, read_only_option = "safe", disable_proposal_forwarding = false,
                        seed = 0))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            election_tick: i64,
            heartbeat_tick: i64,
            pre_vote: bool,
            check_quorum: bool,
            max_size_per_msg: i64,
            max_inflight_msgs: i64,
            max_inflight_bytes: i64,
            max_uncommitted_bytes: i64,
            max_entry_bytes: i64,
            max_committed_bytes_per_ready: i64,
            max_committed_entries_per_ready: i64,
            max_pending_reads: i64,
            read_only_option: &str,
            disable_proposal_forwarding: bool,
            seed: i64,
        ) -> PyResult<Self> {
            let read_only_option = parse_read_only_option(read_only_option)?;
            let inner = core::Config {
                election_tick: unsigned_arg!(election_tick),
                heartbeat_tick: unsigned_arg!(heartbeat_tick),
                pre_vote,
                check_quorum,
                max_size_per_msg: unsigned_arg!(max_size_per_msg),
                max_inflight_msgs: unsigned_arg!(max_inflight_msgs) as usize,
                max_inflight_bytes: unsigned_arg!(max_inflight_bytes),
                max_uncommitted_bytes: unsigned_arg!(max_uncommitted_bytes),
                max_entry_bytes: unsigned_arg!(max_entry_bytes),
                max_committed_bytes_per_ready: unsigned_arg!(max_committed_bytes_per_ready),
                max_committed_entries_per_ready: unsigned_arg!(max_committed_entries_per_ready) as usize,
                max_pending_reads: unsigned_arg!(max_pending_reads) as usize,
                read_only_option,
                disable_proposal_forwarding,
                seed: seed as u64,
            };
            inner.validate().map_err(to_py)?;
            Ok(Config { inner })
        }
        #[getter]
        fn read_only_option(&self) -> &'static str {
            read_only_option_name(self.inner.read_only_option)
        }
        fn __repr__(&self) -> String {
            let c = &self.inner;
            format!(
                "Config(election_tick={}, heartbeat_tick={}, pre_vote={}, check_quorum={}, seed={})",
                c.election_tick,
                c.heartbeat_tick,
                if c.pre_vote { "True" } else { "False" },
                if c.check_quorum { "True" } else { "False" },
                c.seed
            )
        }
    }
);

// -------------------------------------------------------------------- ready

ready_class!(
    /// What the node needs done: persist `entries`/`hard_state`/`snapshot`, send `messages`, apply
    /// `committed_entries`, then `node.advance(rd)`.
    #[pyclass(name = "Ready", module = "consensus.raft", frozen)]
    Ready {
        core: core::Ready,
        mark: core::ReadyMark,
        persists: entries,
        entry: Entry,
        hard_state: HardState,
        snapshot: Snapshot,
    },
    {
        /// The entries to append to the log.
        #[getter]
        fn entries(&self) -> Vec<Entry> {
            self.inner.entries.iter().map(|e| Entry { inner: e.clone() }).collect()
        }
        /// The role when it changed since the previous Ready; `FOLLOWER` when it did not.
        #[getter]
        fn role(&self) -> Role {
            self.inner.role.map(Role::from).unwrap_or(Role::FOLLOWER)
        }
        #[getter]
        fn term(&self) -> u64 {
            self.inner.term
        }
    },
);

// -------------------------------------------------------------------- storage

/// Passes to `$mac` (after `$args`) the reads both Raft storages answer from their in-memory
/// part `mem`.
macro_rules! with_raft_storage_reads {
    ($mac:ident!($($args:tt)*)) => {
        $mac!($($args)* {
            fn hard_state(&self) -> HardState {
                HardState { inner: self.mem.rl().hard_state() }
            }
            fn conf_state(&self) -> ConfState {
                ConfState { inner: self.mem.rl().conf_state() }
            }
            /// Entries in `[lo, hi)`.
            #[pyo3(signature = (lo, hi, max_bytes = None))]
            fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> PyResult<Vec<Entry>> {
                let entries = self.mem.rl().entries(lo, hi, max_bytes.unwrap_or(u64::MAX)).map_err(storage_to_py)?;
                Ok(entries.into_iter().map(|inner| Entry { inner }).collect())
            }
            fn term(&self, index: u64) -> PyResult<u64> {
                self.mem.rl().term(index).map_err(storage_to_py)
            }
            fn first_index(&self) -> u64 {
                self.mem.rl().first_index()
            }
            fn last_index(&self) -> u64 {
                self.mem.rl().last_index()
            }
            fn snapshot(&self) -> Snapshot {
                Snapshot { inner: self.mem.rl().snapshot() }
            }
        });
    };
}

memory_storage_class!(
    /// In-memory storage: holds what was persisted. A node built on a non-empty storage restarts
    /// from it.
    #[pyclass(name = "MemoryStorage", module = "consensus.raft", from_py_object, frozen)]
    #[derive(Clone, Default)]
    MemoryStorage { mem: MemStorage, core_ready: core::Ready },
    store = |core, rd| core.append(&rd.entries).map_err(storage_to_py)?,
);

with_raft_storage_reads!(pymethods_of!(MemoryStorage, {
    #[new]
    fn new() -> Self {
        MemoryStorage::default()
    }
    /// Persists a Ready: snapshot, then entries, then hard state.
    fn persist(&self, py: Python<'_>, rd: &Ready) -> PyResult<()> {
        self.persist_ready(py, &rd.inner)
    }
    fn append(&self, entries: Vec<Entry>) -> PyResult<()> {
        let entries: Vec<CoreEntry> = entries.into_iter().map(|e| e.inner).collect();
        self.mem.wl().append(&entries).map_err(storage_to_py)
    }
    fn set_hard_state(&self, hs: &HardState) {
        self.mem.wl().set_hard_state(hs.inner);
    }
    /// Records a snapshot of the application's state at an applied `index` and drops the log up
    /// to it.
    #[pyo3(signature = (index, data = None))]
    fn compact(&self, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        self.mem.wl().compact(index, bytes_of(data.unwrap_or_default())).map_err(storage_to_py)
    }
    fn apply_snapshot(&self, snapshot: &Snapshot) -> PyResult<()> {
        self.mem.wl().apply_snapshot(snapshot.inner.clone()).map_err(storage_to_py)
    }
    fn __repr__(&self) -> String {
        let core = self.mem.rl();
        format!("MemoryStorage(first_index={}, last_index={})", core.first_index(), core.last_index())
    }
},));

with_raft_storage_reads!(file_storage_class!(
    /// Durable storage in a directory: a write-ahead log of CRC32C records plus snapshot files.
    /// Usable wherever `MemoryStorage` is; a node built on a reopened one restarts from disk.
    #[pyclass(name = "FileStorage", module = "consensus.raft", frozen)]
    FileStorage {
        durable: CoreFileStorage,
        mem: MemStorage,
        ready: Ready,
        core_ready: core::Ready,
        snapshot: Snapshot,
    },
    {
        fn append(&self, py: Python<'_>, entries: Vec<Entry>) -> PyResult<()> {
            let entries: Vec<CoreEntry> = entries.into_iter().map(|e| e.inner).collect();
            self.handle.with(py, |s| s.append(&entries))
        }
        fn set_hard_state(&self, py: Python<'_>, hs: &HardState) -> PyResult<()> {
            let hs = hs.inner;
            self.handle.with(py, move |s| s.set_hard_state(hs))
        }
    },
));

// -------------------------------------------------------------------- node

impl RaftNode {
    /// Records (durably, on a `FileStorage`) the configuration in force from `index`.
    fn record_conf_state(&self, py: Python<'_>, index: u64, conf_state: CoreConfState) -> PyResult<()> {
        match &self.storage {
            NodeStorage::Memory(memory) => {
                memory.mem.wl().set_conf_state(index, conf_state);
                Ok(())
            }
            NodeStorage::File(file) => file.get().handle.with(py, move |s| s.set_conf_state(index, conf_state)),
        }
    }
}

node_class!(
    /// A Raft node: a deterministic state machine driven by `tick`, `step` and `propose`, whose
    /// output is a `Ready` the caller persists, sends and applies before calling `advance`.
    #[pyclass(name = "RaftNode", module = "consensus.raft")]
    RaftNode {
        core: RawNode<MemStorage>,
        memory: MemoryStorage,
        file: FileStorage,
        ready: Ready,
        config: Config,
        exhausted: "the term reached TERM_MAX: no election is possible",
    },
    {
            #[new]
            #[pyo3(signature = (id, voters = Vec::new(), learners = Vec::new(), config = None, storage = None, applied = 0))]
            fn new(
                py: Python<'_>,
                id: i64,
                voters: Vec<i64>,
                learners: Vec<i64>,
                config: Option<Config>,
                storage: Option<&Bound<'_, PyAny>>,
                applied: u64,
            ) -> PyResult<Self> {
                let id = node_id(id)?;
                let voters = member_ids("voters", voters)?;
                let learners = member_ids("learners", learners)?;
                let config = config.unwrap_or_else(|| Config { inner: core::Config::default()
    },
);
            let storage = NodeStorage::from_py(
                storage,
                MemoryStorage::default,
                "storage must be a MemoryStorage or a FileStorage",
            )?;
            let mem = storage.mem();
            let fresh = mem.is_empty();
            let node = RawNode::new(id, config.inner.clone(), mem, &voters, &learners, applied).map_err(to_py)?;
            let raft = RaftNode { node, storage, config };
            if fresh {
                // Bootstrap: record the initial configuration so a restart from this storage finds it.
                raft.record_conf_state(py, 0, raft.node.conf_state())?;
            }
            Ok(raft)
        }

        #[getter]
        fn vote(&self) -> u64 {
            self.node.raft.vote
        }
        #[getter]
        fn first_index(&self) -> u64 {
            self.node.raft.log.first_index()
        }
        #[getter]
        fn conf_state(&self) -> ConfState {
            ConfState { inner: self.node.conf_state() }
        }

        fn propose_conf_change(&mut self, change: &ConfChange) -> PyResult<u64> {
            self.node.propose_conf_change(&change.inner).map_err(to_py)
        }
        /// Applies a committed `CONF_CHANGE` entry and returns the configuration now in force. A
        /// payload that does not decode, or a change that does not apply to the current
        /// configuration, raises `ConfigError` (field `conf_change`) and changes neither the
        /// configuration nor the storage: the caller may log the entry and go on applying.
        fn apply_conf_change(&mut self, py: Python<'_>, entry: &Entry) -> PyResult<ConfState> {
            let conf_state = self.node.apply_conf_change_entry(&entry.inner).map_err(to_py)?;
            self.record_conf_state(py, entry.inner.index, conf_state.clone())?;
            Ok(ConfState { inner: conf_state })
        }
        /// Forgets the current leader so that this follower grants votes at once (the way out of the
        /// PreVote + CheckQuorum partial-partition trap).
        fn forget_leader(&mut self) {
            self.node.forget_leader();
        }
        fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let s = self.node.status();
            let d = PyDict::new(py);
            d.set_item("id", s.id)?;
            d.set_item("role", s.role.as_str())?;
            d.set_item("term", s.term)?;
            d.set_item("vote", s.vote)?;
            d.set_item("leader", s.leader)?;
            d.set_item("commit", s.commit)?;
            d.set_item("applied", s.applied)?;
            d.set_item("first_index", s.first_index)?;
            d.set_item("last_index", s.last_index)?;
            d.set_item("voters", s.conf_state.voters.clone())?;
            d.set_item("learners", s.conf_state.learners.clone())?;
            d.set_item("voters_outgoing", s.conf_state.voters_outgoing.clone())?;
            d.set_item("lead_transferee", s.lead_transferee)?;
            d.set_item("uncommitted_bytes", s.uncommitted_bytes)?;
            let progress = PyDict::new(py);
            for p in &s.progress {
                let entry = PyDict::new(py);
                entry.set_item("match", p.matched)?;
                entry.set_item("next", p.next)?;
                entry.set_item("state", p.state)?;
                entry.set_item("is_learner", p.is_learner)?;
                entry.set_item("recent_active", p.recent_active)?;
                entry.set_item("inflight", p.inflight)?;
                progress.set_item(p.id, entry)?;
            }
            d.set_item("progress", progress)?;
            Ok(d)
        }
        /// Every entry still held in the log (storage and unstable tail), for tests and tools.
        fn log_entries(&self) -> Vec<Entry> {
            self.node.raft.log.all_entries().into_iter().map(|inner| Entry { inner }).collect()
        }
        fn __repr__(&self) -> String {
            let r = &self.node.raft;
            format!(
                "RaftNode(id={}, role={}, term={}, leader={}, commit={})",
                r.id,
                r.role.as_str(),
                r.term,
                r.leader,
                r.log.committed
            )
        }
    }
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RaftMessageType", py.get_type::<MessageType>())?;
    m.add("RaftEntry", py.get_type::<Entry>())?;
    m.add("RaftHardState", py.get_type::<HardState>())?;
    m.add("RaftConfState", py.get_type::<ConfState>())?;
    m.add("RaftConfChange", py.get_type::<ConfChange>())?;
    m.add("RaftSnapshot", py.get_type::<Snapshot>())?;
    m.add("RaftMessage", py.get_type::<Message>())?;
    m.add("RaftConfig", py.get_type::<Config>())?;
    m.add("RaftReady", py.get_type::<Ready>())?;
    m.add("RaftMemoryStorage", py.get_type::<MemoryStorage>())?;
    m.add("RaftFileStorage", py.get_type::<FileStorage>())?;
    m.add("RaftNode", py.get_type::<RaftNode>())?;
    m.add_function(wrap_pyfunction!(raft_decode, m)?)?;
    Ok(())
}
