//! Python classes of `consensus.raft`: the node, its configuration, the Ready batch, the data types
//! and in-memory storage. Each class wraps a core type; conversions happen only at the boundary.

use bytes::Bytes;
use consensus_core::raft::storage::MemStorage;
use consensus_core::raft::{
    self as core, wire, ConfChange as CoreConfChange, ConfState as CoreConfState, Entry as CoreEntry,
    EntryKind as CoreEntryKind, HardState as CoreHardState, Message as CoreMessage, MessageType as CoreMessageType,
    RawNode, ReadOnlyOption, Snapshot as CoreSnapshot,
};
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::errors::{config_error, storage_to_py, to_py};
use crate::role::Role;
use crate::storage::FileStorage;

// -------------------------------------------------------------------- enums

#[pyclass(name = "EntryKind", module = "consensus.raft", from_py_object, eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum EntryKind {
    NORMAL = 0,
    CONF_CHANGE = 1,
}

impl From<CoreEntryKind> for EntryKind {
    fn from(kind: CoreEntryKind) -> Self {
        match kind {
            CoreEntryKind::Normal => EntryKind::NORMAL,
            CoreEntryKind::ConfChange => EntryKind::CONF_CHANGE,
        }
    }
}

impl From<EntryKind> for CoreEntryKind {
    fn from(kind: EntryKind) -> Self {
        match kind {
            EntryKind::NORMAL => CoreEntryKind::Normal,
            EntryKind::CONF_CHANGE => CoreEntryKind::ConfChange,
        }
    }
}

#[pyclass(name = "MessageType", module = "consensus.raft", from_py_object, eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum MessageType {
    REQUEST_VOTE = 1,
    REQUEST_VOTE_RESPONSE = 2,
    REQUEST_PRE_VOTE = 3,
    REQUEST_PRE_VOTE_RESPONSE = 4,
    APPEND_ENTRIES = 5,
    APPEND_ENTRIES_RESPONSE = 6,
    HEARTBEAT = 7,
    HEARTBEAT_RESPONSE = 8,
    INSTALL_SNAPSHOT = 9,
    TIMEOUT_NOW = 10,
    READ_INDEX = 11,
    READ_INDEX_RESPONSE = 12,
    PROPOSE = 13,
    TRANSFER_LEADER = 14,
}

impl From<CoreMessageType> for MessageType {
    fn from(t: CoreMessageType) -> Self {
        use CoreMessageType as C;
        match t {
            C::RequestVote => MessageType::REQUEST_VOTE,
            C::RequestVoteResponse => MessageType::REQUEST_VOTE_RESPONSE,
            C::RequestPreVote => MessageType::REQUEST_PRE_VOTE,
            C::RequestPreVoteResponse => MessageType::REQUEST_PRE_VOTE_RESPONSE,
            C::AppendEntries => MessageType::APPEND_ENTRIES,
            C::AppendEntriesResponse => MessageType::APPEND_ENTRIES_RESPONSE,
            C::Heartbeat => MessageType::HEARTBEAT,
            C::HeartbeatResponse => MessageType::HEARTBEAT_RESPONSE,
            C::InstallSnapshot => MessageType::INSTALL_SNAPSHOT,
            C::TimeoutNow => MessageType::TIMEOUT_NOW,
            C::ReadIndex => MessageType::READ_INDEX,
            C::ReadIndexResponse => MessageType::READ_INDEX_RESPONSE,
            C::Propose => MessageType::PROPOSE,
            C::TransferLeader => MessageType::TRANSFER_LEADER,
        }
    }
}

impl From<MessageType> for CoreMessageType {
    fn from(t: MessageType) -> Self {
        // The discriminants are the wire values, shared by both enums.
        CoreMessageType::from_u8(t as u8).expect("every MessageType has a core counterpart")
    }
}

// -------------------------------------------------------------------- value types

pub(crate) fn bytes_of(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

/// One log entry.
#[pyclass(name = "Entry", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Entry {
    pub inner: CoreEntry,
}

#[pymethods]
impl Entry {
    #[new]
    #[pyo3(signature = (index, term, data = None, kind = EntryKind::NORMAL))]
    fn new(index: u64, term: u64, data: Option<&[u8]>, kind: EntryKind) -> Self {
        Entry { inner: CoreEntry::new(index, term, kind.into(), bytes_of(data.unwrap_or_default())) }
    }
    #[getter]
    fn index(&self) -> u64 {
        self.inner.index
    }
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.data)
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
}

/// Term, vote and commit index: what must be durable before dependent messages are sent.
#[pyclass(name = "HardState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct HardState {
    pub inner: CoreHardState,
}

#[pymethods]
impl HardState {
    #[new]
    #[pyo3(signature = (term = 0, vote = 0, commit = 0))]
    fn new(term: u64, vote: u64, commit: u64) -> Self {
        HardState { inner: CoreHardState { term, vote, commit } }
    }
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }
    #[getter]
    fn vote(&self) -> u64 {
        self.inner.vote
    }
    #[getter]
    fn commit(&self) -> u64 {
        self.inner.commit
    }
    fn __repr__(&self) -> String {
        format!("HardState(term={}, vote={}, commit={})", self.inner.term, self.inner.vote, self.inner.commit)
    }
}

/// A membership configuration; `voters_outgoing` is non-empty during a joint configuration.
#[pyclass(name = "ConfState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct ConfState {
    pub inner: CoreConfState,
}

#[pymethods]
impl ConfState {
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
    #[getter]
    fn auto_leave(&self) -> bool {
        self.inner.auto_leave
    }
    fn __repr__(&self) -> String {
        format!(
            "ConfState(voters={:?}, learners={:?}, voters_outgoing={:?})",
            self.inner.voters, self.inner.learners, self.inner.voters_outgoing
        )
    }
}

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

#[pymethods]
impl Snapshot {
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
    fn index(&self) -> u64 {
        self.inner.index
    }
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }
    #[getter]
    fn conf_state(&self) -> ConfState {
        ConfState { inner: self.inner.conf_state.clone() }
    }
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.data)
    }
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(index={}, term={}, data=<{} bytes>)",
            self.inner.index,
            self.inner.term,
            self.inner.data.len()
        )
    }
}

/// A linearizable read may be served once the application applied up to `index`.
#[pyclass(name = "ReadState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct ReadState {
    index: u64,
    context: Bytes,
}

impl ReadState {
    pub fn from_parts(index: u64, context: Bytes) -> Self {
        ReadState { index, context }
    }
}

#[pymethods]
impl ReadState {
    #[new]
    fn new(index: u64, context: &[u8]) -> Self {
        ReadState { index, context: bytes_of(context) }
    }
    #[getter]
    fn index(&self) -> u64 {
        self.index
    }
    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.context)
    }
    fn __repr__(&self) -> String {
        format!("ReadState(index={}, context={:?})", self.index, self.context)
    }
}

// -------------------------------------------------------------------- messages

/// A peer message; `encode()` gives the frame, `consensus.raft.decode(frame)` reads one.
#[pyclass(name = "Message", module = "consensus.raft", from_py_object, eq)]
#[derive(Clone, PartialEq)]
pub struct Message {
    pub inner: CoreMessage,
}

#[pymethods]
impl Message {
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
    fn r#type(&self) -> MessageType {
        self.inner.msg_type.into()
    }
    #[getter]
    fn from_(&self) -> u64 {
        self.inner.from
    }
    #[getter]
    fn to(&self) -> u64 {
        self.inner.to
    }
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }
    #[getter]
    fn log_term(&self) -> u64 {
        self.inner.log_term
    }
    #[getter]
    fn index(&self) -> u64 {
        self.inner.index
    }
    #[getter]
    fn commit(&self) -> u64 {
        self.inner.commit
    }
    #[getter]
    fn entries(&self) -> Vec<Entry> {
        self.inner.entries.iter().map(|e| Entry { inner: e.clone() }).collect()
    }
    #[getter]
    fn reject(&self) -> bool {
        self.inner.reject
    }
    #[getter]
    fn reject_hint(&self) -> u64 {
        self.inner.reject_hint
    }
    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.context)
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

/// Decodes one frame; malformed input raises `DecodeError`.
#[pyfunction]
pub fn raft_decode(frame: &[u8]) -> PyResult<Message> {
    let inner = wire::decode(&bytes_of(frame)).map_err(|e| to_py(e.into()))?;
    Ok(Message { inner })
}

// -------------------------------------------------------------------- config

fn unsigned(field: &'static str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| config_error(field, format!("must not be negative (got {value})")))
}

/// Raft settings; every field is validated and an invalid one raises `ConfigError` naming it.
#[pyclass(name = "Config", module = "consensus.raft", from_py_object, frozen)]
#[derive(Clone)]
pub struct Config {
    pub inner: core::Config,
}

#[pymethods]
impl Config {
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
        let read_only_option = match read_only_option {
            "safe" => ReadOnlyOption::Safe,
            "lease_based" => ReadOnlyOption::LeaseBased,
            other => {
                return Err(config_error(
                    "read_only_option",
                    format!("must be 'safe' or 'lease_based' (got {other:?})"),
                ))
            }
        };
        let inner = core::Config {
            election_tick: unsigned("election_tick", election_tick)?,
            heartbeat_tick: unsigned("heartbeat_tick", heartbeat_tick)?,
            pre_vote,
            check_quorum,
            max_size_per_msg: unsigned("max_size_per_msg", max_size_per_msg)?,
            max_inflight_msgs: unsigned("max_inflight_msgs", max_inflight_msgs)? as usize,
            max_inflight_bytes: unsigned("max_inflight_bytes", max_inflight_bytes)?,
            max_uncommitted_bytes: unsigned("max_uncommitted_bytes", max_uncommitted_bytes)?,
            max_entry_bytes: unsigned("max_entry_bytes", max_entry_bytes)?,
            max_committed_bytes_per_ready: unsigned("max_committed_bytes_per_ready", max_committed_bytes_per_ready)?,
            max_committed_entries_per_ready: unsigned(
                "max_committed_entries_per_ready",
                max_committed_entries_per_ready,
            )? as usize,
            max_pending_reads: unsigned("max_pending_reads", max_pending_reads)? as usize,
            read_only_option,
            disable_proposal_forwarding,
            seed: seed as u64,
        };
        inner.validate().map_err(to_py)?;
        Ok(Config { inner })
    }
    #[getter]
    fn election_tick(&self) -> u64 {
        self.inner.election_tick
    }
    #[getter]
    fn heartbeat_tick(&self) -> u64 {
        self.inner.heartbeat_tick
    }
    #[getter]
    fn pre_vote(&self) -> bool {
        self.inner.pre_vote
    }
    #[getter]
    fn check_quorum(&self) -> bool {
        self.inner.check_quorum
    }
    #[getter]
    fn max_size_per_msg(&self) -> u64 {
        self.inner.max_size_per_msg
    }
    #[getter]
    fn max_inflight_msgs(&self) -> usize {
        self.inner.max_inflight_msgs
    }
    #[getter]
    fn max_inflight_bytes(&self) -> u64 {
        self.inner.max_inflight_bytes
    }
    #[getter]
    fn max_uncommitted_bytes(&self) -> u64 {
        self.inner.max_uncommitted_bytes
    }
    #[getter]
    fn max_entry_bytes(&self) -> u64 {
        self.inner.max_entry_bytes
    }
    #[getter]
    fn max_committed_bytes_per_ready(&self) -> u64 {
        self.inner.max_committed_bytes_per_ready
    }
    #[getter]
    fn max_committed_entries_per_ready(&self) -> usize {
        self.inner.max_committed_entries_per_ready
    }
    #[getter]
    fn max_pending_reads(&self) -> usize {
        self.inner.max_pending_reads
    }
    #[getter]
    fn read_only_option(&self) -> &'static str {
        match self.inner.read_only_option {
            ReadOnlyOption::Safe => "safe",
            ReadOnlyOption::LeaseBased => "lease_based",
        }
    }
    #[getter]
    fn disable_proposal_forwarding(&self) -> bool {
        self.inner.disable_proposal_forwarding
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed
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

// -------------------------------------------------------------------- ready

/// What the node needs done: persist `entries`/`hard_state`/`snapshot`, send `messages`, apply
/// `committed_entries`, then `node.advance(rd)`.
#[pyclass(name = "Ready", module = "consensus.raft", frozen)]
pub struct Ready {
    pub inner: core::Ready,
    mark: core::ReadyMark,
}

fn entry_list<'py>(py: Python<'py>, entries: &[CoreEntry]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, entries.iter().map(|e| Entry { inner: e.clone() }))
}

#[pymethods]
impl Ready {
    /// `[(to, frame_bytes), ...]`, to send after persisting.
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .messages
            .iter()
            .map(|(to, frame)| PyTuple::new(py, [to.into_pyobject(py)?.into_any(), PyBytes::new(py, frame).into_any()]))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        entry_list(py, &self.inner.entries)
    }
    #[getter]
    fn committed_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        entry_list(py, &self.inner.committed_entries)
    }
    #[getter]
    fn hard_state(&self) -> Option<HardState> {
        self.inner.hard_state.map(|inner| HardState { inner })
    }
    #[getter]
    fn snapshot(&self) -> Option<Snapshot> {
        self.inner.snapshot.clone().map(|inner| Snapshot { inner })
    }
    #[getter]
    fn read_states(&self) -> Vec<ReadState> {
        self.inner.read_states.iter().map(|r| ReadState { index: r.index, context: r.context.clone() }).collect()
    }
    #[getter]
    fn must_sync(&self) -> bool {
        self.inner.must_sync
    }
    #[getter]
    fn role(&self) -> Role {
        self.inner.role.map(Role::from).unwrap_or(Role::FOLLOWER)
    }
    #[getter]
    fn leader(&self) -> u64 {
        self.inner.leader
    }
    #[getter]
    fn term(&self) -> u64 {
        self.inner.term
    }
    /// Number of committed entries (without building Entry objects).
    #[getter]
    fn committed_count(&self) -> usize {
        self.inner.committed_entries.len()
    }
    /// Number of messages (without building the list).
    #[getter]
    fn message_count(&self) -> usize {
        self.inner.messages.len()
    }
    fn __repr__(&self) -> String {
        format!(
            "Ready(entries={}, committed_entries={}, messages={}, hard_state={:?}, snapshot={}, must_sync={})",
            self.inner.entries.len(),
            self.inner.committed_entries.len(),
            self.inner.messages.len(),
            self.inner.hard_state,
            self.inner.snapshot.is_some(),
            self.inner.must_sync
        )
    }
}

// -------------------------------------------------------------------- storage

/// In-memory storage: holds what was persisted. A node built on a non-empty storage restarts
/// from it.
#[pyclass(name = "MemoryStorage", module = "consensus.raft", from_py_object, frozen)]
#[derive(Clone, Default)]
pub struct MemoryStorage {
    pub inner: MemStorage,
}

#[pymethods]
impl MemoryStorage {
    #[new]
    fn new() -> Self {
        MemoryStorage::default()
    }
    /// Persists a Ready: snapshot, then entries, then hard state.
    fn persist(&self, rd: &Ready) -> PyResult<()> {
        persist_ready(&self.inner, &rd.inner)
    }
    fn append(&self, entries: Vec<Entry>) -> PyResult<()> {
        let entries: Vec<CoreEntry> = entries.into_iter().map(|e| e.inner).collect();
        self.inner.wl().append(&entries).map_err(storage_to_py)
    }
    fn set_hard_state(&self, hs: &HardState) {
        self.inner.wl().set_hard_state(hs.inner);
    }
    fn hard_state(&self) -> HardState {
        HardState { inner: self.inner.rl().hard_state() }
    }
    fn conf_state(&self) -> ConfState {
        ConfState { inner: self.inner.rl().conf_state() }
    }
    /// Entries in `[lo, hi)`.
    #[pyo3(signature = (lo, hi, max_bytes = None))]
    fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> PyResult<Vec<Entry>> {
        let entries = self.inner.rl().entries(lo, hi, max_bytes.unwrap_or(u64::MAX)).map_err(storage_to_py)?;
        Ok(entries.into_iter().map(|inner| Entry { inner }).collect())
    }
    fn term(&self, index: u64) -> PyResult<u64> {
        self.inner.rl().term(index).map_err(storage_to_py)
    }
    fn first_index(&self) -> u64 {
        self.inner.rl().first_index()
    }
    fn last_index(&self) -> u64 {
        self.inner.rl().last_index()
    }
    /// Records a snapshot of the application's state at an applied `index` and drops the log up
    /// to it.
    #[pyo3(signature = (index, data = None))]
    fn compact(&self, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        self.inner.wl().compact(index, bytes_of(data.unwrap_or_default())).map_err(storage_to_py)
    }
    fn apply_snapshot(&self, snapshot: &Snapshot) -> PyResult<()> {
        self.inner.wl().apply_snapshot(snapshot.inner.clone()).map_err(storage_to_py)
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot { inner: self.inner.rl().snapshot() }
    }
    fn __repr__(&self) -> String {
        let core = self.inner.rl();
        format!("MemoryStorage(first_index={}, last_index={})", core.first_index(), core.last_index())
    }
}

pub fn persist_ready(storage: &MemStorage, rd: &core::Ready) -> PyResult<()> {
    let mut core = storage.wl();
    if let Some(snapshot) = &rd.snapshot {
        core.apply_snapshot(snapshot.clone()).map_err(storage_to_py)?;
    }
    core.append(&rd.entries).map_err(storage_to_py)?;
    if let Some(hs) = rd.hard_state {
        core.set_hard_state(hs);
    }
    Ok(())
}

// -------------------------------------------------------------------- node

/// Extracts a proposal batch: a list (or any sequence) of bytes-like objects, or a 2-D `uint8`
/// NumPy array with one entry per row (copied in one piece, no Python object per row). A list is
/// checked first, so the common case never imports NumPy.
pub(crate) fn batch_from(batch: &Bound<'_, PyAny>) -> PyResult<Vec<Bytes>> {
    if let Ok(list) = batch.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            match item.cast::<PyBytes>() {
                Ok(b) => out.push(bytes_of(b.as_bytes())),
                Err(_) => {
                    out.push(bytes_of(&item.extract::<Vec<u8>>().map_err(|_| {
                        PyTypeError::new_err("propose_many takes a list of bytes or a 2-D uint8 array")
                    })?))
                }
            }
        }
        return Ok(out);
    }
    if let Ok(array) = batch.extract::<PyReadonlyArray2<u8>>() {
        let shape = array.shape();
        let (rows, width) = (shape[0], shape[1]);
        let whole = match array.as_slice() {
            Ok(slice) => Bytes::copy_from_slice(slice),
            Err(_) => Bytes::from(array.as_array().iter().copied().collect::<Vec<u8>>()),
        };
        return Ok((0..rows).map(|r| whole.slice(r * width..(r + 1) * width)).collect());
    }
    let mut out = Vec::new();
    for item in batch.try_iter()? {
        let item = item?;
        let data: Vec<u8> = item
            .extract()
            .map_err(|_| PyTypeError::new_err("propose_many takes a list of bytes or a 2-D uint8 array"))?;
        out.push(Bytes::from(data));
    }
    Ok(out)
}

/// The Python storage a node was built on. The node reads the in-memory part of either; writes
/// it makes itself (the bootstrap configuration, applied conf changes, `persist_and_advance`) go
/// through this so a `FileStorage` makes them durable.
enum NodeStorage {
    Memory(MemoryStorage),
    File(Py<FileStorage>),
}

impl NodeStorage {
    fn from_py(storage: Option<&Bound<'_, PyAny>>) -> PyResult<NodeStorage> {
        let Some(storage) = storage else { return Ok(NodeStorage::Memory(MemoryStorage::default())) };
        if let Ok(memory) = storage.cast::<MemoryStorage>() {
            return Ok(NodeStorage::Memory(memory.get().clone()));
        }
        if let Ok(file) = storage.cast::<FileStorage>() {
            return Ok(NodeStorage::File(file.clone().unbind()));
        }
        Err(PyTypeError::new_err("storage must be a MemoryStorage or a FileStorage"))
    }

    fn mem(&self) -> MemStorage {
        match self {
            NodeStorage::Memory(memory) => memory.inner.clone(),
            NodeStorage::File(file) => file.get().mem.clone(),
        }
    }

    fn set_conf_state(&self, py: Python<'_>, index: u64, conf_state: CoreConfState) -> PyResult<()> {
        match self {
            NodeStorage::Memory(memory) => {
                memory.inner.wl().set_conf_state(index, conf_state);
                Ok(())
            }
            NodeStorage::File(file) => file.get().record_conf_state(py, index, conf_state),
        }
    }

    fn persist(&self, py: Python<'_>, rd: &core::Ready) -> PyResult<()> {
        match self {
            NodeStorage::Memory(memory) => persist_ready(&memory.inner, rd),
            NodeStorage::File(file) => file.get().persist_ready(py, rd),
        }
    }
}

/// A Raft node: a deterministic state machine driven by `tick`, `step` and `propose`, whose
/// output is a `Ready` the caller persists, sends and applies before calling `advance`.
#[pyclass(name = "RaftNode", module = "consensus.raft")]
pub struct RaftNode {
    node: RawNode<MemStorage>,
    storage: NodeStorage,
    config: Config,
}

#[pymethods]
impl RaftNode {
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
        let id = u64::try_from(id)
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| config_error("id", "must be a positive integer"))?;
        let to_ids = |field: &'static str, ids: Vec<i64>| -> PyResult<Vec<u64>> {
            ids.into_iter()
                .map(|v| {
                    u64::try_from(v)
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| config_error(field, "ids must be positive integers"))
                })
                .collect()
        };
        let voters = to_ids("voters", voters)?;
        let learners = to_ids("learners", learners)?;
        let config = config.unwrap_or_else(|| Config { inner: core::Config::default() });
        let storage = NodeStorage::from_py(storage)?;
        let mem = storage.mem();
        let fresh = mem.is_empty();
        let node = RawNode::new(id, config.inner.clone(), mem, &voters, &learners, applied).map_err(to_py)?;
        if fresh {
            // Bootstrap: record the initial configuration so a restart from this storage finds it.
            storage.set_conf_state(py, 0, node.raft.conf_state())?;
        }
        Ok(RaftNode { node, storage, config })
    }

    #[getter]
    fn id(&self) -> u64 {
        self.node.raft.id
    }
    #[getter]
    fn role(&self) -> Role {
        self.node.raft.role.into()
    }
    #[getter]
    fn term(&self) -> u64 {
        self.node.raft.term
    }
    #[getter]
    fn vote(&self) -> u64 {
        self.node.raft.vote
    }
    #[getter]
    fn leader(&self) -> u64 {
        self.node.raft.leader
    }
    #[getter]
    fn commit_index(&self) -> u64 {
        self.node.raft.log.committed
    }
    #[getter]
    fn applied_index(&self) -> u64 {
        self.node.raft.log.applied
    }
    #[getter]
    fn last_index(&self) -> u64 {
        self.node.raft.log.last_index()
    }
    #[getter]
    fn first_index(&self) -> u64 {
        self.node.raft.log.first_index()
    }
    /// The storage given to the constructor (a `MemoryStorage` or a `FileStorage`).
    #[getter]
    fn storage(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.storage {
            NodeStorage::Memory(memory) => Ok(Py::new(py, memory.clone())?.into_any()),
            NodeStorage::File(file) => Ok(file.clone_ref(py).into_any()),
        }
    }
    #[getter]
    fn config(&self) -> Config {
        self.config.clone()
    }
    #[getter]
    fn conf_state(&self) -> ConfState {
        ConfState { inner: self.node.raft.conf_state() }
    }

    /// One logical tick.
    fn tick(&mut self) {
        self.node.tick();
    }
    /// `n` ticks in one call.
    fn tick_many(&mut self, n: u64) {
        for _ in 0..n {
            self.node.tick();
        }
    }
    /// Starts an election now (PreVote first when it is on). `ProtocolError` when the term
    /// reached its limit (`TERM_MAX`): the node can no longer campaign.
    fn campaign(&mut self) -> PyResult<()> {
        if self.node.term_exhausted() {
            return Err(to_py(consensus_core::Error::Protocol(
                "the term reached TERM_MAX: no election is possible".into(),
            )));
        }
        self.node.campaign();
        Ok(())
    }
    /// Proposes one entry. Returns its index on the leader, 0 when forwarded by a follower.
    fn propose(&mut self, data: &[u8]) -> PyResult<u64> {
        self.node.propose(bytes_of(data)).map_err(to_py)
    }
    /// Proposes a batch in one call: a list of bytes or a 2-D `uint8` NumPy array (one entry per row).
    fn propose_many(&mut self, batch: &Bound<'_, PyAny>) -> PyResult<u64> {
        let batch = batch_from(batch)?;
        self.node.propose_many(batch).map_err(to_py)
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
        self.storage.set_conf_state(py, entry.inner.index, conf_state.clone())?;
        Ok(ConfState { inner: conf_state })
    }
    /// A linearizable read barrier, answered in `Ready.read_states`.
    fn read_index(&mut self, ctx: &[u8]) -> PyResult<()> {
        self.node.read_index(bytes_of(ctx)).map_err(to_py)
    }
    fn transfer_leader(&mut self, to: u64) -> PyResult<()> {
        self.node.transfer_leader(to).map_err(to_py)
    }
    /// Steps one frame from a peer. Malformed bytes raise `DecodeError`; a well-formed message
    /// that fails validation (docs/wire-format.md, "Validation at the door") raises
    /// `ProtocolError` and changes nothing. With `sender` (the id the connection authenticated
    /// as), a frame whose `from` differs raises `ProtocolError`.
    #[pyo3(signature = (frame, *, sender = None))]
    fn step(&mut self, frame: &[u8], sender: Option<u64>) -> PyResult<()> {
        self.node.step_from(&bytes_of(frame), sender).map_err(to_py)
    }
    /// Steps frames in order (all from `sender` when given); stops at (and raises) the first bad one.
    #[pyo3(signature = (frames, *, sender = None))]
    fn step_many(&mut self, frames: &Bound<'_, PyAny>, sender: Option<u64>) -> PyResult<()> {
        for frame in frames.try_iter()? {
            let frame = frame?;
            let frame = frame.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("step_many takes bytes frames"))?;
            self.node.step_from(&bytes_of(frame.as_bytes()), sender).map_err(to_py)?;
        }
        Ok(())
    }
    fn has_ready(&self) -> bool {
        self.node.has_ready()
    }
    fn ready(&mut self) -> PyResult<Ready> {
        let inner = self.node.ready().map_err(to_py)?;
        let mark = inner.mark();
        Ok(Ready { inner, mark })
    }
    fn advance(&mut self, rd: &Ready) -> PyResult<()> {
        self.node.advance(rd.mark).map_err(to_py)
    }
    /// Persists `rd` into this node's storage, then advances: for callers that send and apply
    /// themselves between `ready()` and this call.
    fn persist_and_advance(&mut self, py: Python<'_>, rd: &Ready) -> PyResult<()> {
        self.storage.persist(py, &rd.inner)?;
        self.node.advance(rd.mark).map_err(to_py)
    }
    fn report_snapshot(&mut self, to: u64, ok: bool) {
        self.node.report_snapshot(to, ok);
    }
    fn report_unreachable(&mut self, to: u64) {
        self.node.report_unreachable(to);
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RaftEntryKind", py.get_type::<EntryKind>())?;
    m.add("RaftMessageType", py.get_type::<MessageType>())?;
    m.add("RaftEntry", py.get_type::<Entry>())?;
    m.add("RaftHardState", py.get_type::<HardState>())?;
    m.add("RaftConfState", py.get_type::<ConfState>())?;
    m.add("RaftConfChange", py.get_type::<ConfChange>())?;
    m.add("RaftSnapshot", py.get_type::<Snapshot>())?;
    m.add("RaftReadState", py.get_type::<ReadState>())?;
    m.add("RaftMessage", py.get_type::<Message>())?;
    m.add("RaftConfig", py.get_type::<Config>())?;
    m.add("RaftReady", py.get_type::<Ready>())?;
    m.add("RaftMemoryStorage", py.get_type::<MemoryStorage>())?;
    m.add("RaftNode", py.get_type::<RaftNode>())?;
    m.add_function(wrap_pyfunction!(raft_decode, m)?)?;
    Ok(())
}
