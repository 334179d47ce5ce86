//! What Raft writes into the shared framing (docs/storage-format.md, "Raft records"): the WAL
//! record payloads and the snapshot body.

use bytes::Bytes;
use consensus_core::codec::{FrameReader, FrameWriter};
use consensus_core::raft::wire::{decode_conf_state, decode_hard_state, encode_conf_state, encode_hard_state};
use consensus_core::raft::{ConfState, Entry, EntryKind, HardState, Snapshot};

use crate::format::{encode_snapshot_file, for_each_batch, put_record, u32_at, u64_at, FormatError, ProtocolId};
use crate::wal::SnapshotFile;

pub const RECORD_ENTRIES: u8 = 1;
pub const RECORD_HARD_STATE: u8 = 2;
pub const RECORD_CONF_STATE: u8 = 3;
pub const RECORD_SNAPSHOT: u8 = 4;

/// Bytes an entry takes in an ENTRIES record besides its data: index, term, kind, data length.
pub const ENTRY_OVERHEAD_BYTES: usize = 8 + 8 + 1 + 4;

/// One decoded Raft WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A contiguous batch. `prev_term` is the term of the entry just before the first one (0 when
    /// unknown), so replay can check log matching at a batch that starts a buffer over.
    Entries {
        prev_term: u64,
        entries: Vec<Entry>,
    },
    HardState(HardState),
    /// The configuration in force from `index` on.
    ConfState {
        index: u64,
        conf_state: ConfState,
    },
    /// The log was reset to a snapshot installed from the leader at (index, term).
    Snapshot {
        index: u64,
        term: u64,
    },
}

impl Record {
    /// The highest log index the record wrote (0: none), for segment deletion.
    pub fn max_index(&self) -> u64 {
        match self {
            Record::Entries { entries, .. } => entries.last().map_or(0, |e| e.index),
            _ => 0,
        }
    }
}

/// Appends ENTRIES records for `entries`, splitting them so that no payload exceeds
/// `payload_bytes_max` (an entry larger than that on its own still gets a record of its own, up
/// to the format's bound).
pub fn put_entries(out: &mut Vec<u8>, prev_term: u64, entries: &[Entry], payload_bytes_max: usize) {
    let mut prev_term = prev_term;
    let entry_bytes = |entry: &Entry| ENTRY_OVERHEAD_BYTES + entry.data.len();
    for_each_batch(entries, 12, payload_bytes_max, entry_bytes, |batch, size| {
        let mut w = FrameWriter::unframed(size);
        w.put_u64(prev_term);
        w.put_count(batch.len());
        for entry in batch {
            w.put_u64(entry.index);
            w.put_u64(entry.term);
            w.put_u8(entry.kind as u8);
            w.put_bytes(&entry.data);
        }
        put_record(out, RECORD_ENTRIES, &w.finish());
        prev_term = batch.last().map_or(prev_term, |e| e.term);
    });
}

pub fn put_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    put_record(out, RECORD_HARD_STATE, &encode_hard_state(hs));
}

pub fn put_conf_state(out: &mut Vec<u8>, index: u64, conf_state: &ConfState) {
    let body = encode_conf_state(conf_state);
    let mut payload = Vec::with_capacity(8 + body.len());
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend_from_slice(&body);
    put_record(out, RECORD_CONF_STATE, &payload);
}

pub fn put_snapshot_marker(out: &mut Vec<u8>, index: u64, term: u64) {
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(&index.to_le_bytes());
    payload[8..].copy_from_slice(&term.to_le_bytes());
    put_record(out, RECORD_SNAPSHOT, &payload);
}

/// Decodes the payload of a record whose checksum holds.
pub fn decode_record(record_type: u8, payload: &[u8]) -> Result<Record, FormatError> {
    match record_type {
        RECORD_ENTRIES => decode_entries(payload),
        RECORD_HARD_STATE => Ok(Record::HardState(decode_hard_state(payload)?)),
        RECORD_CONF_STATE => {
            if payload.len() < 8 {
                return Err(FormatError::new("conf state record shorter than its index"));
            }
            let index = u64_at(payload, 0);
            let conf_state = decode_conf_state(&Bytes::copy_from_slice(&payload[8..]))?;
            Ok(Record::ConfState { index, conf_state })
        }
        RECORD_SNAPSHOT => {
            if payload.len() != 16 {
                return Err(FormatError::new(format!("snapshot marker of {} bytes, expected 16", payload.len())));
            }
            Ok(Record::Snapshot { index: u64_at(payload, 0), term: u64_at(payload, 8) })
        }
        other => Err(FormatError::new(format!("unknown record type {other}"))),
    }
}

fn decode_entries(payload: &[u8]) -> Result<Record, FormatError> {
    let payload = Bytes::copy_from_slice(payload);
    let mut r = FrameReader::unframed(&payload);
    let prev_term = r.get_u64()?;
    let count = r.get_count("entries.count", usize::MAX, ENTRY_OVERHEAD_BYTES)?;
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    for _ in 0..count {
        let index = r.get_u64()?;
        let term = r.get_u64()?;
        let kind = match r.get_u8()? {
            0 => EntryKind::Normal,
            1 => EntryKind::ConfChange,
            other => return Err(FormatError::new(format!("unknown entry kind {other}"))),
        };
        let data = r.get_bytes(usize::MAX)?;
        if let Some(last) = entries.last() {
            if index != last.index + 1 {
                return Err(FormatError::new(format!("entry {index} does not follow entry {}", last.index)));
            }
        }
        if index == 0 {
            return Err(FormatError::new("entry with index 0"));
        }
        entries.push(Entry { index, term, kind, data });
    }
    r.finish()?;
    if entries.is_empty() {
        return Err(FormatError::new("empty entries record"));
    }
    Ok(Record::Entries { prev_term, entries })
}

/// Snapshot body: index, term, conf state (length-prefixed), data (length-prefixed).
impl SnapshotFile for Snapshot {
    fn file_key(&self) -> (u64, u64) {
        (self.index, self.term)
    }

    fn encode_file(&self) -> Vec<u8> {
        let conf = encode_conf_state(&self.conf_state);
        let mut head = Vec::with_capacity(8 + 8 + 4 + conf.len() + 8);
        head.extend_from_slice(&self.index.to_le_bytes());
        head.extend_from_slice(&self.term.to_le_bytes());
        head.extend_from_slice(&(conf.len() as u32).to_le_bytes());
        head.extend_from_slice(&conf);
        head.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        encode_snapshot_file(ProtocolId::Raft, &head, &self.data)
    }
}

/// Decodes a snapshot body (the data is a slice of `body`, not a copy).
pub fn decode_snapshot_body(body: Bytes) -> Result<Snapshot, FormatError> {
    let bad = |reason: &str| FormatError::new(reason.to_string());
    if body.len() < 20 {
        return Err(bad("too short"));
    }
    let index = u64_at(&body, 0);
    let term = u64_at(&body, 8);
    let conf_len = u32_at(&body, 16) as usize;
    let conf_end =
        20usize.checked_add(conf_len).filter(|end| end + 8 <= body.len()).ok_or_else(|| bad("conf state"))?;
    let conf_state =
        decode_conf_state(&body.slice(20..conf_end)).map_err(|e| FormatError::new(format!("conf state: {e}")))?;
    let data_len = u64_at(&body, conf_end);
    if data_len != (body.len() - conf_end - 8) as u64 {
        return Err(bad("data length"));
    }
    if index == 0 {
        return Err(bad("index 0"));
    }
    Ok(Snapshot { index, term, conf_state, data: body.slice(conf_end + 8..) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_support::{assert_snapshot_file_round_trips_and_refuses_any_flipped_bit, read_all};
    use crate::format::RECORD_PAYLOAD_BYTES_MAX;

    fn ent(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry::new(index, term, EntryKind::Normal, Bytes::from_static(data))
    }

    #[test]
    fn every_record_type_round_trips() {
        let mut buf = Vec::new();
        let entries = vec![ent(5, 2, b"a"), Entry::new(6, 3, EntryKind::ConfChange, Bytes::from_static(b"cc"))];
        put_entries(&mut buf, 2, &entries, RECORD_PAYLOAD_BYTES_MAX);
        let hs = HardState { term: 3, vote: 2, commit: 5 };
        put_hard_state(&mut buf, &hs);
        let cs = ConfState { voters: vec![1, 2, 3], learners: vec![4], ..Default::default() };
        put_conf_state(&mut buf, 6, &cs);
        put_snapshot_marker(&mut buf, 9, 4);
        assert_eq!(
            read_all(&buf, decode_record),
            vec![
                Record::Entries { prev_term: 2, entries },
                Record::HardState(hs),
                Record::ConfState { index: 6, conf_state: cs },
                Record::Snapshot { index: 9, term: 4 },
            ]
        );
    }

    #[test]
    fn large_entry_batches_split_into_bounded_records() {
        let mut buf = Vec::new();
        let entries: Vec<Entry> = (1..=10).map(|i| ent(i, 1, b"0123456789")).collect();
        put_entries(&mut buf, 0, &entries, 12 + 2 * (ENTRY_OVERHEAD_BYTES + 10));
        let records = read_all(&buf, decode_record);
        assert_eq!(records.len(), 5);
        let Record::Entries { prev_term, entries: second } = &records[1] else { panic!("not entries") };
        assert_eq!((*prev_term, second[0].index), (1, 3));
    }

    #[test]
    fn snapshot_file_round_trips_and_rejects_any_flipped_bit() {
        let snapshot = Snapshot {
            index: 10,
            term: 3,
            conf_state: ConfState { voters: vec![1, 2], ..Default::default() },
            data: Bytes::from_static(b"state"),
        };
        assert_snapshot_file_round_trips_and_refuses_any_flipped_bit(
            snapshot.encode_file(),
            ProtocolId::Raft,
            &snapshot,
            decode_snapshot_body,
        );
    }
}
