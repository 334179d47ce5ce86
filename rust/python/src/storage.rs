//! The durable storages of `consensus-storage` as Python classes: `consensus.raft.FileStorage`
//! and `consensus.paxos.FileStorage` (WAL + snapshots). Both share [`Handle`]: every file write
//! and fsync runs with the GIL released; reads answer from memory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use consensus_core::raft::storage::MemStorage;
use consensus_core::raft::{self as core, ConfState as CoreConfState, Entry as CoreEntry};
use consensus_core::{paxos, StorageError as CoreStorageError};
use consensus_storage::{
    DurableStorage, FileStorage as CoreFileStorage, FsyncPolicy, Options, PaxosFileStorage as CorePaxosFileStorage,
    SEGMENT_BYTES_MIN,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{config_error, storage_to_py};
use crate::raft::{bytes_of, ConfState, Entry, HardState, Ready, Snapshot};

/// An open file storage shared between its Python object and the node built on it.
pub struct Handle<S: DurableStorage> {
    inner: Arc<Mutex<S>>,
    path: PathBuf,
    options: Options,
}

impl<S: DurableStorage + Send + 'static> Handle<S> {
    fn parse_options(fsync: &str, segment_bytes: i64, batch_interval_ms: i64) -> PyResult<Options> {
        let fsync = FsyncPolicy::parse(fsync)
            .ok_or_else(|| config_error("fsync", format!("must be 'always', 'batch' or 'never' (got {fsync:?})")))?;
        let segment_bytes = u64::try_from(segment_bytes)
            .ok()
            .filter(|b| *b >= SEGMENT_BYTES_MIN)
            .ok_or_else(|| config_error("segment_bytes", format!("must be at least {SEGMENT_BYTES_MIN}")))?;
        let batch_interval_ms =
            u64::try_from(batch_interval_ms).map_err(|_| config_error("batch_interval_ms", "must not be negative"))?;
        Ok(Options { fsync, segment_bytes, batch_interval: Duration::from_millis(batch_interval_ms) })
    }

    fn open(py: Python<'_>, path: PathBuf, fsync: &str, segment_bytes: i64, batch_interval_ms: i64) -> PyResult<Self> {
        let options = Self::parse_options(fsync, segment_bytes, batch_interval_ms)?;
        Self::open_with(py, path, options)
    }

    fn open_with(py: Python<'_>, path: PathBuf, options: Options) -> PyResult<Self> {
        let storage = py.detach(|| S::open(&path, options)).map_err(storage_to_py)?;
        Ok(Handle { inner: Arc::new(Mutex::new(storage)), path, options })
    }

    /// The storage, locked. A panic while holding the lock is a bug; the storage refuses writes
    /// after one only if it poisoned itself, so keep the data reachable.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the storage with the GIL released.
    pub fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut S) -> Result<T, CoreStorageError> + Send,
    ) -> PyResult<T> {
        py.detach(|| f(&mut self.lock())).map_err(storage_to_py)
    }

    /// A compaction whose snapshot file is written without the lock, so Readies keep being
    /// persisted while a large snapshot goes to disk.
    fn compact(&self, py: Python<'_>, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        let data = bytes_of(data.unwrap_or_default());
        let (snapshot, writer) =
            self.with(py, move |s| Ok((s.prepare_compaction(index, data)?, s.snapshot_writer())))?;
        let written = py.detach(|| writer.write(&snapshot));
        self.with(py, move |s| s.finish_compaction(snapshot, written))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.close())
    }

    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.sync())
    }

    fn closed(&self) -> bool {
        self.lock().is_closed()
    }

    fn inject_sync_failure(&self) {
        self.lock().inject_sync_failure();
    }

    fn reopen(&self, py: Python<'_>) -> PyResult<Self> {
        self.close(py)?;
        Self::open_with(py, self.path.clone(), self.options)
    }

    fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.lock().stats();
        let d = PyDict::new(py);
        d.set_item("fsyncs", stats.fsyncs)?;
        d.set_item("fsync_seconds_total", stats.fsync_seconds_total)?;
        d.set_item("bytes_written", stats.bytes_written)?;
        d.set_item("segments", stats.segments)?;
        d.set_item("torn_bytes_truncated", stats.torn_bytes_truncated)?;
        d.set_item("last_sync_seconds", stats.last_sync_seconds)?;
        Ok(d)
    }
}

// ------------------------------------------------------------------------------------ Raft

/// Durable storage in a directory: a write-ahead log of CRC32C records plus snapshot files.
/// Usable wherever `MemoryStorage` is; a node built on a reopened one restarts from disk.
#[pyclass(name = "FileStorage", module = "consensus.raft", frozen)]
pub struct FileStorage {
    handle: Handle<CoreFileStorage>,
    /// The in-memory part the node reads (shared with the storage).
    pub mem: MemStorage,
}

impl FileStorage {
    fn from_handle(handle: Handle<CoreFileStorage>) -> Self {
        let mem = handle.lock().mem().clone();
        FileStorage { handle, mem }
    }

    pub fn persist_ready(&self, py: Python<'_>, rd: &core::Ready) -> PyResult<()> {
        self.handle.with(py, |s| s.persist(rd))
    }

    /// Records (durably) the configuration in force from `index`.
    pub fn record_conf_state(&self, py: Python<'_>, index: u64, conf_state: CoreConfState) -> PyResult<()> {
        self.handle.with(py, move |s| s.set_conf_state(index, conf_state))
    }
}

#[pymethods]
impl FileStorage {
    #[new]
    #[pyo3(signature = (path, *, fsync = "always", segment_bytes = 67_108_864, batch_interval_ms = 10))]
    fn new(py: Python<'_>, path: PathBuf, fsync: &str, segment_bytes: i64, batch_interval_ms: i64) -> PyResult<Self> {
        Ok(FileStorage::from_handle(Handle::open(py, path, fsync, segment_bytes, batch_interval_ms)?))
    }

    /// The data directory.
    #[getter]
    fn path(&self) -> String {
        self.handle.path_str()
    }
    #[getter]
    fn fsync(&self) -> &'static str {
        self.handle.options.fsync.as_str()
    }
    #[getter]
    fn closed(&self) -> bool {
        self.handle.closed()
    }

    /// Persists a Ready: snapshot, then entries, then hard state; fsyncs per the policy.
    fn persist(&self, py: Python<'_>, rd: &Ready) -> PyResult<()> {
        self.persist_ready(py, &rd.inner)
    }
    fn append(&self, py: Python<'_>, entries: Vec<Entry>) -> PyResult<()> {
        let entries: Vec<CoreEntry> = entries.into_iter().map(|e| e.inner).collect();
        self.handle.with(py, |s| s.append(&entries))
    }
    fn set_hard_state(&self, py: Python<'_>, hs: &HardState) -> PyResult<()> {
        let hs = hs.inner;
        self.handle.with(py, move |s| s.set_hard_state(hs))
    }
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
    /// Records a snapshot of the application's state at an applied `index`, drops the log up to
    /// it and deletes the WAL segments it covers.
    #[pyo3(signature = (index, data = None))]
    fn compact(&self, py: Python<'_>, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        self.handle.compact(py, index, data)
    }
    fn apply_snapshot(&self, py: Python<'_>, snapshot: &Snapshot) -> PyResult<()> {
        let snapshot = snapshot.inner.clone();
        self.handle.with(py, move |s| s.apply_snapshot(snapshot))
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot { inner: self.mem.rl().snapshot() }
    }
    /// Fsyncs pending writes: under "batch" once the batch interval has passed (call it on each
    /// tick), under "always" at once, under "never" not at all.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.sync(py)
    }
    /// Syncs what is pending, closes the files and releases the directory lock. Reads keep
    /// working; writes raise `StorageError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.close(py)
    }
    /// Closes this storage and opens its directory again with the same options (a restart).
    fn reopen(&self, py: Python<'_>) -> PyResult<FileStorage> {
        Ok(FileStorage::from_handle(self.handle.reopen(py)?))
    }
    /// Counters since open: fsyncs, fsync_seconds_total, bytes_written, segments,
    /// torn_bytes_truncated (at open), last_sync_seconds.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.handle.stats(py)
    }
    /// Test hook: the next fsync fails with an I/O error (and poisons the storage).
    fn _inject_sync_failure(&self) {
        self.handle.inject_sync_failure();
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    #[pyo3(signature = (exc_type, exc_value, traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        exc_value: &Bound<'_, PyAny>,
        traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.close(py)?;
        Ok(false)
    }
    fn __repr__(&self) -> String {
        let core = self.mem.rl();
        format!(
            "FileStorage(path={:?}, fsync={:?}, first_index={}, last_index={})",
            self.handle.path_str(),
            self.handle.options.fsync.as_str(),
            core.first_index(),
            core.last_index()
        )
    }
}

// ------------------------------------------------------------------------------ Multi-Paxos

/// Durable Multi-Paxos storage in a directory: the promise, the accepted slots and the commit
/// slot in a write-ahead log of CRC32C records, plus snapshot files. Usable wherever
/// `paxos.MemoryStorage` is; a node built on a reopened one restarts from disk.
#[pyclass(name = "FileStorage", module = "consensus.paxos", frozen)]
pub struct PaxosFileStorage {
    handle: Handle<CorePaxosFileStorage>,
    /// The in-memory part the node reads (shared with the storage).
    pub mem: paxos::MemStorage,
}

impl PaxosFileStorage {
    fn from_handle(handle: Handle<CorePaxosFileStorage>) -> Self {
        let mem = handle.lock().mem().clone();
        PaxosFileStorage { handle, mem }
    }

    pub fn persist_ready(&self, py: Python<'_>, rd: &paxos::Ready) -> PyResult<()> {
        self.handle.with(py, |s| s.persist(rd))
    }

    /// Records (durably) the members of a new cluster.
    pub fn record_initial_members(&self, py: Python<'_>, members: &[u64]) -> PyResult<()> {
        self.handle.with(py, |s| s.set_initial_members(members))
    }
}

#[pymethods]
impl PaxosFileStorage {
    #[new]
    #[pyo3(signature = (path, *, fsync = "always", segment_bytes = 67_108_864, batch_interval_ms = 10))]
    fn new(py: Python<'_>, path: PathBuf, fsync: &str, segment_bytes: i64, batch_interval_ms: i64) -> PyResult<Self> {
        Ok(PaxosFileStorage::from_handle(Handle::open(py, path, fsync, segment_bytes, batch_interval_ms)?))
    }

    /// The data directory.
    #[getter]
    fn path(&self) -> String {
        self.handle.path_str()
    }
    #[getter]
    fn fsync(&self) -> &'static str {
        self.handle.options.fsync.as_str()
    }
    #[getter]
    fn closed(&self) -> bool {
        self.handle.closed()
    }

    /// Persists a Ready: snapshot, then accepted slots, then promise and commit; fsyncs per the
    /// policy.
    fn persist(&self, py: Python<'_>, rd: &crate::paxos::Ready) -> PyResult<()> {
        self.persist_ready(py, &rd.inner)
    }
    fn hard_state(&self) -> crate::paxos::HardState {
        crate::paxos::HardState { inner: self.mem.rl().hard_state() }
    }
    fn snapshot(&self) -> crate::paxos::Snapshot {
        crate::paxos::Snapshot { inner: self.mem.rl().snapshot().clone() }
    }
    fn first_index(&self) -> u64 {
        self.mem.rl().snapshot().index + 1
    }
    /// The highest accepted slot held (the snapshot index when none).
    fn last_index(&self) -> u64 {
        crate::paxos::last_slot(&self.mem)
    }
    /// The ballot this storage accepted `slot` at, if it holds one.
    fn accepted_ballot(&self, slot: u64) -> Option<crate::paxos::Ballot> {
        crate::paxos::accepted_ballot(&self.mem, slot)
    }
    /// Records a snapshot of the application at an applied `index`, drops the slots up to it and
    /// deletes the WAL segments it covers.
    #[pyo3(signature = (index, data = None))]
    fn compact(&self, py: Python<'_>, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        self.handle.compact(py, index, data)
    }
    fn apply_snapshot(&self, py: Python<'_>, snapshot: &crate::paxos::Snapshot) -> PyResult<()> {
        let snapshot = snapshot.inner.clone();
        self.handle.with(py, move |s| s.apply_snapshot(snapshot))
    }
    /// Fsyncs pending writes per the policy (as `raft.FileStorage.sync`).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.sync(py)
    }
    /// Syncs what is pending, closes the files and releases the directory lock.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.close(py)
    }
    /// Closes this storage and opens its directory again with the same options (a restart).
    fn reopen(&self, py: Python<'_>) -> PyResult<PaxosFileStorage> {
        Ok(PaxosFileStorage::from_handle(self.handle.reopen(py)?))
    }
    /// Counters since open (the same keys as `raft.FileStorage.stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.handle.stats(py)
    }
    /// Test hook: the next fsync fails with an I/O error (and poisons the storage).
    fn _inject_sync_failure(&self) {
        self.handle.inject_sync_failure();
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    #[pyo3(signature = (exc_type, exc_value, traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        exc_value: &Bound<'_, PyAny>,
        traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.close(py)?;
        Ok(false)
    }
    fn __repr__(&self) -> String {
        // One read guard: a second `rl()` while this one is alive deadlocks once a writer queues.
        let snapshot_index = self.mem.rl().snapshot().index;
        let last = crate::paxos::last_slot(&self.mem);
        format!(
            "FileStorage(path={:?}, fsync={:?}, snapshot_index={}, last_index={})",
            self.handle.path_str(),
            self.handle.options.fsync.as_str(),
            snapshot_index,
            last
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RaftFileStorage", m.py().get_type::<FileStorage>())?;
    m.add("PaxosFileStorage", m.py().get_type::<PaxosFileStorage>())
}
