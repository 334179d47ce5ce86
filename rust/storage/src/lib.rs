//! `consensus-storage`: durable storage for a Raft node — a write-ahead log of segments with
//! CRC32C records plus snapshot files (format: docs/storage-format.md).
//!
//! A [`FileStorage`] keeps everything the node reads in a [`MemStorage`] (reads never touch the
//! disk after `open`); every mutation is written to the WAL (and fsynced per [`FsyncPolicy`])
//! before the `MemStorage` changes. A failed write or fsync poisons the storage: that call and
//! every later mutating call fail, because after a failed fsync the kernel may have dropped the
//! dirty pages and a retry could report success for data that is gone.

pub mod format;
mod replay;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use consensus_core::raft::{ConfState, Entry, HardState, Ready, Snapshot};
use consensus_core::storage::MemStorage;
use consensus_core::StorageError;

use crate::format::{
    encode_segment_header, encode_snapshot_file, put_conf_state, put_entries, put_hard_state, put_snapshot_marker,
    SegmentHeader, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::replay::{io_error, load_snapshot, segment_name, snapshot_files, snapshot_name, Replay, SegmentFile};

/// Smallest accepted `segment_bytes` (tests use small segments to exercise rollover).
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Snapshot files kept; older ones are deleted after a new one is durable.
pub const SNAPSHOTS_KEPT: usize = 2;

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every Ready with `must_sync` (and every direct mutation) is fdatasynced before returning.
    Always,
    /// A new term or vote or a snapshot is synced at once; entry-only writes within
    /// `batch_interval` of the previous fsync wait for the next persist or `sync()`.
    Batch,
    /// Never fsync the WAL: a power loss can lose acknowledged writes and votes.
    Never,
}

impl FsyncPolicy {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "always" => Some(FsyncPolicy::Always),
            "batch" => Some(FsyncPolicy::Batch),
            "never" => Some(FsyncPolicy::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Never => "never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started once it grows past this many bytes.
    pub segment_bytes: u64,
    /// Under [`FsyncPolicy::Batch`], the longest an entry-only write waits for its fsync.
    pub batch_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { fsync: FsyncPolicy::Always, segment_bytes: 64 << 20, batch_interval: Duration::from_millis(10) }
    }
}

/// Counters since `open`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub fsyncs: u64,
    pub fsync_seconds_total: f64,
    pub bytes_written: u64,
    pub segments: usize,
    pub torn_bytes_truncated: u64,
    pub last_sync_seconds: f64,
}

/// fsync bookkeeping shared by the WAL, snapshot files and directories.
#[derive(Debug, Default)]
struct Syncer {
    fail_next: bool,
    stats: Stats,
}

impl Syncer {
    /// fdatasync (`data_only`) or fsync of `file`; the injected failure, if armed, happens here.
    fn sync(&mut self, file: &File, data_only: bool) -> io::Result<()> {
        if self.fail_next {
            self.fail_next = false;
            return Err(io::Error::other("injected fsync failure"));
        }
        let start = Instant::now();
        if data_only {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        let seconds = start.elapsed().as_secs_f64();
        self.stats.fsyncs += 1;
        self.stats.fsync_seconds_total += seconds;
        self.stats.last_sync_seconds = seconds;
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            let file = File::open(dir)?;
            self.sync(&file, false)
        }
        #[cfg(not(unix))]
        {
            // Directories cannot be opened for fsync here; metadata durability is the filesystem's.
            let _ = dir;
            Ok(())
        }
    }
}

/// fsync of a directory outside a `FileStorage` (used while opening).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    Syncer::default().sync_dir(dir).map_err(|e| io_error("cannot fsync directory", dir, e))
}

/// Writes snapshot files into a storage's `snap/` directory, without access to the storage.
#[derive(Debug)]
pub struct SnapshotWriter {
    snap_dir: PathBuf,
    syncer: Syncer,
}

/// What [`SnapshotWriter::write`] did: the failure (what, which file, the error) if any, and the
/// fsync and byte counts to add to the storage's statistics.
#[derive(Debug)]
pub struct WriteOutcome {
    pub result: Result<(), (&'static str, PathBuf, io::Error)>,
    pub stats: Stats,
}

impl SnapshotWriter {
    /// Temp file, write, fsync, rename, directory fsync.
    pub fn write(mut self, snapshot: &Snapshot) -> WriteOutcome {
        let result = self.write_file(snapshot);
        WriteOutcome { result, stats: self.syncer.stats }
    }

    fn write_file(&mut self, snapshot: &Snapshot) -> Result<(), (&'static str, PathBuf, io::Error)> {
        let name = snapshot_name(snapshot.index, snapshot.term);
        let final_path = self.snap_dir.join(&name);
        // A name of its own per writer: two writers of the same snapshot never share a temp file.
        static WRITERS: AtomicU64 = AtomicU64::new(0);
        let unique = WRITERS.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.snap_dir.join(format!("{name}.{}-{unique}.tmp", std::process::id()));
        let bytes = encode_snapshot_file(snapshot);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| ("cannot create", tmp_path.clone(), e))?;
        file.write_all(&bytes).map_err(|e| ("cannot write", tmp_path.clone(), e))?;
        self.syncer.stats.bytes_written += bytes.len() as u64;
        self.syncer.sync(&file, false).map_err(|e| ("cannot fsync", tmp_path.clone(), e))?;
        drop(file);
        fs::rename(&tmp_path, &final_path).map_err(|e| ("cannot rename", tmp_path.clone(), e))?;
        self.syncer.sync_dir(&self.snap_dir).map_err(|e| ("cannot fsync directory", self.snap_dir.clone(), e))
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    bytes: u64,
    /// Whether bytes were written since the last fsync.
    unsynced: bool,
}

/// Durable Raft storage in a directory: `wal/` segments, `snap/` snapshots and a `LOCK` file.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    options: Options,
    mem: MemStorage,
    /// The configurations recorded in `mem` (same rules as `MemStorageCore::set_conf_state`), so a
    /// new segment can repeat them and a compaction can find the one in force at its index.
    conf_history: Vec<(u64, ConfState)>,
    /// Segments oldest first; the last is `current`. Invariant: sequences are consecutive.
    segments: Vec<SegmentFile>,
    /// `None` once closed.
    current: Option<Current>,
    last_sync: Instant,
    /// Why the storage refuses writes (a failed write or fsync).
    poisoned: Option<String>,
    syncer: Syncer,
    /// Holds the exclusive lock on `LOCK` for as long as the storage is open.
    lock: Option<File>,
}

/// Takes an exclusive, non-blocking `flock` on `file` (released when the file is closed, including
/// by the kernel when the process dies). Fails with `WouldBlock` when another open file holds it.
#[cfg(unix)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for the call's duration.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without `flock`, no lock is taken: one process per data directory is the operator's duty.
#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> io::Result<()> {
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), StorageError> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|e| io_error("cannot create directory", path, e))?;
    // A brand-new directory is durable only once its parent's entry is.
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

impl FileStorage {
    /// Opens (creating when missing) the storage in `dir`: loads the newest snapshot, replays the
    /// WAL, truncates a torn tail of the last segment and starts a new segment.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<FileStorage, StorageError> {
        if options.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(StorageError::Other(format!("segment_bytes must be at least {SEGMENT_BYTES_MIN}")));
        }
        let dir = dir.as_ref().to_path_buf();
        create_dir(&dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open", &lock_path, e))?;
        lock_exclusive(&lock).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                StorageError::Io(format!("{} is in use by another open FileStorage", dir.display()))
            } else {
                io_error("cannot lock", &lock_path, e)
            }
        })?;
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        create_dir(&wal_dir)?;
        create_dir(&snap_dir)?;

        // Leftovers of snapshot writes that never completed.
        let mut removed = false;
        for name in replay::list_dir(&snap_dir)? {
            if name.ends_with(".tmp") {
                let path = snap_dir.join(&name);
                fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&snap_dir)?;
        }
        let snapshot = match snapshot_files(&snap_dir)?.pop() {
            Some((index, term, path)) => Some(load_snapshot(&path, index, term)?),
            None => None,
        };

        let mut replayed = Replay::default();
        let report = replay::scan_segments(&wal_dir, &mut replayed)?;
        let recovered = replayed.finish(snapshot, &wal_dir)?;

        let mem = MemStorage::new();
        {
            let mut core = mem.wl();
            if let Some(snapshot) = recovered.snapshot {
                core.apply_snapshot(snapshot)?;
            }
            for (index, conf_state) in &recovered.conf_history {
                core.set_conf_state(*index, conf_state.clone());
            }
            core.append(&recovered.entries)?;
            core.set_hard_state(recovered.hard_state);
        }
        let mut syncer = Syncer::default();
        syncer.stats.torn_bytes_truncated = report.torn_bytes_truncated;
        let mut storage = FileStorage {
            dir,
            wal_dir,
            snap_dir,
            options,
            mem,
            conf_history: recovered.conf_history,
            segments: report.segments,
            current: None,
            last_sync: Instant::now(),
            poisoned: None,
            syncer,
            lock: Some(lock),
        };
        // The last replayed segment may hold writes that reached only the page cache before a
        // crash; it stops being the last one now, so make it durable first.
        if let Some(last) = storage.segments.last() {
            let path = last.path.clone();
            let synced = File::open(&path).and_then(|file| storage.syncer.sync(&file, true));
            if let Err(e) = synced {
                return Err(io_error("cannot fsync", &path, e));
            }
        }
        storage.roll(None)?;
        Ok(storage)
    }

    /// Whether bytes were written to the current segment since its last fsync.
    pub fn has_unsynced(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.unsynced)
    }

    /// What the node reads through (shared: it sees every change made here).
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> Options {
        self.options
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.syncer.stats.clone();
        stats.segments = self.segments.len();
        stats
    }

    pub fn is_closed(&self) -> bool {
        self.current.is_none()
    }

    /// Makes the next fsync fail with an I/O error (tests of the poisoning path).
    pub fn inject_sync_failure(&mut self) {
        self.syncer.fail_next = true;
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned(reason.clone()));
        }
        if self.current.is_none() {
            return Err(StorageError::Other(format!("storage {} is closed", self.dir.display())));
        }
        Ok(())
    }

    /// Records an I/O failure: the storage refuses every later write.
    fn poison(&mut self, what: &str, path: &Path, error: io::Error) -> StorageError {
        let message = format!("{what} {}: {error}", path.display());
        self.poisoned = Some(message.clone());
        StorageError::Io(message)
    }

    fn current_path(&self) -> PathBuf {
        self.segments.last().expect("an open storage has a current segment").path.clone()
    }

    /// Appends `buf` to the current segment.
    fn write(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let current = self.current.as_mut().expect("checked writable");
        if let Err(e) = current.file.write_all(buf) {
            let path = self.current_path();
            return Err(self.poison("cannot write", &path, e));
        }
        current.bytes += buf.len() as u64;
        current.unsynced = true;
        self.syncer.stats.bytes_written += buf.len() as u64;
        Ok(())
    }

    /// fdatasyncs the current segment if anything is unsynced.
    fn sync_current(&mut self) -> Result<(), StorageError> {
        let Some(current) = self.current.as_mut() else { return Ok(()) };
        if !current.unsynced {
            return Ok(());
        }
        if let Err(e) = self.syncer.sync(&current.file, true) {
            let path = self.current_path();
            return Err(self.poison("cannot fsync", &path, e));
        }
        current.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_dir_checked(&mut self, dir: &Path) -> Result<(), StorageError> {
        match self.syncer.sync_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.poison("cannot fsync directory", dir, e)),
        }
    }

    /// Syncs per policy after a write; `urgent` is a new term or vote, a snapshot, or a Ready
    /// with `must_sync` under `always`.
    fn sync_per_policy(&mut self, must_sync: bool, urgent: bool) -> Result<(), StorageError> {
        match self.options.fsync {
            FsyncPolicy::Always if must_sync || urgent => self.sync_current(),
            FsyncPolicy::Always | FsyncPolicy::Never => Ok(()),
            FsyncPolicy::Batch if urgent => self.sync_current(),
            FsyncPolicy::Batch => self.sync_if_due(),
        }
    }

    fn sync_if_due(&mut self) -> Result<(), StorageError> {
        if self.last_sync.elapsed() >= self.options.batch_interval {
            self.sync_current()
        } else {
            Ok(())
        }
    }

    /// Starts a new segment holding the current hard state and configurations (and, after an
    /// installed snapshot, its marker first), fsyncs it and its directory.
    fn roll(&mut self, marker: Option<(u64, u64)>) -> Result<(), StorageError> {
        // Under every policy, `never` included: a segment that is not the last must be whole
        // after a power loss, or the directory would be refused on the next open.
        if self.current.is_some() {
            self.sync_current()?;
        }
        let sequence = self.segments.last().map_or(1, |s| s.sequence + 1);
        let (hard_state, first_index) = {
            let core = self.mem.rl();
            (core.hard_state(), core.last_index() + 1)
        };
        let path = self.wal_dir.join(segment_name(sequence, first_index));
        let mut buf = encode_segment_header(&SegmentHeader { sequence, first_index }).to_vec();
        if let Some((index, term)) = marker {
            put_snapshot_marker(&mut buf, index, term);
        }
        put_hard_state(&mut buf, &hard_state);
        for (index, conf_state) in &self.conf_history {
            put_conf_state(&mut buf, *index, conf_state);
        }
        let file = match OpenOptions::new().create_new(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) => return Err(self.poison("cannot create", &path, e)),
        };
        self.segments.push(SegmentFile { sequence, path: path.clone(), max_index: 0 });
        self.current = Some(Current { file, bytes: 0, unsynced: false });
        self.write(&buf)?;
        // The new segment is synced whatever the policy: older segments may be deleted next and
        // it is what carries the hard state and configurations from then on.
        self.sync_current()?;
        let wal_dir = self.wal_dir.clone();
        self.sync_dir_checked(&wal_dir)
    }

    fn roll_if_full(&mut self) -> Result<(), StorageError> {
        let full = self.current.as_ref().is_some_and(|c| c.bytes >= self.options.segment_bytes);
        if full {
            self.roll(None)?;
        }
        Ok(())
    }

    /// Writes the records of `entries` (those above the snapshot) to the buffer; returns them.
    fn encode_entries<'a>(&self, buf: &mut Vec<u8>, entries: &'a [Entry]) -> Result<&'a [Entry], StorageError> {
        let core = self.mem.rl();
        let snapshot_index = core.first_index() - 1;
        let skip = entries.iter().take_while(|e| e.index <= snapshot_index).count();
        let entries = &entries[skip..];
        let Some(first) = entries.first() else { return Ok(entries) };
        if first.index > core.last_index() + 1 {
            return Err(StorageError::Other(format!(
                "append at {} leaves a gap after last index {}",
                first.index,
                core.last_index()
            )));
        }
        let prev_term = core.term(first.index - 1).unwrap_or(0);
        let split = RECORD_PAYLOAD_BYTES_MAX.min(self.options.segment_bytes as usize);
        put_entries(buf, prev_term, entries, split);
        Ok(entries)
    }

    fn note_entries_written(&mut self, entries: &[Entry]) {
        if let (Some(last), Some(segment)) = (entries.last(), self.segments.last_mut()) {
            segment.max_index = segment.max_index.max(last.index);
        }
    }

    /// Persists a Ready: snapshot, then entries, then hard state; fsyncs per policy; then
    /// updates the in-memory state the node reads.
    pub fn persist(&mut self, rd: &Ready) -> Result<(), StorageError> {
        self.check_writable()?;
        let current_hs = self.mem.rl().hard_state();
        let urgent = rd.snapshot.is_some()
            || rd.hard_state.is_some_and(|hs| hs.term != current_hs.term || hs.vote != current_hs.vote);
        if let Some(snapshot) = &rd.snapshot {
            self.install_snapshot(snapshot.clone())?;
        }
        let mut buf = Vec::new();
        let entries = self.encode_entries(&mut buf, &rd.entries)?;
        if let Some(hs) = &rd.hard_state {
            put_hard_state(&mut buf, hs);
        }
        self.write(&buf)?;
        self.sync_per_policy(rd.must_sync, urgent)?;
        self.note_entries_written(entries);
        {
            let mut core = self.mem.wl();
            core.append(entries)?;
            if let Some(hs) = rd.hard_state {
                core.set_hard_state(hs);
            }
        }
        self.roll_if_full()
    }

    /// Appends entries (replacing a conflicting suffix), synced like a Ready that must sync.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut buf = Vec::new();
        let entries = self.encode_entries(&mut buf, entries)?;
        self.write(&buf)?;
        self.sync_per_policy(true, false)?;
        self.note_entries_written(entries);
        self.mem.wl().append(entries)?;
        self.roll_if_full()
    }

    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.check_writable()?;
        let current = self.mem.rl().hard_state();
        let urgent = hs.term != current.term || hs.vote != current.vote;
        let mut buf = Vec::new();
        put_hard_state(&mut buf, &hs);
        self.write(&buf)?;
        self.sync_per_policy(true, urgent)?;
        self.mem.wl().set_hard_state(hs);
        self.roll_if_full()
    }

    /// Records the configuration in force from `index` (a conf change was applied, or index 0 for
    /// the bootstrap configuration of a new cluster).
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut buf = Vec::new();
        put_conf_state(&mut buf, index, &conf_state);
        self.write(&buf)?;
        self.sync_per_policy(true, false)?;
        self.conf_history.retain(|(i, _)| *i < index);
        self.conf_history.push((index, conf_state.clone()));
        self.mem.wl().set_conf_state(index, conf_state);
        self.roll_if_full()
    }

    /// Writes `snapshot` as `snap/<index>-<term>.snap` through a fsynced temporary file.
    fn write_snapshot_file(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let WriteOutcome { result, stats } = self.snapshot_writer().write(snapshot);
        self.syncer.stats.fsyncs += stats.fsyncs;
        self.syncer.stats.fsync_seconds_total += stats.fsync_seconds_total;
        self.syncer.stats.bytes_written += stats.bytes_written;
        result.map_err(|(what, path, error)| self.poison(what, &path, error))
    }

    /// Deletes all but the newest [`SNAPSHOTS_KEPT`] snapshot files.
    fn prune_snapshots(&mut self) -> Result<(), StorageError> {
        let files = snapshot_files(&self.snap_dir)?;
        if files.len() <= SNAPSHOTS_KEPT {
            return Ok(());
        }
        for (_, _, path) in &files[..files.len() - SNAPSHOTS_KEPT] {
            if let Err(e) = fs::remove_file(path) {
                return Err(self.poison("cannot remove", path, e));
            }
        }
        let snap_dir = self.snap_dir.clone();
        self.sync_dir_checked(&snap_dir)
    }

    /// Deletes the oldest segments, as long as each holds no entry above `index` (never the current one).
    fn delete_segments_through(&mut self, index: u64, everything_old: bool) -> Result<(), StorageError> {
        let mut count = 0;
        while count + 1 < self.segments.len() && (everything_old || self.segments[count].max_index <= index) {
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let doomed: Vec<SegmentFile> = self.segments.drain(..count).collect();
        for segment in &doomed {
            if let Err(e) = fs::remove_file(&segment.path) {
                return Err(self.poison("cannot remove", &segment.path, e));
            }
        }
        let wal_dir = self.wal_dir.clone();
        self.sync_dir_checked(&wal_dir)
    }

    /// Installs a snapshot received from the leader: the snapshot file first, then the in-memory
    /// state, then a fresh segment starting with its marker, then the older segments go.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.check_writable()?;
        self.install_snapshot(snapshot)
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let held = self.mem.rl().snapshot().index;
        if snapshot.index <= held {
            return Err(StorageError::SnapshotOutOfDate(snapshot.index));
        }
        self.write_snapshot_file(&snapshot)?;
        let (index, term) = (snapshot.index, snapshot.term);
        self.mem.wl().apply_snapshot(snapshot)?;
        self.conf_history.clear();
        self.roll(Some((index, term)))?;
        self.delete_segments_through(index, true)?;
        self.prune_snapshots()
    }

    /// Records a snapshot of the application at an applied (and committed) `index`, drops the log
    /// up to it and deletes the segments it made unnecessary.
    pub fn compact(&mut self, index: u64, data: Bytes) -> Result<(), StorageError> {
        let snapshot = self.prepare_compaction(index, data)?;
        let written = self.snapshot_writer().write(&snapshot);
        self.finish_compaction(snapshot, written)
    }

    /// Step 1 of a compaction (brief): checks `index` and builds the snapshot to write.
    ///
    /// A compaction is split in three so a caller holding this storage behind a lock can write the
    /// (possibly large) snapshot file without the lock, while Readies keep being persisted:
    /// `prepare_compaction`, then [`SnapshotWriter::write`] unlocked, then `finish_compaction`.
    pub fn prepare_compaction(&self, index: u64, data: Bytes) -> Result<Snapshot, StorageError> {
        self.check_writable()?;
        let core = self.mem.rl();
        let held = core.snapshot();
        if index <= held.index {
            return Err(StorageError::Compacted(index));
        }
        if index > core.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if index > core.hard_state().commit {
            return Err(StorageError::Other(format!(
                "cannot compact to {index}: above the commit index {}",
                core.hard_state().commit
            )));
        }
        let conf_state = self
            .conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or(held.conf_state);
        Ok(Snapshot { index, term: core.term(index)?, conf_state, data })
    }

    /// Step 2: what writes snapshot files (temp file, fsync, rename, directory fsync); needs no
    /// access to the storage while it writes.
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter { snap_dir: self.snap_dir.clone(), syncer: Syncer::default() }
    }

    /// Step 3 (brief): with the file written, drops the log up to the snapshot, deletes the
    /// segments it covers and older snapshot files. A write failure poisons the storage. If a newer
    /// snapshot arrived meanwhile (installed from the leader), this one is simply superseded.
    pub fn finish_compaction(&mut self, snapshot: Snapshot, written: WriteOutcome) -> Result<(), StorageError> {
        let WriteOutcome { result, stats } = written;
        self.syncer.stats.fsyncs += stats.fsyncs;
        self.syncer.stats.fsync_seconds_total += stats.fsync_seconds_total;
        self.syncer.stats.bytes_written += stats.bytes_written;
        if let Err((what, path, error)) = result {
            return Err(self.poison(what, &path, error));
        }
        self.check_writable()?;
        let index = snapshot.index;
        if index <= self.mem.rl().snapshot().index {
            return self.prune_snapshots();
        }
        self.mem.wl().compact(index, snapshot.data)?;
        self.conf_history.retain(|(i, _)| *i > index);
        self.delete_segments_through(index, false)?;
        self.prune_snapshots()
    }

    /// Fsyncs writes not yet synced: under `batch` once `batch_interval` has passed since the
    /// last fsync, under `always` at once (commit-only changes), under `never` not at all.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        match self.options.fsync {
            FsyncPolicy::Always => self.sync_current(),
            FsyncPolicy::Batch => self.sync_if_due(),
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// Syncs what is pending (unless the policy is `never` or the storage is poisoned), closes
    /// the files and releases the lock. Reads keep answering from memory; writes fail.
    pub fn close(&mut self) -> Result<(), StorageError> {
        if self.current.is_none() {
            return Ok(());
        }
        let result = if self.poisoned.is_none() && self.options.fsync != FsyncPolicy::Never {
            self.sync_current()
        } else {
            Ok(())
        };
        self.current = None;
        self.lock = None;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_names_round_trip() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
            assert_eq!(FsyncPolicy::parse(policy.as_str()), Some(policy));
        }
        assert_eq!(FsyncPolicy::parse("sometimes"), None);
    }
}
