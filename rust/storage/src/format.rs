//! The framing every data directory shares, whatever protocol wrote it (normative description:
//! docs/storage-format.md): the segment header, records framed as (length, type, payload, CRC32C)
//! and the snapshot-file container. What a record's payload or a snapshot's body means is the
//! protocol's (`raft::records`, `paxos::records`). Every integer is fixed little-endian; decoding
//! is total: any byte string ends in a value or a `FormatError`.

/// First bytes of every WAL segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"CWAL";
/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CSNP";
/// Version of the segment and snapshot layouts; a reader refuses any other.
pub const FORMAT_VERSION: u16 = 1;
/// magic (4) + version (2) + protocol (1) + reserved (1) + sequence (8) + first key (8) + CRC32C (4).
pub const SEGMENT_HEADER_BYTES: usize = 28;
/// length (4) + type (1) before the payload.
pub const RECORD_HEADER_BYTES: usize = 5;
/// CRC32C (4) after the payload.
pub const RECORD_TRAILER_BYTES: usize = 4;
/// Bound on one record's payload. Larger batches are split over several records; a length field
/// above it is damage, not a record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;
/// magic (4) + version (2) + protocol (1) + reserved (1) + body length (8).
pub const SNAPSHOT_HEADER_BYTES: usize = 16;

/// Which protocol's records a segment or snapshot file holds (byte 6 of both headers: the
/// protocol's [`ProtocolId::id`]). A data directory belongs to one protocol; opening it as
/// another's is refused.
pub use consensus_core::ProtocolId;

/// Splits `items` into the batches of records whose payload, `header_bytes` plus each item's
/// `item_bytes`, stays within `payload_bytes_max` (an item larger than that on its own still gets
/// a batch of its own), and hands each batch and its payload size to `write`, in order.
pub fn for_each_batch<T>(
    items: &[T],
    header_bytes: usize,
    payload_bytes_max: usize,
    item_bytes: impl Fn(&T) -> usize,
    mut write: impl FnMut(&[T], usize),
) {
    let mut rest = items;
    while !rest.is_empty() {
        let mut size = header_bytes;
        let mut count = 0;
        for item in rest {
            let len = item_bytes(item);
            if count > 0 && size + len > payload_bytes_max {
                break;
            }
            size += len;
            count += 1;
        }
        let (batch, tail) = rest.split_at(count);
        write(batch, size);
        rest = tail;
    }
}

/// Why a byte string is not a valid record, header or snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl FormatError {
    pub fn new(reason: impl Into<String>) -> Self {
        FormatError(reason.into())
    }
}

impl From<consensus_core::DecodeError> for FormatError {
    fn from(e: consensus_core::DecodeError) -> Self {
        FormatError(e.to_string())
    }
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn protocol_at(bytes: &[u8], at: usize) -> Result<ProtocolId, FormatError> {
    ProtocolId::from_id(bytes[at]).ok_or_else(|| FormatError::new(format!("unknown protocol byte {}", bytes[at])))
}

// ------------------------------------------------------------------------------- segment header

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub protocol: ProtocolId,
    pub sequence: u64,
    /// The log index (Raft) or slot (Paxos) the segment starts at when it was created; informative.
    pub first_index: u64,
}

pub fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[..4].copy_from_slice(&SEGMENT_MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[6] = header.protocol.id();
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
    Ok(SegmentHeader { protocol: protocol_at(bytes, 6)?, sequence: u64_at(bytes, 8), first_index: u64_at(bytes, 16) })
}

// ------------------------------------------------------------------------------- records

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

/// What reading one record at the start of a buffer found.
#[derive(Debug)]
pub enum RecordRead<'a> {
    /// A record whose checksum holds: its type, its payload and the bytes it took.
    Record { record_type: u8, payload: &'a [u8], len: usize },
    /// The length field or the body reaches past the end of the buffer.
    Incomplete,
    /// A complete record that is not valid (bad checksum, length above the bound).
    Bad(FormatError),
}

/// Reads the record at the start of `buf` (its payload is decoded by the protocol).
pub fn read_record(buf: &[u8]) -> RecordRead<'_> {
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
    RecordRead::Record { record_type: body[0], payload: &body[1..], len: total }
}

// ------------------------------------------------------------------------------- snapshot files

/// A whole snapshot file: header, body (`head` then `data`: the protocol's layout), CRC32C over
/// everything before it. The data is copied once, into the file image.
pub fn encode_snapshot_file(protocol: ProtocolId, head: &[u8], data: &[u8]) -> Vec<u8> {
    let body_len = head.len() + data.len();
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body_len + 4);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[protocol.id(), 0]);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a whole snapshot file and returns its protocol and body; any damage is an error with the
/// offset it was found at (a snapshot is never partly trusted).
pub fn open_snapshot_file(bytes: &[u8]) -> Result<(ProtocolId, &[u8]), (u64, FormatError)> {
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
    let protocol = protocol_at(bytes, 6).map_err(|e| at(6, e.0))?;
    Ok((protocol, &bytes[SNAPSHOT_HEADER_BYTES..crc_at]))
}

/// Helpers for the protocols' record and snapshot tests.
#[cfg(test)]
pub(crate) mod test_support {
    use bytes::Bytes;

    use super::{open_snapshot_file, read_record, FormatError, ProtocolId, RecordRead};

    /// Every record of `buf`, decoded by `decode`; anything but whole valid records panics.
    pub fn read_all<R>(mut buf: &[u8], decode: impl Fn(u8, &[u8]) -> Result<R, FormatError>) -> Vec<R> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            match read_record(buf) {
                RecordRead::Record { record_type, payload, len } => {
                    out.push(decode(record_type, payload).expect("a valid payload"));
                    buf = &buf[len..];
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    /// Checks that the snapshot file `bytes` of `protocol` decodes (by `decode_body`) to
    /// `expected`, and that flipping any one bit of it is refused.
    pub fn assert_snapshot_file_round_trips_and_refuses_any_flipped_bit<T: PartialEq + std::fmt::Debug>(
        bytes: Vec<u8>,
        protocol: ProtocolId,
        expected: &T,
        decode_body: impl Fn(Bytes) -> Result<T, FormatError>,
    ) {
        let decode = |bytes: Bytes| -> Result<T, FormatError> {
            let (found, body) = open_snapshot_file(&bytes).map_err(|(_, e)| e)?;
            assert_eq!(found, protocol);
            decode_body(bytes.slice_ref(body))
        };
        assert_eq!(&decode(Bytes::from(bytes.clone())).unwrap(), expected);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            assert!(decode(Bytes::from(damaged)).is_err(), "flip at {at} accepted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_cut_short_is_incomplete_and_a_flipped_bit_is_bad() {
        let mut buf = Vec::new();
        put_record(&mut buf, 7, b"payload");
        match read_record(&buf) {
            RecordRead::Record { record_type, payload, len } => {
                assert_eq!((record_type, payload, len), (7, &b"payload"[..], buf.len()))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(read_record(&buf[..buf.len() - 1]), RecordRead::Incomplete));
        buf[7] ^= 0x10;
        assert!(matches!(read_record(&buf), RecordRead::Bad(_)));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        for protocol in [ProtocolId::Raft, ProtocolId::Paxos] {
            let header = SegmentHeader { protocol, sequence: 7, first_index: 42 };
            let mut bytes = encode_segment_header(&header);
            assert_eq!(decode_segment_header(&bytes), Ok(header));
            bytes[10] ^= 1;
            assert!(decode_segment_header(&bytes).is_err());
        }
    }

    #[test]
    fn snapshot_container_round_trips_and_rejects_any_flipped_bit() {
        let bytes = encode_snapshot_file(ProtocolId::Paxos, b"head", b"data");
        assert_eq!(open_snapshot_file(&bytes).unwrap(), (ProtocolId::Paxos, &b"headdata"[..]));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            assert!(open_snapshot_file(&damaged).is_err(), "flip at {at} accepted");
        }
        assert!(open_snapshot_file(&bytes[..bytes.len() - 1]).is_err());
    }
}
