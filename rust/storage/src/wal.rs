//! The write-ahead log every protocol's file storage is built on: a locked data directory, WAL
//! segments of framed records, fsync policies, segment rollover and deletion, and snapshot files
//! written through a temp file. It knows nothing of what the records mean: the protocol decodes
//! them while the segments are scanned at open, and gives the records a new segment starts with.
//! The rules (torn tail versus damage, what is fsynced when) are in docs/storage-format.md.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use consensus_core::StorageError;

use crate::format::{
    decode_segment_header, encode_segment_header, open_snapshot_file, read_record, FormatError, ProtocolId, RecordRead,
    SegmentHeader, SEGMENT_HEADER_BYTES, SNAPSHOT_HEADER_BYTES,
};

/// Smallest accepted `segment_bytes` (tests use small segments to exercise rollover).
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Snapshot files kept; older ones are deleted after a new one is durable.
pub const SNAPSHOTS_KEPT: usize = 2;

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every Ready with `must_sync` (and every direct mutation) is fdatasynced before returning.
    Always,
    /// A new term, vote or promise, or a snapshot, is synced at once; other writes within
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
    /// Under [`FsyncPolicy::Batch`], the longest a write that is not urgent waits for its fsync.
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

impl Stats {
    fn add_writes(&mut self, other: &Stats) {
        self.fsyncs += other.fsyncs;
        self.fsync_seconds_total += other.fsync_seconds_total;
        self.bytes_written += other.bytes_written;
    }
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

/// fsync of a directory outside an open `Wal` (used while opening).
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    Syncer::default().sync_dir(dir).map_err(|e| io_error("cannot fsync directory", dir, e))
}

pub fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { file: file.display().to_string(), offset, reason: reason.into() }
}

pub fn io_error(what: &str, path: &Path, error: io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {error}", path.display()))
}

fn segment_name(sequence: u64, first_index: u64) -> String {
    format!("{sequence:016x}-{first_index:016x}.wal")
}

fn snapshot_name(index: u64, term: u64) -> String {
    format!("{index:016x}-{term:016x}.snap")
}

/// Parses `<a:016x>-<b:016x><suffix>`.
fn parse_name(name: &str, suffix: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(suffix)?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// The names in `dir` (sorted), as UTF-8 strings; others are ignored.
fn list_dir(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))? {
        let item = item.map_err(|e| io_error("cannot list", dir, e))?;
        if let Some(name) = item.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Snapshot files in `snap_dir`, oldest first: (index, term, path).
fn snapshot_files(snap_dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, StorageError> {
    let mut out: Vec<(u64, u64, PathBuf)> = list_dir(snap_dir)?
        .into_iter()
        .filter_map(|name| parse_name(&name, ".snap").map(|(index, term)| (index, term, snap_dir.join(name))))
        .collect();
    out.sort();
    Ok(out)
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

/// What every protocol's file storage offers besides its own writes: the WAL it is built on, and
/// compaction in three steps. The other methods are the same for every protocol.
/// `wal` and `wal_mut` for a [`DurableStorage`] that keeps its WAL in a field named `wal`.
macro_rules! wal_in_field {
    () => {
        fn wal(&self) -> &$crate::wal::Wal {
            &self.wal
        }

        fn wal_mut(&mut self) -> &mut $crate::wal::Wal {
            &mut self.wal
        }
    };
}
pub(crate) use wal_in_field;

pub trait DurableStorage: Sized {
    type Snapshot: SnapshotFile + Send + Sync;

    /// Opens (creating when missing) the storage in `dir` and replays it.
    fn open(dir: &Path, options: Options) -> Result<Self, StorageError>;
    fn wal(&self) -> &Wal;
    fn wal_mut(&mut self) -> &mut Wal;

    /// Step 1 of a compaction (brief): checks `index` and builds the snapshot to write.
    ///
    /// A compaction is split in three so a caller holding the storage behind a lock can write the
    /// (possibly large) snapshot file without the lock, while Readies keep being persisted:
    /// `prepare_compaction`, then [`SnapshotWriter::write`] unlocked, then `finish_compaction`.
    fn prepare_compaction(&self, index: u64, data: Bytes) -> Result<Self::Snapshot, StorageError>;

    /// Step 3 (brief): with the file written, drops what the snapshot covers, deletes the segments
    /// it made unnecessary and older snapshot files. A write failure poisons the storage. If a newer
    /// snapshot arrived meanwhile (installed from the leader), this one is simply superseded.
    fn finish_compaction(&mut self, snapshot: Self::Snapshot, written: WriteOutcome) -> Result<(), StorageError>;

    /// Records a snapshot of the application at an applied (and committed) `index`: the three
    /// steps at once.
    fn compact(&mut self, index: u64, data: Bytes) -> Result<(), StorageError> {
        let snapshot = self.prepare_compaction(index, data)?;
        let written = self.snapshot_writer().write(&snapshot);
        self.finish_compaction(snapshot, written)
    }

    /// Step 2: what writes snapshot files; needs no access to the storage while it writes.
    fn snapshot_writer(&self) -> SnapshotWriter {
        self.wal().snapshot_writer()
    }

    /// Whether bytes were written to the current segment since its last fsync.
    fn has_unsynced(&self) -> bool {
        self.wal().has_unsynced()
    }

    fn path(&self) -> &Path {
        self.wal().path()
    }

    fn options(&self) -> Options {
        self.wal().options()
    }

    fn stats(&self) -> Stats {
        self.wal().stats()
    }

    fn is_closed(&self) -> bool {
        self.wal().is_closed()
    }

    /// Makes the next fsync fail with an I/O error (tests of the poisoning path).
    fn inject_sync_failure(&mut self) {
        self.wal_mut().inject_sync_failure();
    }

    /// Fsyncs writes not yet synced: under `batch` once `batch_interval` has passed since the
    /// last fsync, under `always` at once (commit-only changes), under `never` not at all.
    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal_mut().sync()
    }

    /// Syncs what is pending (unless the policy is `never` or the storage is poisoned), closes
    /// the files and releases the lock. Reads keep answering from memory; writes fail.
    fn close(&mut self) -> Result<(), StorageError> {
        self.wal_mut().close()
    }
}

/// A protocol's snapshot as a file: the name it is stored under and its bytes.
pub trait SnapshotFile {
    /// `(index, term)`: the file is `snap/<index:016x>-<term:016x>.snap`.
    fn file_key(&self) -> (u64, u64);
    /// The whole file image (`format::encode_snapshot_file`).
    fn encode_file(&self) -> Vec<u8>;
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
    pub fn write<S: SnapshotFile>(mut self, snapshot: &S) -> WriteOutcome {
        let result = self.write_file(snapshot);
        WriteOutcome { result, stats: self.syncer.stats }
    }

    fn write_file<S: SnapshotFile>(&mut self, snapshot: &S) -> Result<(), (&'static str, PathBuf, io::Error)> {
        let (index, term) = snapshot.file_key();
        let name = snapshot_name(index, term);
        let final_path = self.snap_dir.join(&name);
        // A name of its own per writer: two writers of the same snapshot never share a temp file.
        static WRITERS: AtomicU64 = AtomicU64::new(0);
        let unique = WRITERS.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.snap_dir.join(format!("{name}.{}-{unique}.tmp", std::process::id()));
        let bytes = snapshot.encode_file();
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

/// A segment on disk, with the highest index or slot any of its records wrote.
#[derive(Debug, Clone)]
struct SegmentFile {
    sequence: u64,
    path: PathBuf,
    /// Highest index (Raft) or slot (Paxos) a record of this segment wrote (0: none). A segment
    /// whose records are all at or below the snapshot (and every segment before it) may go.
    max_key: u64,
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    bytes: u64,
    /// Whether bytes were written since the last fsync.
    unsynced: bool,
}

/// A data directory: `wal/` segments, `snap/` snapshots and a `LOCK` file held while open.
///
/// A failed write or fsync poisons it: that call and every later mutating call fail, because
/// after a failed fsync the kernel may have dropped the dirty pages and a retry could report
/// success for data that is gone.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    protocol: ProtocolId,
    options: Options,
    /// Segments oldest first; the last is `current`. Invariant: sequences are consecutive.
    segments: Vec<SegmentFile>,
    /// `None` until the first `roll` and once closed.
    current: Option<Current>,
    last_sync: Instant,
    /// Why the storage refuses writes (a failed write or fsync).
    poisoned: Option<String>,
    syncer: Syncer,
    /// Holds the exclusive lock on `LOCK` for as long as the storage is open.
    lock: Option<File>,
}

impl Wal {
    /// Opens (creating when missing) the data directory `dir` of `protocol`: takes the lock,
    /// removes leftover snapshot temp files, loads the newest snapshot file (its body decoded by
    /// `decode_snapshot`; its [`SnapshotFile::file_key`] must match the file name), then reads every segment in
    /// order, handing each record to `on_record(type, payload)`, which returns the highest index or
    /// slot the record wrote (0: none) or why the payload is invalid. The last segment's torn tail is
    /// truncated; any other damage is refused, before anything is truncated when it is the
    /// snapshot's. No segment is open for writing until the caller's first [`Wal::roll`].
    /// [`Wal::open`] for a protocol whose records are decoded by `decode_record` and applied, in
    /// order, to a fresh replay state `S` by `apply` (which returns the highest index or slot the
    /// record wrote, 0: none). Returns the WAL, the newest snapshot and the replayed state.
    pub fn replay<T: SnapshotFile, R, S: Default>(
        dir: &Path,
        options: Options,
        protocol: ProtocolId,
        decode_snapshot: impl FnOnce(Bytes) -> Result<T, FormatError>,
        decode_record: impl Fn(u8, &[u8]) -> Result<R, FormatError>,
        apply: impl Fn(&mut S, R) -> u64,
    ) -> Result<(Wal, Option<T>, S), StorageError> {
        let mut state = S::default();
        let (wal, snapshot) = Wal::open(dir, options, protocol, decode_snapshot, |record_type, payload| {
            Ok(apply(&mut state, decode_record(record_type, payload)?))
        })?;
        Ok((wal, snapshot, state))
    }

    pub fn open<T: SnapshotFile>(
        dir: &Path,
        options: Options,
        protocol: ProtocolId,
        decode_snapshot: impl FnOnce(Bytes) -> Result<T, FormatError>,
        on_record: impl FnMut(u8, &[u8]) -> Result<u64, FormatError>,
    ) -> Result<(Wal, Option<T>), StorageError> {
        if options.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(StorageError::Other(format!("segment_bytes must be at least {SEGMENT_BYTES_MIN}")));
        }
        let dir = dir.to_path_buf();
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
        for name in list_dir(&snap_dir)? {
            if name.ends_with(".tmp") {
                let path = snap_dir.join(&name);
                fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&snap_dir)?;
        }
        let mut wal = Wal {
            dir,
            wal_dir,
            snap_dir,
            protocol,
            options,
            segments: Vec::new(),
            current: None,
            last_sync: Instant::now(),
            poisoned: None,
            syncer: Syncer::default(),
            lock: Some(lock),
        };
        // Step 2 before step 3 (storage-format.md): a damaged snapshot is refused before any
        // segment is truncated or deleted.
        let snapshot = wal.load_newest_snapshot(decode_snapshot)?;
        wal.scan_segments(on_record)?;
        // The last replayed segment may hold writes that reached only the page cache before a
        // crash; it stops being the last one at the first roll, so make it durable first.
        if let Some(last) = wal.segments.last() {
            let path = last.path.clone();
            let synced = File::open(&path).and_then(|file| wal.syncer.sync(&file, true));
            if let Err(e) = synced {
                return Err(io_error("cannot fsync", &path, e));
            }
        }
        Ok((wal, snapshot))
    }

    /// Reads every segment of `wal/` in sequence order.
    fn scan_segments(
        &mut self,
        mut on_record: impl FnMut(u8, &[u8]) -> Result<u64, FormatError>,
    ) -> Result<(), StorageError> {
        let mut found: Vec<(u64, u64, PathBuf)> = list_dir(&self.wal_dir)?
            .into_iter()
            .filter_map(|name| parse_name(&name, ".wal").map(|(seq, first)| (seq, first, self.wal_dir.join(name))))
            .collect();
        found.sort();
        let count = found.len();
        for (position, (sequence, first_index, path)) in found.into_iter().enumerate() {
            let is_last = position + 1 == count;
            if let Some(previous) = self.segments.last() {
                if sequence != previous.sequence + 1 {
                    return Err(corrupt(
                        &path,
                        0,
                        format!("segment {} is missing before this one", previous.sequence + 1),
                    ));
                }
            }
            let bytes = fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
            if bytes.len() < SEGMENT_HEADER_BYTES {
                if !is_last {
                    return Err(corrupt(&path, 0, "segment shorter than its header"));
                }
                // A segment torn while it was being created: it holds nothing.
                fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
                sync_dir(&self.wal_dir)?;
                self.syncer.stats.torn_bytes_truncated += bytes.len() as u64;
                continue;
            }
            let header = decode_segment_header(&bytes).map_err(|e| corrupt(&path, 0, e.0))?;
            if (header.sequence, header.first_index) != (sequence, first_index) {
                return Err(corrupt(
                    &path,
                    0,
                    format!(
                        "header says segment {} from index {}, the name says segment {sequence} from index \
                         {first_index}",
                        header.sequence, header.first_index
                    ),
                ));
            }
            if header.protocol != self.protocol {
                return Err(StorageError::Other(format!(
                    "{} holds a {} log; it cannot be opened as {} storage",
                    path.display(),
                    header.protocol.name(),
                    self.protocol.name()
                )));
            }
            let mut segment = SegmentFile { sequence, path: path.clone(), max_key: 0 };
            let mut offset = SEGMENT_HEADER_BYTES;
            while offset < bytes.len() {
                let rest = &bytes[offset..];
                match read_record(rest) {
                    RecordRead::Record { record_type, payload, len } => {
                        // The checksum holds, so a payload that does not decode is damage (or a
                        // writer's bug), never a torn write.
                        let key = on_record(record_type, payload).map_err(|e| corrupt(&path, offset as u64, e.0))?;
                        segment.max_key = segment.max_key.max(key);
                        offset += len;
                    }
                    RecordRead::Incomplete if is_last => {
                        // A torn write leaves nothing valid after it. A record that only looks
                        // incomplete because its length field was damaged is followed by intact ones.
                        if let Some(found) = valid_record_after(rest) {
                            return Err(corrupt(
                                &path,
                                offset as u64,
                                format!(
                                    "record length runs past the end of the segment, but a valid record \
                                     follows at offset {}: the length field is damaged",
                                    offset + found
                                ),
                            ));
                        }
                        break;
                    }
                    RecordRead::Incomplete => {
                        return Err(corrupt(
                            &path,
                            offset as u64,
                            "record runs past the end of a segment that is not the last",
                        ))
                    }
                    RecordRead::Bad(_) if is_last && rest.iter().all(|b| *b == 0) => break,
                    RecordRead::Bad(e) => return Err(corrupt(&path, offset as u64, e.0)),
                }
            }
            if offset < bytes.len() {
                truncate_file(&path, offset as u64)?;
                self.syncer.stats.torn_bytes_truncated += (bytes.len() - offset) as u64;
            }
            self.segments.push(segment);
        }
        Ok(())
    }

    /// Loads the newest snapshot file, decoded by `decode(body)` into the snapshot and its
    /// `(index, term)`; damage of any kind is refused (no silent fallback to an older file).
    fn load_newest_snapshot<T: SnapshotFile>(
        &self,
        decode: impl FnOnce(Bytes) -> Result<T, FormatError>,
    ) -> Result<Option<T>, StorageError> {
        let Some((index, term, path)) = snapshot_files(&self.snap_dir)?.pop() else { return Ok(None) };
        let bytes = Bytes::from(fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?);
        let (protocol, body) = open_snapshot_file(&bytes).map_err(|(offset, e)| corrupt(&path, offset, e.0))?;
        if protocol != self.protocol {
            return Err(StorageError::Other(format!(
                "{} is a {} snapshot; it cannot be opened as {} storage",
                path.display(),
                protocol.name(),
                self.protocol.name()
            )));
        }
        let body = bytes.slice_ref(body);
        let snapshot = decode(body)
            .map_err(|e| corrupt(&path, SNAPSHOT_HEADER_BYTES as u64, format!("bad snapshot body: {}", e.0)))?;
        let (found_index, found_term) = snapshot.file_key();
        if (found_index, found_term) != (index, term) {
            return Err(corrupt(
                &path,
                0,
                format!("file holds a snapshot at ({found_index}, {found_term}), its name says ({index}, {term})"),
            ));
        }
        Ok(Some(snapshot))
    }

    /// Whether bytes were written to the current segment since its last fsync.
    pub fn has_unsynced(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.unsynced)
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

    pub fn check_writable(&self) -> Result<(), StorageError> {
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

    /// Appends `buf` (whole records) to the current segment.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StorageError> {
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

    /// Writes `record` (whole records) after checking the storage is writable, then syncs per
    /// policy; `urgent` as for [`Wal::sync_per_policy`].
    pub fn write_record(&mut self, record: &[u8], urgent: bool) -> Result<(), StorageError> {
        self.check_writable()?;
        self.write(record)?;
        self.sync_per_policy(true, urgent)
    }

    /// Notes that the current segment now holds a record for index or slot `key`.
    pub fn note_written(&mut self, key: u64) {
        if let Some(segment) = self.segments.last_mut() {
            segment.max_key = segment.max_key.max(key);
        }
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

    /// Syncs per policy after a write; `urgent` is a new term, vote or promise, or a snapshot.
    pub fn sync_per_policy(&mut self, must_sync: bool, urgent: bool) -> Result<(), StorageError> {
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

    /// Starts a new segment that begins with `preamble` (the records that let every older segment
    /// go: the protocol's current hard state, configurations, ...), fsyncs it and its directory.
    /// `first_index` is informative: the index or slot the log goes on from.
    pub fn roll(&mut self, preamble: &[u8], first_index: u64) -> Result<(), StorageError> {
        // Under every policy, `never` included: a segment that is not the last must be whole
        // after a power loss, or the directory would be refused on the next open.
        if self.current.is_some() {
            self.sync_current()?;
        }
        let sequence = self.segments.last().map_or(1, |s| s.sequence + 1);
        let path = self.wal_dir.join(segment_name(sequence, first_index));
        let mut buf = encode_segment_header(&SegmentHeader { protocol: self.protocol, sequence, first_index }).to_vec();
        buf.extend_from_slice(preamble);
        let file = match OpenOptions::new().create_new(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) => return Err(self.poison("cannot create", &path, e)),
        };
        self.segments.push(SegmentFile { sequence, path: path.clone(), max_key: 0 });
        self.current = Some(Current { file, bytes: 0, unsynced: false });
        self.write(&buf)?;
        // The new segment is synced whatever the policy: older segments may be deleted next and
        // it is what carries the preamble's state from then on.
        self.sync_current()?;
        let wal_dir = self.wal_dir.clone();
        self.sync_dir_checked(&wal_dir)
    }

    /// Whether the current segment grew past `segment_bytes` (the caller then rolls).
    pub fn is_full(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.bytes >= self.options.segment_bytes)
    }

    /// Deletes the oldest segments (never the current one) as long as each holds no record above
    /// `index`, or every older one when `everything_old`.
    pub fn delete_segments_through(&mut self, index: u64, everything_old: bool) -> Result<(), StorageError> {
        let mut count = 0;
        while count + 1 < self.segments.len() && (everything_old || self.segments[count].max_key <= index) {
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

    /// What writes snapshot files (temp file, fsync, rename, directory fsync); it needs no access
    /// to the storage while it writes, so a caller can write without holding the storage's lock.
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter { snap_dir: self.snap_dir.clone(), syncer: Syncer::default() }
    }

    /// Takes in a snapshot write's statistics; a failed write poisons the storage.
    pub fn absorb(&mut self, written: WriteOutcome) -> Result<(), StorageError> {
        let WriteOutcome { result, stats } = written;
        self.syncer.stats.add_writes(&stats);
        result.map_err(|(what, path, error)| self.poison(what, &path, error))
    }

    /// Writes a snapshot file now (with the storage at hand).
    pub fn write_snapshot<S: SnapshotFile>(&mut self, snapshot: &S) -> Result<(), StorageError> {
        let written = self.snapshot_writer().write(snapshot);
        self.absorb(written)
    }

    /// Writes the file of a snapshot received from the leader, refused when it is not newer than
    /// the snapshot held at `held`.
    pub fn write_newer_snapshot<S: SnapshotFile>(&mut self, held: u64, snapshot: &S) -> Result<(), StorageError> {
        let index = snapshot.file_key().0;
        if index <= held {
            return Err(StorageError::SnapshotOutOfDate(index));
        }
        self.write_snapshot(snapshot)
    }

    /// Step 3 of a compaction, its shared start: takes in the write's outcome and says whether the
    /// snapshot at `index` still moves the storage past `held`. When it does not (a newer snapshot
    /// arrived meanwhile), older snapshot files are pruned and the caller stops.
    pub fn absorb_compaction(&mut self, written: WriteOutcome, index: u64, held: u64) -> Result<bool, StorageError> {
        self.absorb(written)?;
        self.check_writable()?;
        if index <= held {
            self.prune_snapshots()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Once a snapshot at `index` is in force: deletes the segments it covers (every older one
    /// when `everything_old`) and older snapshot files.
    pub fn drop_covered(&mut self, index: u64, everything_old: bool) -> Result<(), StorageError> {
        self.delete_segments_through(index, everything_old)?;
        self.prune_snapshots()
    }

    /// Deletes all but the newest [`SNAPSHOTS_KEPT`] snapshot files.
    pub fn prune_snapshots(&mut self) -> Result<(), StorageError> {
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

/// The offset (within `rest`) of a complete, checksum-valid record that starts after the first
/// byte of `rest`, if any: evidence that `rest` is damaged rather than torn. Most offsets are
/// rejected by their length field alone, so the scan is cheap.
fn valid_record_after(rest: &[u8]) -> Option<usize> {
    (1..rest.len()).find(|&at| matches!(read_record(&rest[at..]), RecordRead::Record { .. }))
}

fn truncate_file(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = fs::OpenOptions::new().write(true).open(path).map_err(|e| io_error("cannot open", path, e))?;
    file.set_len(len).map_err(|e| io_error("cannot truncate", path, e))?;
    file.sync_all().map_err(|e| io_error("cannot fsync", path, e))
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

    #[test]
    fn names_parse_back_and_others_are_ignored() {
        assert_eq!(parse_name(&segment_name(3, 17), ".wal"), Some((3, 17)));
        assert_eq!(parse_name(&snapshot_name(9, 2), ".snap"), Some((9, 2)));
        assert_eq!(parse_name("0001-0002.wal", ".wal"), None);
        assert_eq!(parse_name("notes.txt", ".wal"), None);
    }
}
