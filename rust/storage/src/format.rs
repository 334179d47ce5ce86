//! The on-disk encodings (normative description: docs/storage-format.md). Every integer is fixed
//! little-endian. Decoding is total: any byte string ends in a value or a `FormatError`.

use bytes::Bytes;
use consensus_core::codec::{FrameReader, FrameWriter};
use consensus_core::raft::wire::{decode_conf_state, decode_hard_state, encode_conf_state, encode_hard_state};
use consensus_core::raft::{ConfState, Entry, EntryKind, HardState, Snapshot};

/// First bytes of every WAL segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"CWAL";
/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CSNP";
/// Version of the segment and snapshot layouts; a reader refuses any other.
pub const FORMAT_VERSION: u16 = 1;
/// magic (4) + version (2) + reserved (2) + sequence (8) + first index (8) + CRC32C (4).
pub const SEGMENT_HEADER_BYTES: usize = 28;
/// length (4) + type (1) before the payload.
pub const RECORD_HEADER_BYTES: usize = 5;
/// CRC32C (4) after the payload.
pub const RECORD_TRAILER_BYTES: usize = 4;
/// Bound on one record's payload. Larger entry batches are split over several records; a length
/// field above it is damage, not a record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;
/// magic (4) + version (2) + reserved (2) + body length (8).
pub const SNAPSHOT_HEADER_BYTES: usize = 16;

pub const RECORD_ENTRIES: u8 = 1;
pub const RECORD_HARD_STATE: u8 = 2;
pub const RECORD_CONF_STATE: u8 = 3;
pub const RECORD_SNAPSHOT: u8 = 4;

/// Bytes an entry takes in an ENTRIES record besides its data: index, term, kind, data length.
pub const ENTRY_OVERHEAD_BYTES: usize = 8 + 8 + 1 + 4;

/// Why a byte string is not a valid record, header or snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl FormatError {
    fn new(reason: impl Into<String>) -> Self {
        FormatError(reason.into())
    }
}

impl From<consensus_core::DecodeError> for FormatError {
    fn from(e: consensus_core::DecodeError) -> Self {
        FormatError(e.to_string())
    }
}

// ------------------------------------------------------------------------------- segment header

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub sequence: u64,
    /// The index the segment's log starts at (last index + 1 when it was created); informative.
    pub first_index: u64,
}

pub fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[..4].copy_from_slice(&SEGMENT_MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&header.sequence.to_le_bytes());
    out[16..24].copy_from_slice(&header.first_index.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a complete header (`bytes` holds at least [`SEGMENT_HEADER_BYTES`]).
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
    let bytes = bytes.get(..SEGMENT_HEADER_BYTES).ok_or_else(|| FormatError::new("segment header truncated"))?;
    if bytes[..4] != SEGMENT_MAGIC {
        return Err(FormatError::new(format!("bad segment magic {:02x?}", &bytes[..4])));
    }
    let stored = u32_at(bytes, 24);
    let computed = crc32c::crc32c(&bytes[..24]);
    if stored != computed {
        return Err(FormatError::new(format!(
            "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(FormatError::new(format!("unsupported segment format version {version}")));
    }
    Ok(SegmentHeader { sequence: u64_at(bytes, 8), first_index: u64_at(bytes, 16) })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

// ------------------------------------------------------------------------------- records

/// One decoded WAL record.
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

/// Appends one framed record (length, type, payload, CRC32C over type + payload) to `out`.
pub fn put_record(out: &mut Vec<u8>, record_type: u8, payload: &[u8]) {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "record payload above the format bound");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let start = out.len();
    out.push(record_type);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Appends ENTRIES records for `entries`, splitting them so that no payload exceeds
/// `payload_bytes_max` (an entry larger than that on its own still gets a record of its own, up
/// to [`RECORD_PAYLOAD_BYTES_MAX`]).
pub fn put_entries(out: &mut Vec<u8>, prev_term: u64, entries: &[Entry], payload_bytes_max: usize) {
    let mut prev_term = prev_term;
    let mut rest = entries;
    while !rest.is_empty() {
        let mut size = 12;
        let mut count = 0;
        for entry in rest {
            let entry_size = ENTRY_OVERHEAD_BYTES + entry.data.len();
            if count > 0 && size + entry_size > payload_bytes_max {
                break;
            }
            size += entry_size;
            count += 1;
        }
        let (batch, tail) = rest.split_at(count);
        let mut w = FrameWriter::unframed(size);
        w.put_u64(prev_term);
        w.put_count(batch.len());
        for entry in batch {
            w.put_u64(entry.index);
            w.put_u64(entry.term);
            w.put_u8(match entry.kind {
                EntryKind::Normal => 0,
                EntryKind::ConfChange => 1,
            });
            w.put_bytes(&entry.data);
        }
        put_record(out, RECORD_ENTRIES, &w.finish());
        prev_term = batch.last().map_or(prev_term, |e| e.term);
        rest = tail;
    }
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

/// What reading one record at the start of a buffer found.
#[derive(Debug)]
pub enum RecordRead {
    /// A valid record and the bytes it took.
    Record(Record, usize),
    /// The length field or the body reaches past the end of the buffer.
    Incomplete,
    /// A complete record that is not valid (bad checksum, unknown type, bad payload).
    Bad(FormatError),
}

/// Reads the record at the start of `buf`.
pub fn read_record(buf: &[u8]) -> RecordRead {
    if buf.len() < RECORD_HEADER_BYTES {
        return RecordRead::Incomplete;
    }
    let len = u32_at(buf, 0) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        // The writer never writes such a length, and a torn write leaves a prefix of what was
        // written (or zeros), never a larger length: this is damage, not a torn tail.
        return RecordRead::Bad(FormatError::new(format!("record length {len} above the bound")));
    }
    let total = RECORD_HEADER_BYTES + len + RECORD_TRAILER_BYTES;
    if buf.len() < total {
        return RecordRead::Incomplete;
    }
    let body = &buf[4..RECORD_HEADER_BYTES + len];
    let stored = u32_at(buf, RECORD_HEADER_BYTES + len);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return RecordRead::Bad(FormatError::new(format!(
            "record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    match decode_payload(body[0], &body[1..]) {
        Ok(record) => RecordRead::Record(record, total),
        Err(e) => RecordRead::Bad(e),
    }
}

fn decode_payload(record_type: u8, payload: &[u8]) -> Result<Record, FormatError> {
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

// ------------------------------------------------------------------------------- snapshot files

/// A whole snapshot file: header, body (index, term, conf state, data), CRC32C over everything
/// before it.
pub fn encode_snapshot_file(snapshot: &Snapshot) -> Vec<u8> {
    let conf = encode_conf_state(&snapshot.conf_state);
    let body_len = 8 + 8 + 4 + conf.len() + 8 + snapshot.data.len();
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body_len + 4);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&snapshot.index.to_le_bytes());
    out.extend_from_slice(&snapshot.term.to_le_bytes());
    out.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    out.extend_from_slice(&conf);
    out.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&snapshot.data);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a whole snapshot file; any damage is an error (a snapshot is never partly trusted).
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<Snapshot, (u64, FormatError)> {
    let at = |offset: usize, reason: String| (offset as u64, FormatError(reason));
    if bytes.len() < SNAPSHOT_HEADER_BYTES + 4 {
        return Err(at(0, format!("snapshot file of {} bytes is shorter than its header", bytes.len())));
    }
    if bytes[..4] != SNAPSHOT_MAGIC {
        return Err(at(0, format!("bad snapshot magic {:02x?}", &bytes[..4])));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(at(4, format!("unsupported snapshot format version {version}")));
    }
    let body_len = u64_at(bytes, 8);
    let expected = (SNAPSHOT_HEADER_BYTES as u64).saturating_add(body_len).saturating_add(4);
    if expected != bytes.len() as u64 {
        return Err(at(8, format!("snapshot header says {expected} bytes but the file has {}", bytes.len())));
    }
    let crc_at = bytes.len() - 4;
    let stored = u32_at(bytes, crc_at);
    let computed = crc32c::crc32c(&bytes[..crc_at]);
    if stored != computed {
        return Err(at(
            crc_at,
            format!("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let body = &bytes[SNAPSHOT_HEADER_BYTES..crc_at];
    let bad = |reason: &str| at(SNAPSHOT_HEADER_BYTES, format!("bad snapshot body: {reason}"));
    if body.len() < 20 {
        return Err(bad("too short"));
    }
    let index = u64_at(body, 0);
    let term = u64_at(body, 8);
    let conf_len = u32_at(body, 16) as usize;
    let conf_end =
        20usize.checked_add(conf_len).filter(|end| end + 8 <= body.len()).ok_or_else(|| bad("conf state"))?;
    let conf_state = decode_conf_state(&Bytes::copy_from_slice(&body[20..conf_end]))
        .map_err(|e| bad(&format!("conf state: {e}")))?;
    let data_len = u64_at(body, conf_end);
    if data_len != (body.len() - conf_end - 8) as u64 {
        return Err(bad("data length"));
    }
    let data = Bytes::copy_from_slice(&body[conf_end + 8..]);
    if index == 0 {
        return Err(bad("index 0"));
    }
    Ok(Snapshot { index, term, conf_state, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry::new(index, term, EntryKind::Normal, Bytes::from_static(data))
    }

    fn read_all(mut buf: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            match read_record(buf) {
                RecordRead::Record(r, n) => {
                    out.push(r);
                    buf = &buf[n..];
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        out
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
            read_all(&buf),
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
        let records = read_all(&buf);
        assert_eq!(records.len(), 5);
        let Record::Entries { prev_term, entries: second } = &records[1] else { panic!("not entries") };
        assert_eq!((*prev_term, second[0].index), (1, 3));
    }

    #[test]
    fn record_cut_short_is_incomplete_and_a_flipped_bit_is_bad() {
        let mut buf = Vec::new();
        put_hard_state(&mut buf, &HardState { term: 1, vote: 1, commit: 0 });
        assert!(matches!(read_record(&buf[..buf.len() - 1]), RecordRead::Incomplete));
        buf[7] ^= 0x10;
        assert!(matches!(read_record(&buf), RecordRead::Bad(_)));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader { sequence: 7, first_index: 42 };
        let mut bytes = encode_segment_header(&header);
        assert_eq!(decode_segment_header(&bytes), Ok(header));
        bytes[10] ^= 1;
        assert!(decode_segment_header(&bytes).is_err());
    }

    #[test]
    fn snapshot_file_round_trips_and_rejects_any_flipped_bit() {
        let snapshot = Snapshot {
            index: 10,
            term: 3,
            conf_state: ConfState { voters: vec![1, 2], ..Default::default() },
            data: Bytes::from_static(b"state"),
        };
        let bytes = encode_snapshot_file(&snapshot);
        assert_eq!(decode_snapshot_file(&bytes).unwrap(), snapshot);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            assert!(decode_snapshot_file(&damaged).is_err(), "flip at {at} accepted");
        }
        assert!(decode_snapshot_file(&bytes[..bytes.len() - 1]).is_err());
    }
}
