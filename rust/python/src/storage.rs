//! What every protocol's storage classes share: [`Handle`], an open file storage of
//! `consensus-storage` (WAL + snapshots) whose every file write and fsync runs with the GIL
//! released; [`file_storage_class!`], the Python methods both `FileStorage` classes have; and
//! [`NodeStorage`], the storage a node was built on. Reads answer from memory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use consensus_core::StorageError as CoreStorageError;
use consensus_storage::{DurableStorage, FsyncPolicy, Options, SEGMENT_BYTES_MIN};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyDict;
use pyo3::{PyClass, PyClassInitializer};

use crate::convert::bytes_of;
use crate::errors::{config_error, storage_to_py};

/// An open file storage shared between its Python object and the node built on it.
pub struct Handle<S: DurableStorage> {
    inner: Arc<Mutex<S>>,
    path: PathBuf,
    pub options: Options,
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

    pub fn open(
        py: Python<'_>,
        path: PathBuf,
        fsync: &str,
        segment_bytes: i64,
        batch_interval_ms: i64,
    ) -> PyResult<Self> {
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
    pub fn compact(&self, py: Python<'_>, index: u64, data: Option<&[u8]>) -> PyResult<()> {
        let data = bytes_of(data.unwrap_or_default());
        let (snapshot, writer) =
            self.with(py, move |s| Ok((s.prepare_compaction(index, data)?, s.snapshot_writer())))?;
        let written = py.detach(|| writer.write(&snapshot));
        self.with(py, move |s| s.finish_compaction(snapshot, written))
    }

    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.close())
    }

    pub fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.sync())
    }

    pub fn closed(&self) -> bool {
        self.lock().is_closed()
    }

    pub fn inject_sync_failure(&self) {
        self.lock().inject_sync_failure();
    }

    pub fn reopen(&self, py: Python<'_>) -> PyResult<Self> {
        self.close(py)?;
        Self::open_with(py, self.path.clone(), self.options)
    }

    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    pub fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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

/// A protocol's storage class (in memory or on file) as a node built on it uses it.
pub trait StorageClass: PyClass<Frozen = True> + Sync {
    /// The core's in-memory storage the node reads, shared with this object.
    type Mem;
    type Ready;
    fn mem(&self) -> Self::Mem;
    /// Persists a Ready (a file storage fsyncs per its policy, with the GIL released).
    fn persist_ready(&self, py: Python<'_>, rd: &Self::Ready) -> PyResult<()>;
}

/// The Python storage a node was built on: the protocol's `MemoryStorage` `M` or `FileStorage`
/// `F`. The node reads the in-memory part of either; writes it makes itself (the bootstrap
/// configuration, `persist_and_advance`) go through this so a `FileStorage` makes them durable.
pub enum NodeStorage<M, F> {
    Memory(M),
    File(Py<F>),
}

impl<M, F> NodeStorage<M, F>
where
    M: StorageClass + Clone + Into<PyClassInitializer<M>>,
    F: StorageClass<Mem = M::Mem, Ready = M::Ready>,
{
    /// The storage given to a node's constructor; `fresh()` when none. `expected` is the
    /// `TypeError` message for anything else.
    pub fn from_py(storage: Option<&Bound<'_, PyAny>>, fresh: impl FnOnce() -> M, expected: &str) -> PyResult<Self> {
        let Some(storage) = storage else { return Ok(NodeStorage::Memory(fresh())) };
        if let Ok(memory) = storage.cast::<M>() {
            return Ok(NodeStorage::Memory(memory.get().clone()));
        }
        if let Ok(file) = storage.cast::<F>() {
            return Ok(NodeStorage::File(file.clone().unbind()));
        }
        Err(PyTypeError::new_err(expected.to_owned()))
    }

    pub fn mem(&self) -> M::Mem {
        match self {
            NodeStorage::Memory(memory) => memory.mem(),
            NodeStorage::File(file) => file.get().mem(),
        }
    }

    pub fn persist(&self, py: Python<'_>, rd: &M::Ready) -> PyResult<()> {
        match self {
            NodeStorage::Memory(memory) => memory.persist_ready(py, rd),
            NodeStorage::File(file) => file.get().persist_ready(py, rd),
        }
    }

    /// The Python object (what `node.storage` returns).
    pub fn to_object(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            NodeStorage::Memory(memory) => Ok(Py::new(py, memory.clone())?.into_any()),
            NodeStorage::File(file) => Ok(file.clone_ref(py).into_any()),
        }
    }
}

/// `impl StorageClass for $class`: the node reads the class's field `$field`, and `persist`
/// runs `$body` with `$this` the storage object.
macro_rules! storage_class {
    (
        $class:ident,
        $field:ident: $mem:ty,
        ready = $ready:ty,
        persist = |$this:ident, $py:pat_param, $rd:ident| $body:block
    ) => {
        impl $crate::storage::StorageClass for $class {
            type Mem = $mem;
            type Ready = $ready;
            fn mem(&self) -> $mem {
                self.$field.clone()
            }
            fn persist_ready(&self, $py: ::pyo3::Python<'_>, $rd: &$ready) -> ::pyo3::PyResult<()> {
                let $this = self;
                $body
            }
        }
    };
}
pub(crate) use storage_class;

/// A protocol's `MemoryStorage` class (attributes `$meta`, the `#[pyclass]` among them) over the
/// core's in-memory storage `$mem`. Its `persist` installs the Ready's snapshot, then runs
/// `$store` (with `$core` the locked storage: the entries or slots the Ready carries), then
/// records the hard state.
macro_rules! memory_storage_class {
    (
        $(#[$meta:meta])*
        $class:ident { mem: $mem:ty, core_ready: $core_ready:ty },
        store = |$core:ident, $rd:ident| $store:expr $(,)?
    ) => {
        $(#[$meta])*
        pub struct $class {
            mem: $mem,
        }

        $crate::storage::storage_class!($class, mem: $mem, ready = $core_ready, persist = |this, _py, rd| {
            let mut guard = this.mem.wl();
            if let Some(snapshot) = &rd.snapshot {
                guard.apply_snapshot(snapshot.clone()).map_err($crate::errors::storage_to_py)?;
            }
            {
                let ($core, $rd) = (&mut *guard, rd);
                $store;
            }
            if let Some(hard_state) = rd.hard_state {
                guard.set_hard_state(hard_state);
            }
            Ok(())
        });
    };
}
pub(crate) use memory_storage_class;

/// Joins method lists into one `#[pymethods]` block (a protocol passes the reads its memory and
/// file storages share as one list, the class's own methods as another).
macro_rules! pymethods_of {
    ($class:ident, $({ $($methods:tt)* }),+ $(,)?) => {
        #[::pyo3::pymethods]
        impl $class {
            $($($methods)*)*
        }
    };
}
pub(crate) use pymethods_of;

/// A protocol's `FileStorage` class (attributes `$meta`, the `#[pyclass]` among them): a
/// [`Handle`] on the core's durable storage `$durable`, whose in-memory part `mem` (a `$mem`) the
/// node reads, with the methods every protocol's file storage has (open, persist, compact, sync,
/// close, reopen, stats, the context manager, `__repr__`) plus the method lists given (which
/// include `first_index` and `last_index`). `$ready` and `$snapshot` are the protocol's Ready and
/// Snapshot classes, `$core_ready` the core's Ready.
macro_rules! file_storage_class {
    (
        $(#[$meta:meta])*
        $class:ident {
            durable: $durable:ty,
            mem: $mem:ty,
            ready: $ready:ty,
            core_ready: $core_ready:ty,
            snapshot: $snapshot:ty $(,)?
        },
        $({ $($methods:tt)* }),+ $(,)?
    ) => {
        $(#[$meta])*
        pub struct $class {
            handle: $crate::storage::Handle<$durable>,
            /// The in-memory part the node reads (shared with the storage).
            mem: $mem,
        }

        impl $class {
            fn from_handle(handle: $crate::storage::Handle<$durable>) -> Self {
                let mem = handle.lock().mem().clone();
                $class { handle, mem }
            }
        }

        $crate::storage::storage_class!($class, mem: $mem, ready = $core_ready, persist = |this, py, rd| {
            this.handle.with(py, |s| s.persist(rd))
        });

        #[::pyo3::pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (path, *, fsync = "always", segment_bytes = 67_108_864, batch_interval_ms = 10))]
            fn new(
                py: ::pyo3::Python<'_>,
                path: ::std::path::PathBuf,
                fsync: &str,
                segment_bytes: i64,
                batch_interval_ms: i64,
            ) -> ::pyo3::PyResult<Self> {
                let handle = $crate::storage::Handle::open(py, path, fsync, segment_bytes, batch_interval_ms)?;
                Ok(Self::from_handle(handle))
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
            /// Persists a Ready (a snapshot first, then what it accepted or appended, then the
            /// hard state); fsyncs per the policy.
            fn persist(&self, py: ::pyo3::Python<'_>, rd: &$ready) -> ::pyo3::PyResult<()> {
                $crate::storage::StorageClass::persist_ready(self, py, &rd.inner)
            }
            /// Records a snapshot of the application at an applied `index`, drops what it covers
            /// and deletes the WAL segments it made unnecessary.
            #[pyo3(signature = (index, data = None))]
            fn compact(&self, py: ::pyo3::Python<'_>, index: u64, data: Option<&[u8]>) -> ::pyo3::PyResult<()> {
                self.handle.compact(py, index, data)
            }
            /// Installs a snapshot received from the leader (durably: the snapshot file, then the
            /// WAL record), dropping what it covers.
            fn apply_snapshot(&self, py: ::pyo3::Python<'_>, snapshot: &$snapshot) -> ::pyo3::PyResult<()> {
                let snapshot = snapshot.inner.clone();
                self.handle.with(py, move |s| s.apply_snapshot(snapshot))
            }
            /// Fsyncs pending writes: under "batch" once the batch interval has passed (call it on
            /// each tick), under "always" at once, under "never" not at all.
            fn sync(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                self.handle.sync(py)
            }
            /// Syncs what is pending, closes the files and releases the directory lock. Reads
            /// keep working; writes raise `StorageError`.
            fn close(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                self.handle.close(py)
            }
            /// Closes this storage and opens its directory again with the same options (a restart).
            fn reopen(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<Self> {
                Ok(Self::from_handle(self.handle.reopen(py)?))
            }
            /// Counters since open: fsyncs, fsync_seconds_total, bytes_written, segments,
            /// torn_bytes_truncated (at open), last_sync_seconds.
            fn stats<'py>(
                &self,
                py: ::pyo3::Python<'py>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::types::PyDict>> {
                self.handle.stats(py)
            }
            /// Test hook: the next fsync fails with an I/O error (and poisons the storage).
            fn _inject_sync_failure(&self) {
                self.handle.inject_sync_failure();
            }
            fn __enter__(slf: ::pyo3::Py<Self>) -> ::pyo3::Py<Self> {
                slf
            }
            #[pyo3(signature = (exc_type, exc_value, traceback))]
            fn __exit__(
                &self,
                py: ::pyo3::Python<'_>,
                exc_type: &::pyo3::Bound<'_, ::pyo3::PyAny>,
                exc_value: &::pyo3::Bound<'_, ::pyo3::PyAny>,
                traceback: &::pyo3::Bound<'_, ::pyo3::PyAny>,
            ) -> ::pyo3::PyResult<bool> {
                let _ = (exc_type, exc_value, traceback);
                self.close(py)?;
                Ok(false)
            }
            fn __repr__(&self) -> String {
                // One read at a time: a second read guard taken while one is alive deadlocks
                // once a writer queues between them.
                let first = self.first_index();
                let last = self.last_index();
                let (path, fsync) = (self.handle.path_str(), self.handle.options.fsync.as_str());
                format!("FileStorage(path={path:?}, fsync={fsync:?}, first_index={first}, last_index={last})")
            }
            $($($methods)*)*
        }
    };
}
pub(crate) use file_storage_class;
