//! FileStorage against a real directory: what survives a reopen, what a torn tail recovers, and
//! what damage is refused.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use consensus_core::raft::storage::Storage;
use consensus_core::raft::{ConfState, Entry, EntryKind, HardState, Ready, Snapshot};
use consensus_core::StorageError;
use consensus_storage::{DurableStorage, FileStorage, FsyncPolicy, Options};

mod common;
use common::{flip_bit, segments, TempDir};

fn ent(index: u64, term: u64) -> Entry {
    Entry::new(index, term, EntryKind::Normal, Bytes::from(format!("entry-{index}-{term}")))
}

fn ready(entries: Vec<Entry>, hard_state: Option<HardState>) -> Ready {
    Ready { entries, hard_state, must_sync: true, ..Default::default() }
}

fn open(dir: &Path) -> Result<FileStorage, StorageError> {
    FileStorage::open(dir, Options::default())
}

fn small_segments() -> Options {
    Options { segment_bytes: 1024, ..Options::default() }
}

fn log_of(storage: &FileStorage) -> Vec<(u64, u64)> {
    let mem = storage.mem();
    let (first, last) = (mem.first_index(), mem.last_index());
    mem.entries(first, last + 1, u64::MAX).unwrap().iter().map(|e| (e.index, e.term)).collect()
}

/// The newest segment holding more than the header records an open writes.
fn segment_with_entries(dir: &Path) -> PathBuf {
    segments(dir).into_iter().rev().find(|p| fs::metadata(p).unwrap().len() > 200).expect("a segment with entries")
}

fn write_three_batches(dir: &Path) {
    let mut s = open(dir).unwrap();
    s.persist(&ready(vec![ent(1, 1), ent(2, 1)], Some(HardState { term: 1, vote: 1, commit: 0 }))).unwrap();
    s.persist(&ready(vec![ent(3, 1)], Some(HardState { term: 1, vote: 1, commit: 2 }))).unwrap();
    s.persist(&ready(vec![ent(4, 1)], None)).unwrap();
    s.close().unwrap();
}

#[test]
fn entries_hard_state_and_conf_state_survive_reopen() {
    let dir = TempDir::new("reopen");
    {
        let mut s = open(&dir.0).unwrap();
        s.set_conf_state(0, ConfState { voters: vec![1, 2, 3], ..Default::default() }).unwrap();
        s.persist(&ready(vec![ent(1, 1), ent(2, 1), ent(3, 2)], Some(HardState { term: 2, vote: 3, commit: 2 })))
            .unwrap();
        s.set_conf_state(3, ConfState { voters: vec![1, 2], ..Default::default() }).unwrap();
        s.close().unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(log_of(&s), vec![(1, 1), (2, 1), (3, 2)]);
    assert_eq!(s.mem().rl().hard_state(), HardState { term: 2, vote: 3, commit: 2 });
    assert_eq!(s.mem().initial_state().conf_state.voters, vec![1, 2]);
    // The conf history is restored too: a compaction at 2 records the configuration in force there.
    drop(s);
    let mut s = open(&dir.0).unwrap();
    s.compact(2, Bytes::from_static(b"app")).unwrap();
    assert_eq!(s.mem().snapshot().conf_state.voters, vec![1, 2, 3]);
    assert_eq!(s.mem().rl().conf_state().voters, vec![1, 2]);
}

#[test]
fn case_3_non_contiguous_append_is_refused_before_anything_is_written_and_reopens() {
    let dir = TempDir::new("gap");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![ent(1, 1)], Some(HardState { term: 1, vote: 1, commit: 0 }))).unwrap();
        let gap = ready(vec![ent(2, 1), ent(4, 1)], None);
        assert!(matches!(s.persist(&gap), Err(StorageError::Other(_))));
        assert!(matches!(s.append(&[ent(2, 1), ent(2, 1)]), Err(StorageError::Other(_))));
        assert_eq!(log_of(&s), vec![(1, 1)]);
        s.close().unwrap();
    }
    let s = open(&dir.0).expect("the refused appends left a WAL that reopens");
    assert_eq!(log_of(&s), vec![(1, 1)]);
}

#[test]
fn conflicting_append_survives_reopen_as_the_truncated_log() {
    let dir = TempDir::new("conflict");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![ent(1, 1), ent(2, 1), ent(3, 1)], None)).unwrap();
        s.persist(&ready(vec![ent(2, 2)], None)).unwrap();
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(log_of(&s), vec![(1, 1), (2, 2)]);
}

#[test]
fn tail_cut_mid_record_is_truncated_and_earlier_records_recovered() {
    let dir = TempDir::new("torn");
    write_three_batches(&dir.0);
    let segment = segment_with_entries(&dir.0);
    let len = fs::metadata(&segment).unwrap().len();
    fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 7).unwrap();
    let s = open(&dir.0).unwrap();
    assert_eq!(log_of(&s), vec![(1, 1), (2, 1), (3, 1)]);
    assert!(s.stats().torn_bytes_truncated > 0);
    assert_eq!(s.mem().rl().hard_state().commit, 2);
}

#[test]
fn zero_filled_tail_is_truncated() {
    let dir = TempDir::new("zeros");
    write_three_batches(&dir.0);
    let segment = segment_with_entries(&dir.0);
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&segment, &bytes).unwrap();
    let s = open(&dir.0).unwrap();
    assert_eq!(log_of(&s).len(), 4);
    assert_eq!(s.stats().torn_bytes_truncated, 4096);
    assert_eq!(fs::metadata(&segment).unwrap().len() as usize, bytes.len() - 4096);
}

#[test]
fn flipped_bit_in_a_middle_record_is_refused() {
    let dir = TempDir::new("flip-middle");
    write_three_batches(&dir.0);
    let segment = segment_with_entries(&dir.0);
    // Inside the first ENTRIES record, well past the header records.
    let bytes = fs::read(&segment).unwrap();
    let at = bytes.windows(9).position(|w| w == b"entry-1-1").unwrap();
    flip_bit(&segment, at + 3);
    match open(&dir.0) {
        Err(StorageError::Corrupt { file, .. }) => assert!(file.ends_with(".wal")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn flipped_bit_in_the_last_complete_record_is_refused() {
    let dir = TempDir::new("flip-last");
    write_three_batches(&dir.0);
    let segment = segment_with_entries(&dir.0);
    let len = fs::metadata(&segment).unwrap().len() as usize;
    flip_bit(&segment, len - 6);
    assert!(matches!(open(&dir.0), Err(StorageError::Corrupt { .. })));
}

#[test]
fn damaged_segment_header_is_refused() {
    let dir = TempDir::new("header");
    write_three_batches(&dir.0);
    // Damage the header of the first segment (not the last one).
    let first = segments(&dir.0)[0].clone();
    flip_bit(&first, 10);
    match open(&dir.0) {
        Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_header_of_the_last_segment_is_refused_but_a_short_one_is_torn() {
    let dir = TempDir::new("last-header");
    write_three_batches(&dir.0);
    let last = segments(&dir.0).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..10]).unwrap();
    assert!(open(&dir.0).is_ok(), "a last segment shorter than its header is a torn creation");
    let last = segments(&dir.0).pop().unwrap();
    flip_bit(&last, 2);
    assert!(matches!(open(&dir.0), Err(StorageError::Corrupt { .. })));
}

#[test]
fn damaged_snapshot_file_is_refused() {
    let dir = TempDir::new("snapshot");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![ent(1, 1), ent(2, 1)], Some(HardState { term: 1, vote: 1, commit: 2 }))).unwrap();
        s.compact(2, Bytes::from_static(b"application state")).unwrap();
    }
    let snap = fs::read_dir(dir.0.join("snap")).unwrap().next().unwrap().unwrap().path();
    flip_bit(&snap, 40);
    match open(&dir.0) {
        Err(StorageError::Corrupt { file, .. }) => assert!(file.ends_with(".snap")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn segments_roll_over_and_compaction_deletes_covered_ones() {
    let dir = TempDir::new("rollover");
    let mut s = FileStorage::open(&dir.0, small_segments()).unwrap();
    for i in 1..=60 {
        s.persist(&ready(vec![ent(i, 1)], Some(HardState { term: 1, vote: 1, commit: i }))).unwrap();
    }
    let before = segments(&dir.0).len();
    assert!(before > 3, "expected several segments, got {before}");
    assert_eq!(s.stats().segments, before);
    s.compact(50, Bytes::from_static(b"state at 50")).unwrap();
    let after = segments(&dir.0).len();
    assert!(after < before, "compaction kept all {before} segments");
    s.close().unwrap();
    let s = FileStorage::open(&dir.0, small_segments()).unwrap();
    assert_eq!(s.mem().first_index(), 51);
    assert_eq!(s.mem().last_index(), 60);
    assert_eq!(s.mem().snapshot().data, Bytes::from_static(b"state at 50"));
    assert_eq!(s.mem().rl().hard_state().commit, 60);
}

#[test]
fn only_the_newest_two_snapshots_are_kept() {
    let dir = TempDir::new("prune");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready((1..=5).map(|i| ent(i, 1)).collect(), Some(HardState { term: 1, vote: 1, commit: 5 }))).unwrap();
    for i in 1..=4 {
        s.compact(i, Bytes::new()).unwrap();
    }
    let names: Vec<String> =
        fs::read_dir(dir.0.join("snap")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn installed_snapshot_and_later_entries_survive_reopen() {
    let dir = TempDir::new("install");
    {
        let mut s = open(&dir.0).unwrap();
        s.persist(&ready(vec![ent(1, 1), ent(2, 1), ent(3, 1)], Some(HardState { term: 1, vote: 1, commit: 1 })))
            .unwrap();
        let snapshot = Snapshot {
            index: 10,
            term: 3,
            conf_state: ConfState { voters: vec![1, 2, 3], ..Default::default() },
            data: Bytes::from_static(b"leader state"),
        };
        let rd = Ready {
            snapshot: Some(snapshot),
            entries: vec![ent(11, 3)],
            hard_state: Some(HardState { term: 3, vote: 0, commit: 10 }),
            must_sync: true,
            ..Default::default()
        };
        s.persist(&rd).unwrap();
        s.persist(&ready(vec![ent(12, 3)], None)).unwrap();
        // The installed snapshot reset the log: only the fresh segment remains.
        assert_eq!(segments(&dir.0).len(), 1);
    }
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().snapshot().index, 10);
    assert_eq!(log_of(&s), vec![(11, 3), (12, 3)]);
    assert_eq!(s.mem().initial_state().conf_state.voters, vec![1, 2, 3]);
    assert_eq!(s.mem().rl().hard_state(), HardState { term: 3, vote: 0, commit: 10 });
}

#[test]
fn injected_sync_failure_poisons_every_later_write() {
    let dir = TempDir::new("poison");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready(vec![ent(1, 1)], Some(HardState { term: 1, vote: 1, commit: 0 }))).unwrap();
    s.inject_sync_failure();
    assert!(matches!(s.persist(&ready(vec![ent(2, 1)], None)), Err(StorageError::Io(_))));
    // The failed write never reached the in-memory log the node reads.
    assert_eq!(s.mem().last_index(), 1);
    assert!(matches!(s.persist(&ready(vec![ent(2, 1)], None)), Err(StorageError::Poisoned(_))));
    assert!(matches!(s.set_hard_state(HardState { term: 2, vote: 0, commit: 0 }), Err(StorageError::Poisoned(_))));
    assert!(matches!(s.sync(), Err(StorageError::Poisoned(_))));
}

#[test]
fn second_open_of_a_locked_directory_is_refused() {
    let dir = TempDir::new("lock");
    let mut first = open(&dir.0).unwrap();
    assert!(matches!(open(&dir.0), Err(StorageError::Io(_))));
    first.close().unwrap();
    assert!(open(&dir.0).is_ok());
}

#[test]
fn batch_policy_syncs_term_changes_at_once() {
    let dir = TempDir::new("batch");
    let options = Options {
        fsync: FsyncPolicy::Batch,
        batch_interval: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let mut s = FileStorage::open(&dir.0, options).unwrap();
    let base = s.stats().fsyncs;
    s.persist(&ready(vec![ent(1, 1)], None)).unwrap();
    assert_eq!(s.stats().fsyncs, base, "an entry-only write waits for the batch interval");
    s.persist(&ready(vec![], Some(HardState { term: 2, vote: 1, commit: 0 }))).unwrap();
    assert_eq!(s.stats().fsyncs, base + 1, "a new term or vote is synced at once");
}

#[test]
fn never_policy_does_not_fsync_the_wal() {
    let dir = TempDir::new("never");
    let options = Options { fsync: FsyncPolicy::Never, ..Options::default() };
    let mut s = FileStorage::open(&dir.0, options).unwrap();
    let base = s.stats().fsyncs;
    s.persist(&ready(vec![ent(1, 1)], Some(HardState { term: 1, vote: 1, commit: 0 }))).unwrap();
    assert_eq!(s.stats().fsyncs, base);
    s.close().unwrap();
    assert_eq!(log_of(&open(&dir.0).unwrap()), vec![(1, 1)]);
}

#[test]
fn unreadable_path_is_an_error_not_a_panic() {
    let dir = TempDir::new("file-not-dir");
    fs::write(&dir.0, b"not a directory").unwrap();
    assert!(open(&dir.0).is_err());
    let _ = fs::remove_file(&dir.0);
}

#[test]
fn compaction_split_in_steps_lets_writes_through_while_the_file_is_written() {
    let dir = TempDir::new("split");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready((1..=5).map(|i| ent(i, 1)).collect(), Some(HardState { term: 1, vote: 1, commit: 5 }))).unwrap();
    let snapshot = s.prepare_compaction(4, Bytes::from_static(b"state at 4")).unwrap();
    let written = s.snapshot_writer().write(&snapshot);
    // Readies persisted between the steps are kept.
    s.persist(&ready(vec![ent(6, 1)], Some(HardState { term: 1, vote: 1, commit: 6 }))).unwrap();
    s.finish_compaction(snapshot, written).unwrap();
    assert_eq!(s.mem().first_index(), 5);
    assert_eq!(log_of(&s), vec![(5, 1), (6, 1)]);
    s.close().unwrap();
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().snapshot().data, Bytes::from_static(b"state at 4"));
    assert_eq!(log_of(&s), vec![(5, 1), (6, 1)]);
}

#[test]
fn compaction_overtaken_by_an_installed_snapshot_is_superseded_not_applied() {
    let dir = TempDir::new("superseded");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready((1..=5).map(|i| ent(i, 1)).collect(), Some(HardState { term: 1, vote: 1, commit: 5 }))).unwrap();
    let snapshot = s.prepare_compaction(3, Bytes::from_static(b"old")).unwrap();
    let written = s.snapshot_writer().write(&snapshot);
    let newer = Snapshot { index: 20, term: 2, conf_state: ConfState::default(), data: Bytes::from_static(b"new") };
    let rd = Ready {
        snapshot: Some(newer),
        hard_state: Some(HardState { term: 2, vote: 0, commit: 20 }),
        must_sync: true,
        ..Default::default()
    };
    s.persist(&rd).unwrap();
    s.finish_compaction(snapshot, written).unwrap();
    assert_eq!(s.mem().snapshot().index, 20);
    assert_eq!(s.mem().snapshot().data, Bytes::from_static(b"new"));
    drop(s);
    let s = open(&dir.0).unwrap();
    assert_eq!(s.mem().snapshot().index, 20, "the newest snapshot file wins on reopen");
}

fn five_synced_entries(dir: &Path) -> PathBuf {
    let mut s = open(dir).unwrap();
    for i in 1..=5 {
        s.persist(&ready(vec![ent(i, 1)], Some(HardState { term: 1, vote: 1, commit: i - 1 }))).unwrap();
    }
    s.close().unwrap();
    segments(dir).last().unwrap().clone()
}

#[test]
fn a_damaged_length_above_the_bound_is_refused_not_truncated_as_torn() {
    let dir = TempDir::new("length-above-bound");
    let last = five_synced_entries(&dir.0);
    let mut bytes = fs::read(&last).unwrap();
    let first_record = consensus_storage::format::SEGMENT_HEADER_BYTES;
    bytes[first_record + 3] ^= 0x80; // the top bit of the first record's length
    fs::write(&last, &bytes).unwrap();
    assert!(matches!(open(&dir.0), Err(StorageError::Corrupt { .. })));
}

#[test]
fn a_damaged_length_running_past_the_end_is_refused_when_valid_records_follow() {
    let dir = TempDir::new("length-past-end");
    let last = five_synced_entries(&dir.0);
    let mut bytes = fs::read(&last).unwrap();
    let first_record = consensus_storage::format::SEGMENT_HEADER_BYTES;
    let claimed = (bytes.len() as u32).to_le_bytes(); // in bounds, but past the end of the file
    bytes[first_record..first_record + 4].copy_from_slice(&claimed);
    fs::write(&last, &bytes).unwrap();
    assert!(matches!(open(&dir.0), Err(StorageError::Corrupt { .. })));
}

#[test]
fn batch_policy_syncs_a_ready_that_installs_a_snapshot_entries_included() {
    let dir = TempDir::new("batch-snapshot");
    let options = Options {
        fsync: FsyncPolicy::Batch,
        batch_interval: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let mut s = FileStorage::open(&dir.0, options).unwrap();
    s.persist(&ready(vec![], Some(HardState { term: 5, vote: 2, commit: 0 }))).unwrap();
    let snapshot = Snapshot {
        index: 10,
        term: 5,
        conf_state: ConfState { voters: vec![1, 2, 3], ..Default::default() },
        data: Bytes::new(),
    };
    let rd = Ready {
        snapshot: Some(snapshot),
        entries: vec![ent(11, 5)],
        hard_state: Some(HardState { term: 5, vote: 2, commit: 10 }),
        must_sync: true,
        ..Default::default()
    };
    s.persist(&rd).unwrap();
    assert!(!s.has_unsynced(), "entries persisted with an installed snapshot were left unsynced");
}

#[test]
fn rollover_syncs_the_outgoing_segment_under_every_policy() {
    let dir = TempDir::new("never-roll");
    let options = Options { fsync: FsyncPolicy::Never, segment_bytes: 1024, ..Options::default() };
    let mut s = FileStorage::open(&dir.0, options).unwrap();
    let before = s.stats().fsyncs;
    for i in 1..=60 {
        s.persist(&ready(vec![ent(i, 1)], None)).unwrap();
    }
    let rolled = segments(&dir.0).len() as u64 - 1;
    // Each roll fsyncs the outgoing segment, the new one and the directory.
    assert!(s.stats().fsyncs - before >= 3 * rolled, "{} fsyncs for {rolled} rolls", s.stats().fsyncs - before);
}

#[test]
fn two_writers_of_the_same_snapshot_never_share_a_temp_file() {
    let dir = TempDir::new("two-writers");
    let mut s = open(&dir.0).unwrap();
    s.persist(&ready((1..=3).map(|i| ent(i, 1)).collect(), Some(HardState { term: 1, vote: 1, commit: 3 }))).unwrap();
    let a = s.prepare_compaction(2, Bytes::from_static(b"a")).unwrap();
    let b = s.prepare_compaction(2, Bytes::from_static(b"a")).unwrap();
    let (wa, wb) = (s.snapshot_writer(), s.snapshot_writer());
    let (ra, rb) = (wa.write(&a), wb.write(&b));
    assert!(ra.result.is_ok() && rb.result.is_ok());
    s.finish_compaction(a, ra).unwrap();
    s.finish_compaction(b, rb).unwrap();
    drop(s);
    assert_eq!(open(&dir.0).unwrap().mem().snapshot().index, 2);
}

/// storage-format.md, "Replay (open)": the newest snapshot is checked before the segments are read,
/// so a refused open leaves the directory as it was (a torn tail is not cut first).
#[test]
fn a_damaged_snapshot_is_refused_before_anything_is_truncated() {
    let dir = TempDir::new("review-open-order");
    {
        let mut s = FileStorage::open(&dir.0, Options::default()).unwrap();
        let entries: Vec<Entry> =
            (1..=3).map(|i| Entry::new(i, 1, EntryKind::Normal, Bytes::from(format!("e{i}")))).collect();
        s.persist(&Ready {
            entries,
            hard_state: Some(HardState { term: 1, vote: 1, commit: 3 }),
            must_sync: true,
            ..Default::default()
        })
        .unwrap();
        s.compact(2, Bytes::from_static(b"app state")).unwrap();
        s.close().unwrap();
    }
    // A torn write at the end of the last segment...
    let last = segments(&dir.0).pop().unwrap();
    fs::OpenOptions::new().append(true).open(&last).unwrap().write_all(&[40, 0, 0, 0, 1, 9, 9]).unwrap();
    let torn_len = fs::metadata(&last).unwrap().len();
    // ...and a damaged (newest) snapshot.
    let snap = fs::read_dir(dir.0.join("snap")).unwrap().next().unwrap().unwrap().path();
    flip_bit(&snap, 30);

    assert!(matches!(FileStorage::open(&dir.0, Options::default()), Err(StorageError::Corrupt { .. })));
    assert_eq!(fs::metadata(&last).unwrap().len(), torn_len, "a refused open modified the WAL");
}
