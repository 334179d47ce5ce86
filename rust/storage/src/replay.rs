//! Reading a data directory back: the newest snapshot, then every WAL segment in order, replayed
//! into the state a `MemStorage` is rebuilt from. The rules are in docs/storage-format.md.

use std::fs;
use std::path::{Path, PathBuf};

use consensus_core::raft::{ConfState, Entry, HardState, Snapshot};
use consensus_core::StorageError;

use crate::format::{
    decode_segment_header, decode_snapshot_file, read_record, Record, RecordRead, SEGMENT_HEADER_BYTES,
};

/// A segment found on disk, with the highest entry index any of its records wrote.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub sequence: u64,
    pub path: PathBuf,
    /// Highest index of an entry written to this segment (0: none). A segment whose entries are
    /// all at or below the snapshot index (and every segment before it) may be deleted.
    pub max_index: u64,
}

pub fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { file: file.display().to_string(), offset, reason: reason.into() }
}

pub fn io_error(what: &str, path: &Path, error: std::io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {error}", path.display()))
}

pub fn segment_name(sequence: u64, first_index: u64) -> String {
    format!("{sequence:016x}-{first_index:016x}.wal")
}

pub fn snapshot_name(index: u64, term: u64) -> String {
    format!("{index:016x}-{term:016x}.snap")
}

/// Parses `<a:016x>-<b:016x><suffix>`.
pub fn parse_name(name: &str, suffix: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(suffix)?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// The names in `dir` (sorted), as UTF-8 strings; others are ignored.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, StorageError> {
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
pub fn snapshot_files(snap_dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, StorageError> {
    let mut out: Vec<(u64, u64, PathBuf)> = list_dir(snap_dir)?
        .into_iter()
        .filter_map(|name| parse_name(&name, ".snap").map(|(index, term)| (index, term, snap_dir.join(name))))
        .collect();
    out.sort();
    Ok(out)
}

/// Loads and verifies one snapshot file; damage of any kind is refused.
pub fn load_snapshot(path: &Path, index: u64, term: u64) -> Result<Snapshot, StorageError> {
    let bytes = fs::read(path).map_err(|e| io_error("cannot read", path, e))?;
    let snapshot = decode_snapshot_file(&bytes).map_err(|(offset, e)| corrupt(path, offset, e.0))?;
    if (snapshot.index, snapshot.term) != (index, term) {
        return Err(corrupt(
            path,
            0,
            format!(
                "file holds a snapshot at ({}, {}), its name says ({index}, {term})",
                snapshot.index, snapshot.term
            ),
        ));
    }
    Ok(snapshot)
}

/// The log as replayed so far. Invariant: `entries[i].index == base_index + 1 + i`.
#[derive(Debug, Default)]
pub struct Replay {
    /// The position just before `entries`: (index, term); term 0 when unknown.
    base_index: u64,
    base_term: u64,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    conf_history: Vec<(u64, ConfState)>,
}

/// What a data directory holds once replayed.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: Option<Snapshot>,
    pub hard_state: HardState,
    /// Entries above the snapshot, contiguous from `snapshot.index + 1` (or 1).
    pub entries: Vec<Entry>,
    pub conf_history: Vec<(u64, ConfState)>,
}

impl Replay {
    fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Entries { prev_term, entries } => {
                let first = entries[0].index;
                if first > self.last_index() + 1 || first <= self.base_index {
                    // A gap (a snapshot was installed in between) or a batch below what is held:
                    // the log starts over at this batch.
                    self.entries.clear();
                    self.base_index = first - 1;
                    self.base_term = prev_term;
                } else {
                    self.entries.truncate((first - self.base_index - 1) as usize);
                }
                self.entries.extend(entries);
            }
            Record::HardState(hs) => self.hard_state = Some(hs),
            Record::ConfState { index, conf_state } => {
                self.conf_history.retain(|(i, _)| *i < index);
                self.conf_history.push((index, conf_state));
            }
            Record::Snapshot { index, term } => {
                self.entries.clear();
                self.conf_history.clear();
                self.base_index = index;
                self.base_term = term;
            }
        }
    }

    /// Whether the replayed log holds `index` with `term` (log matching).
    fn holds(&self, index: u64, term: u64) -> bool {
        if index == self.base_index {
            return self.base_term == term;
        }
        index > self.base_index
            && index <= self.last_index()
            && self.entries[(index - self.base_index - 1) as usize].term == term
    }

    /// Combines the replayed WAL with the newest snapshot.
    pub fn finish(mut self, snapshot: Option<Snapshot>, wal_dir: &Path) -> Result<Recovered, StorageError> {
        let holds_snapshot = snapshot.as_ref().is_some_and(|s| self.holds(s.index, s.term));
        let mut hard_state = self.hard_state.unwrap_or_default();
        let mut entries = std::mem::take(&mut self.entries);
        let mut conf_history = std::mem::take(&mut self.conf_history);
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.index);
        match &snapshot {
            Some(s) => {
                if holds_snapshot {
                    // Keep only the entries above the snapshot.
                    let drop = (s.index - self.base_index) as usize;
                    entries.drain(..drop);
                } else {
                    entries.clear();
                }
                conf_history.retain(|(i, _)| *i > s.index);
                hard_state.term = hard_state.term.max(s.term);
                hard_state.commit = hard_state.commit.max(s.index);
            }
            None => {
                if self.base_index != 0 && !entries.is_empty() {
                    return Err(corrupt(
                        wal_dir,
                        0,
                        format!("the log starts at index {} but there is no snapshot below it", self.base_index + 1),
                    ));
                }
                if self.base_index != 0 {
                    entries.clear();
                }
            }
        }
        // The commit index need not be durable; never claim more than the log holds.
        let last_index = snapshot_index + entries.len() as u64;
        hard_state.commit = hard_state.commit.min(last_index);
        Ok(Recovered { snapshot, hard_state, entries, conf_history })
    }
}

/// What reading the segments did besides replaying them.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub segments: Vec<SegmentFile>,
    pub torn_bytes_truncated: u64,
    /// Whether a file was truncated or removed (the directory or file was fsynced already).
    pub repaired: bool,
}

/// Reads every segment of `wal_dir` in sequence order into `replay`. The last segment's torn
/// tail is truncated (and fsynced); any other damage is refused.
pub fn scan_segments(wal_dir: &Path, replay: &mut Replay) -> Result<ScanReport, StorageError> {
    let mut found: Vec<(u64, u64, PathBuf)> = list_dir(wal_dir)?
        .into_iter()
        .filter_map(|name| parse_name(&name, ".wal").map(|(seq, first)| (seq, first, wal_dir.join(name))))
        .collect();
    found.sort();
    let mut report = ScanReport::default();
    let count = found.len();
    for (position, (sequence, first_index, path)) in found.into_iter().enumerate() {
        let is_last = position + 1 == count;
        if let Some(previous) = report.segments.last() {
            if sequence != previous.sequence + 1 {
                return Err(corrupt(&path, 0, format!("segment {} is missing before this one", previous.sequence + 1)));
            }
        }
        let bytes = fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        if bytes.len() < SEGMENT_HEADER_BYTES {
            if !is_last {
                return Err(corrupt(&path, 0, "segment shorter than its header"));
            }
            // A segment torn while it was being created: it holds nothing.
            fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
            crate::sync_dir(wal_dir)?;
            report.torn_bytes_truncated += bytes.len() as u64;
            report.repaired = true;
            continue;
        }
        let header = decode_segment_header(&bytes).map_err(|e| corrupt(&path, 0, e.0))?;
        if (header.sequence, header.first_index) != (sequence, first_index) {
            return Err(corrupt(
                &path,
                0,
                format!(
                    "header says segment {} from index {}, the name says segment {sequence} from index {first_index}",
                    header.sequence, header.first_index
                ),
            ));
        }
        let mut segment = SegmentFile { sequence, path: path.clone(), max_index: 0 };
        let mut offset = SEGMENT_HEADER_BYTES;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            match read_record(rest) {
                RecordRead::Record(record, len) => {
                    if let Record::Entries { entries, .. } = &record {
                        segment.max_index = segment.max_index.max(entries.last().map_or(0, |e| e.index));
                    }
                    replay.apply(record);
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
                                "record length runs past the end of the segment, but a valid record follows \
                                 at offset {}: the length field is damaged",
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
            report.torn_bytes_truncated += (bytes.len() - offset) as u64;
            report.repaired = true;
        }
        report.segments.push(segment);
    }
    Ok(report)
}

/// The offset (within `rest`) of a complete, checksum-valid record that starts after the first
/// byte of `rest`, if any: evidence that `rest` is damaged rather than torn. Most offsets are
/// rejected by their length field alone, so the scan is cheap.
fn valid_record_after(rest: &[u8]) -> Option<usize> {
    (1..rest.len()).find(|&at| matches!(read_record(&rest[at..]), RecordRead::Record(..)))
}

fn truncate_file(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = fs::OpenOptions::new().write(true).open(path).map_err(|e| io_error("cannot open", path, e))?;
    file.set_len(len).map_err(|e| io_error("cannot truncate", path, e))?;
    file.sync_all().map_err(|e| io_error("cannot fsync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use consensus_core::raft::EntryKind;

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(index, term, EntryKind::Normal, Bytes::from_static(b"x"))
    }

    fn batch(prev_term: u64, entries: &[(u64, u64)]) -> Record {
        Record::Entries { prev_term, entries: entries.iter().map(|&(i, t)| ent(i, t)).collect() }
    }

    fn snap(index: u64, term: u64) -> Option<Snapshot> {
        Some(Snapshot { index, term, ..Default::default() })
    }

    fn indexes(r: &Recovered) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn conflicting_batch_truncates_everything_from_its_first_index() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay.apply(batch(1, &[(2, 2)]));
        let r = replay.finish(None, Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn batch_after_a_gap_starts_over_and_matches_the_installed_snapshot() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1)]));
        replay.apply(batch(4, &[(11, 5), (12, 5)]));
        let r = replay.finish(snap(10, 4), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(11, 5), (12, 5)]);
    }

    #[test]
    fn entries_above_a_snapshot_the_log_does_not_match_are_dropped() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1), (4, 1)]));
        replay.apply(Record::HardState(HardState { term: 1, vote: 1, commit: 4 }));
        // The snapshot at 2 has term 2: the replayed log's entry 2 (term 1) does not match it.
        let r = replay.finish(snap(2, 2), Path::new("wal")).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(r.hard_state, HardState { term: 2, vote: 1, commit: 2 });
    }

    #[test]
    fn entries_above_a_matching_snapshot_are_kept_and_those_below_dropped() {
        let mut replay = Replay::default();
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 2), (4, 2)]));
        let r = replay.finish(snap(3, 2), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(4, 2)]);
    }

    #[test]
    fn snapshot_marker_resets_the_log_and_conf_history() {
        let mut replay = Replay::default();
        replay.apply(Record::ConfState { index: 0, conf_state: ConfState { voters: vec![1], ..Default::default() } });
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay.apply(Record::Snapshot { index: 2, term: 3 });
        replay.apply(batch(3, &[(3, 3)]));
        let r = replay.finish(snap(2, 3), Path::new("wal")).unwrap();
        assert_eq!(indexes(&r), vec![(3, 3)]);
        assert!(r.conf_history.is_empty());
    }

    #[test]
    fn conf_records_above_the_snapshot_are_kept_and_commit_never_exceeds_the_log() {
        let mut replay = Replay::default();
        replay.apply(Record::ConfState { index: 0, conf_state: ConfState { voters: vec![1], ..Default::default() } });
        replay.apply(batch(0, &[(1, 1), (2, 1), (3, 1)]));
        replay
            .apply(Record::ConfState { index: 3, conf_state: ConfState { voters: vec![1, 2], ..Default::default() } });
        replay.apply(Record::HardState(HardState { term: 1, vote: 1, commit: 9 }));
        let r = replay.finish(snap(2, 1), Path::new("wal")).unwrap();
        assert_eq!(r.conf_history.len(), 1);
        assert_eq!(r.conf_history[0].0, 3);
        assert_eq!(r.hard_state.commit, 3);
    }

    #[test]
    fn log_starting_past_one_without_a_snapshot_is_refused() {
        let mut replay = Replay::default();
        replay.apply(batch(2, &[(5, 2)]));
        assert!(matches!(replay.finish(None, Path::new("wal")), Err(StorageError::Corrupt { .. })));
    }
}
