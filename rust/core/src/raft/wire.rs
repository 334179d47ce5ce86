//! The binary encoding of Raft's types, specified normatively in `docs/wire-format.md`.
//!
//! - A [`Message`] travels as one frame of protocol [`PROTOCOL_RAFT`] whose message-type byte is
//!   the [`MessageType`] value. Every message type has the same payload layout (every field, always
//!   present), so the type byte selects meaning, never layout, and every message round-trips exactly.
//! - A [`ConfChange`] or [`ConfState`] on its own (inside the data of a `ConfChange` entry, or in a
//!   storage record) is a *record*: a format version byte, a record kind byte and the fields. It has
//!   no CRC because it always sits inside something checksummed.
//! - A [`HardState`] record is exactly 24 bytes: term, vote, commit.
//!
//! All integers are fixed-width little-endian. Decoding is total and canonical: any input either
//! fails with a [`DecodeError`] or decodes to a value whose encoding is byte-for-byte the input.

use bytes::Bytes;

use crate::codec::{FrameReader, FrameWriter, MIN_FRAME_BYTES, PROTOCOL_RAFT};
use crate::error::DecodeError;
use crate::raft::message::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageType, Snapshot};

// `decode` and the `Message` methods `encode`, `encoded_len`, `decode`.
crate::message_wire_api!(Message);

/// Most entries one message may carry. Senders must split larger batches (the core's byte-based
/// `max_size_per_msg` alone does not bound the count of empty entries).
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1 << 20;
/// Most ids in any one list of a conf state or conf change.
pub const MAX_IDS_PER_CONF: usize = 4096;
/// Most bytes of a message's `context` (ReadIndex tokens, leadership-transfer markers).
pub const MAX_CONTEXT_BYTES: usize = 1 << 20;

/// Version byte that starts every conf change and conf state record.
pub const RECORD_VERSION: u8 = 1;
/// Record kind byte that follows the version.
pub const RECORD_KIND_CONF_CHANGE: u8 = 1;
pub const RECORD_KIND_CONF_STATE: u8 = 2;
/// Size of an encoded hard state.
pub const HARD_STATE_BYTES: usize = 24;

/// Fixed part of a message payload: from, to, term, log_term, index, commit, reject_hint (7 x u64),
/// reject (u8), context length (u32), entry count (u32), snapshot presence (u8).
const MESSAGE_FIXED_BYTES: usize = 7 * 8 + 1 + 4 + 4 + 1;
/// Fixed part of an entry: index, term (2 x u64), kind (u8), data length (u32).
const ENTRY_FIXED_BYTES: usize = 8 + 8 + 1 + 4;
/// Fixed part of a snapshot, conf state excluded: index, term (2 x u64), data length (u32).
const SNAPSHOT_FIXED_BYTES: usize = 8 + 8 + 4;
/// Fixed part of a conf state body: four list counts (4 x u32) and auto_leave (u8).
const CONF_STATE_FIXED_BYTES: usize = 4 * 4 + 1;
/// Fixed part of a conf change body: four list counts.
const CONF_CHANGE_FIXED_BYTES: usize = 4 * 4;
/// Version and kind bytes in front of a record.
const RECORD_PREFIX_BYTES: usize = 2;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// The exact size of `encode(msg)`, computed without encoding.
pub fn encoded_len(msg: &Message) -> usize {
    MIN_FRAME_BYTES + payload_len(msg)
}

fn payload_len(msg: &Message) -> usize {
    let entries: usize = msg.entries.iter().map(entry_len).sum();
    let snapshot = msg.snapshot.as_ref().map_or(0, snapshot_len);
    MESSAGE_FIXED_BYTES + msg.context.len() + entries + snapshot
}

#[inline]
fn entry_len(entry: &Entry) -> usize {
    ENTRY_FIXED_BYTES + entry.data.len()
}

fn snapshot_len(snapshot: &Snapshot) -> usize {
    SNAPSHOT_FIXED_BYTES + conf_state_body_len(&snapshot.conf_state) + snapshot.data.len()
}

fn conf_state_body_len(cs: &ConfState) -> usize {
    let ids = cs.voters.len() + cs.learners.len() + cs.voters_outgoing.len() + cs.learners_next.len();
    CONF_STATE_FIXED_BYTES + 8 * ids
}

fn conf_change_body_len(cc: &ConfChange) -> usize {
    let ids = cc.add_voters.len() + cc.remove_voters.len() + cc.add_learners.len() + cc.remove_learners.len();
    CONF_CHANGE_FIXED_BYTES + 8 * ids
}

/// Encodes `msg` as one frame, in a single allocation of exactly [`encoded_len`] bytes.
///
/// The caller keeps messages within the wire limits ([`MAX_ENTRIES_PER_MESSAGE`],
/// [`MAX_IDS_PER_CONF`], [`MAX_CONTEXT_BYTES`], [`MAX_FRAME_BYTES`]); a message beyond them encodes,
/// but its receiver rejects it.
pub fn encode(msg: &Message) -> Bytes {
    let payload_len = payload_len(msg);
    let mut w = FrameWriter::message(PROTOCOL_RAFT, msg.msg_type as u8, msg.from, msg.to, payload_len);
    w.put_u64(msg.term);
    w.put_u64(msg.log_term);
    w.put_u64(msg.index);
    w.put_u64(msg.commit);
    w.put_u64(msg.reject_hint);
    w.put_bool(msg.reject);
    w.put_bytes(&msg.context);
    w.put_list(&msg.entries, put_entry);
    w.put_option(msg.snapshot.as_ref(), put_snapshot);
    w.finish()
}

/// Decodes one frame, rejecting frames larger than `max_frame_bytes`.
pub fn decode_with_limit(frame: &Bytes, max_frame_bytes: usize) -> Result<Message, DecodeError> {
    let (msg_type, from, to, mut r) =
        FrameReader::open_message(frame, PROTOCOL_RAFT, max_frame_bytes, MessageType::from_u8)?;
    let term = r.get_u64()?;
    let log_term = r.get_u64()?;
    let index = r.get_u64()?;
    let commit = r.get_u64()?;
    let reject_hint = r.get_u64()?;
    let reject = r.get_bool("message.reject")?;
    let context = r.get_bytes(MAX_CONTEXT_BYTES)?;
    let entries = r.get_list("message.entries", MAX_ENTRIES_PER_MESSAGE, ENTRY_FIXED_BYTES, get_entry)?;
    let snapshot = r.get_option("message.snapshot_present", get_snapshot)?;
    r.finish()?;
    Ok(Message { msg_type, from, to, term, log_term, index, commit, entries, reject, reject_hint, context, snapshot })
}

#[inline]
fn put_entry(w: &mut FrameWriter, entry: &Entry) {
    w.put_u64(entry.index);
    w.put_u64(entry.term);
    w.put_u8(entry.kind as u8);
    w.put_bytes(&entry.data);
}

#[inline]
fn get_entry(r: &mut FrameReader) -> Result<Entry, DecodeError> {
    let index = r.get_u64()?;
    let term = r.get_u64()?;
    let kind = r.get_u8()?;
    let kind =
        EntryKind::from_u8(kind).ok_or(DecodeError::InvalidField { field: "entry.kind", value: u64::from(kind) })?;
    // The frame limit already bounds the data; `get_bytes` checks it against what remains.
    let data = r.get_bytes(usize::MAX)?;
    Ok(Entry { index, term, kind, data })
}

fn put_snapshot(w: &mut FrameWriter, snapshot: &Snapshot) {
    w.put_u64(snapshot.index);
    w.put_u64(snapshot.term);
    put_conf_state_body(w, &snapshot.conf_state);
    w.put_bytes(&snapshot.data);
}

fn get_snapshot(r: &mut FrameReader) -> Result<Snapshot, DecodeError> {
    let index = r.get_u64()?;
    let term = r.get_u64()?;
    let conf_state = get_conf_state_body(r)?;
    let data = r.get_bytes(usize::MAX)?;
    Ok(Snapshot { index, term, conf_state, data })
}

fn put_ids(w: &mut FrameWriter, ids: &[u64]) {
    w.put_list(ids, |w, id| w.put_u64(*id));
}

fn get_ids(r: &mut FrameReader, field: &'static str) -> Result<Vec<u64>, DecodeError> {
    r.get_list(field, MAX_IDS_PER_CONF, 8, FrameReader::get_u64)
}

fn put_conf_state_body(w: &mut FrameWriter, cs: &ConfState) {
    put_ids(w, &cs.voters);
    put_ids(w, &cs.learners);
    put_ids(w, &cs.voters_outgoing);
    put_ids(w, &cs.learners_next);
    w.put_bool(cs.auto_leave);
}

fn get_conf_state_body(r: &mut FrameReader) -> Result<ConfState, DecodeError> {
    Ok(ConfState {
        voters: get_ids(r, "conf_state.voters")?,
        learners: get_ids(r, "conf_state.learners")?,
        voters_outgoing: get_ids(r, "conf_state.voters_outgoing")?,
        learners_next: get_ids(r, "conf_state.learners_next")?,
        auto_leave: r.get_bool("conf_state.auto_leave")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Records: conf change, conf state, hard state
// ---------------------------------------------------------------------------------------------

fn check_record_prefix(r: &mut FrameReader, kind: u8) -> Result<(), DecodeError> {
    let version = r.get_u8()?;
    if version != RECORD_VERSION {
        return Err(DecodeError::Version(version));
    }
    let found = r.get_u8()?;
    if found != kind {
        return Err(DecodeError::InvalidField { field: "record.kind", value: u64::from(found) });
    }
    Ok(())
}

/// Encodes a conf change as a record (the data of a `ConfChange` entry).
pub fn encode_conf_change(cc: &ConfChange) -> Bytes {
    let len = RECORD_PREFIX_BYTES + conf_change_body_len(cc);
    let mut w = FrameWriter::unframed(len);
    w.put_u8(RECORD_VERSION);
    w.put_u8(RECORD_KIND_CONF_CHANGE);
    put_ids(&mut w, &cc.add_voters);
    put_ids(&mut w, &cc.remove_voters);
    put_ids(&mut w, &cc.add_learners);
    put_ids(&mut w, &cc.remove_learners);
    debug_assert_eq!(w.len(), len);
    w.finish()
}

pub fn decode_conf_change(record: &Bytes) -> Result<ConfChange, DecodeError> {
    let mut r = FrameReader::unframed(record);
    check_record_prefix(&mut r, RECORD_KIND_CONF_CHANGE)?;
    let cc = ConfChange {
        add_voters: get_ids(&mut r, "conf_change.add_voters")?,
        remove_voters: get_ids(&mut r, "conf_change.remove_voters")?,
        add_learners: get_ids(&mut r, "conf_change.add_learners")?,
        remove_learners: get_ids(&mut r, "conf_change.remove_learners")?,
    };
    r.finish()?;
    Ok(cc)
}

/// Encodes a conf state as a record (storage, snapshots metadata outside a message).
pub fn encode_conf_state(cs: &ConfState) -> Bytes {
    let len = RECORD_PREFIX_BYTES + conf_state_body_len(cs);
    let mut w = FrameWriter::unframed(len);
    w.put_u8(RECORD_VERSION);
    w.put_u8(RECORD_KIND_CONF_STATE);
    put_conf_state_body(&mut w, cs);
    debug_assert_eq!(w.len(), len);
    w.finish()
}

pub fn decode_conf_state(record: &Bytes) -> Result<ConfState, DecodeError> {
    let mut r = FrameReader::unframed(record);
    check_record_prefix(&mut r, RECORD_KIND_CONF_STATE)?;
    let cs = get_conf_state_body(&mut r)?;
    r.finish()?;
    Ok(cs)
}

/// Encodes a hard state as exactly [`HARD_STATE_BYTES`]: term, vote, commit (u64 LE each).
pub fn encode_hard_state(hs: &HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[..8].copy_from_slice(&hs.term.to_le_bytes());
    out[8..16].copy_from_slice(&hs.vote.to_le_bytes());
    out[16..].copy_from_slice(&hs.commit.to_le_bytes());
    out
}

/// Decodes exactly [`HARD_STATE_BYTES`]; shorter input is `Truncated`, longer `TrailingBytes`.
pub fn decode_hard_state(record: &[u8]) -> Result<HardState, DecodeError> {
    if record.len() > HARD_STATE_BYTES {
        return Err(DecodeError::TrailingBytes(record.len() - HARD_STATE_BYTES));
    }
    let field = |at: usize| -> Result<u64, DecodeError> {
        record
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or(DecodeError::Truncated { offset: record.len(), needed: HARD_STATE_BYTES - record.len() })
    };
    Ok(HardState { term: field(0)?, vote: field(8)?, commit: field(16)? })
}

// ---------------------------------------------------------------------------------------------
// Benchmark support
// ---------------------------------------------------------------------------------------------

/// The standard AppendEntries of the codec benchmarks: `entries` normal entries of `entry_bytes`
/// bytes each (64 x 128 in the published numbers), with every header field set.
#[doc(hidden)]
pub fn bench_append_entries_message(entries: usize, entry_bytes: usize) -> Message {
    let payload = Bytes::from((0..entry_bytes).map(|i| (i * 31 + 7) as u8).collect::<Vec<u8>>());
    let first_index = 1_000_000;
    Message {
        msg_type: MessageType::AppendEntries,
        from: 1,
        to: 2,
        term: 7,
        log_term: 7,
        index: first_index - 1,
        commit: first_index - 10,
        entries: (0..entries as u64)
            .map(|i| Entry::new(first_index + i, 7, EntryKind::Normal, payload.clone()))
            .collect(),
        ..Default::default()
    }
}

/// The property the fuzz target (`rust/core/fuzz/fuzz_targets/decode_raft.rs`) and its stand-in
/// test check on arbitrary bytes: every decoder returns instead of panicking, and whatever decodes
/// re-encodes to exactly the input (the encoding is canonical). The input is tried as given and,
/// to reach the payload parser past the checksum, once more with its length field and CRC
/// rewritten. Panics when the property fails.
#[doc(hidden)]
pub fn check_decode_round_trip(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(msg) = decode(&frame) {
        assert_eq!(encoded_len(&msg), frame.len(), "encoded_len of a decoded message");
        assert_eq!(encode(&msg), frame, "a decoded message must re-encode to its frame");
    }
    let mut resealed = data.to_vec();
    crate::codec::reseal_frame(&mut resealed);
    let resealed = Bytes::from(resealed);
    if let Ok(msg) = decode(&resealed) {
        assert_eq!(encode(&msg), resealed, "a decoded message must re-encode to its frame");
    }
    if let Ok(cc) = decode_conf_change(&frame) {
        assert_eq!(encode_conf_change(&cc), frame, "a decoded conf change must re-encode");
    }
    if let Ok(cs) = decode_conf_state(&frame) {
        assert_eq!(encode_conf_state(&cs), frame, "a decoded conf state must re-encode");
    }
    if let Ok(hs) = decode_hard_state(data) {
        assert_eq!(&encode_hard_state(&hs)[..], data, "a decoded hard state must re-encode");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::reseal_frame;
    use crate::codec::HEADER_BYTES;

    fn full_message() -> Message {
        Message {
            msg_type: MessageType::InstallSnapshot,
            from: 1,
            to: u64::MAX,
            term: 3,
            log_term: 2,
            index: 9,
            commit: 8,
            entries: vec![
                Entry::new(10, 3, EntryKind::Normal, Bytes::from_static(b"put x")),
                Entry::new(11, 3, EntryKind::ConfChange, Bytes::new()),
            ],
            reject: true,
            reject_hint: 5,
            context: Bytes::from_static(b"ctx"),
            snapshot: Some(Snapshot {
                index: 7,
                term: 2,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                    voters_outgoing: vec![1, 2],
                    learners_next: vec![5],
                    auto_leave: true,
                },
                data: Bytes::from_static(b"state"),
            }),
        }
    }

    #[test]
    fn message_with_every_field_set_round_trips() {
        let msg = full_message();
        let frame = encode(&msg);
        assert_eq!(frame.len(), encoded_len(&msg));
        assert_eq!(decode(&frame).unwrap(), msg);
    }

    #[test]
    fn empty_heartbeat_has_the_documented_size() {
        let msg = Message::new(MessageType::Heartbeat, 1, 2, 1);
        assert_eq!(encoded_len(&msg), MIN_FRAME_BYTES + MESSAGE_FIXED_BYTES);
        assert_eq!(encoded_len(&msg), 77);
        assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn decoded_entry_data_is_a_slice_of_the_frame() {
        let frame = encode(&full_message());
        let decoded = decode(&frame).unwrap();
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(range.contains(&(decoded.entries[0].data.as_ptr() as usize)));
        assert!(range.contains(&(decoded.context.as_ptr() as usize)));
        let snapshot_data = decoded.snapshot.unwrap().data;
        assert!(range.contains(&(snapshot_data.as_ptr() as usize)));
    }

    #[test]
    fn message_type_zero_and_above_fourteen_are_unknown() {
        for type_byte in [0u8, 15, 255] {
            let mut frame = encode(&full_message()).to_vec();
            frame[6] = type_byte;
            reseal_frame(&mut frame);
            assert_eq!(decode(&Bytes::from(frame)), Err(DecodeError::UnknownMessageType(type_byte)));
        }
    }

    #[test]
    fn bad_reject_boolean_is_an_invalid_field() {
        let mut frame = encode(&Message::new(MessageType::AppendEntriesResponse, 1, 2, 1)).to_vec();
        frame[HEADER_BYTES + 7 * 8] = 2;
        reseal_frame(&mut frame);
        assert_eq!(decode(&Bytes::from(frame)), Err(DecodeError::InvalidField { field: "message.reject", value: 2 }));
    }

    #[test]
    fn bad_entry_kind_is_an_invalid_field() {
        let mut msg = Message::new(MessageType::AppendEntries, 1, 2, 1);
        msg.entries.push(Entry::new(1, 1, EntryKind::Normal, Bytes::new()));
        let mut frame = encode(&msg).to_vec();
        frame[HEADER_BYTES + MESSAGE_FIXED_BYTES - 1 + 16] = 2;
        reseal_frame(&mut frame);
        assert_eq!(decode(&Bytes::from(frame)), Err(DecodeError::InvalidField { field: "entry.kind", value: 2 }));
    }

    #[test]
    fn bad_snapshot_presence_byte_is_an_invalid_field() {
        let mut frame = encode(&Message::new(MessageType::Heartbeat, 1, 2, 1)).to_vec();
        let presence = frame.len() - 5;
        frame[presence] = 7;
        reseal_frame(&mut frame);
        assert_eq!(
            decode(&Bytes::from(frame)),
            Err(DecodeError::InvalidField { field: "message.snapshot_present", value: 7 })
        );
    }

    #[test]
    fn forged_entry_count_is_rejected_before_allocating() {
        let mut frame = encode(&Message::new(MessageType::AppendEntries, 1, 2, 1)).to_vec();
        let count_at = HEADER_BYTES + 7 * 8 + 1 + 4;
        frame[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        reseal_frame(&mut frame);
        assert_eq!(
            decode(&Bytes::from(frame.clone())),
            Err(DecodeError::InvalidField { field: "message.entries", value: u64::from(u32::MAX) })
        );
        frame[count_at..count_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        reseal_frame(&mut frame);
        assert!(matches!(decode(&Bytes::from(frame)), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn trailing_payload_bytes_are_rejected() {
        let frame = encode(&Message::new(MessageType::Heartbeat, 1, 2, 1));
        let payload_end = frame.len() - 4;
        let mut longer = frame[..payload_end].to_vec();
        longer.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        reseal_frame(&mut longer);
        assert_eq!(decode(&Bytes::from(longer)), Err(DecodeError::TrailingBytes(3)));
    }

    #[test]
    fn decode_with_limit_rejects_frames_over_the_limit() {
        let frame = encode(&full_message());
        assert_eq!(decode_with_limit(&frame, 64), Err(DecodeError::TooLarge { size: frame.len(), limit: 64 }));
    }

    #[test]
    fn conf_change_record_round_trips_and_checks_its_prefix() {
        let cc =
            ConfChange { add_voters: vec![4], remove_voters: vec![1], add_learners: vec![1], remove_learners: vec![] };
        let record = encode_conf_change(&cc);
        assert_eq!(&record[..2], &[RECORD_VERSION, RECORD_KIND_CONF_CHANGE]);
        assert_eq!(decode_conf_change(&record).unwrap(), cc);
        assert_eq!(decode_conf_state(&record), Err(DecodeError::InvalidField { field: "record.kind", value: 1 }));
        let mut bumped = record.to_vec();
        bumped[0] = 2;
        assert_eq!(decode_conf_change(&Bytes::from(bumped)), Err(DecodeError::Version(2)));
    }

    #[test]
    fn conf_state_record_round_trips() {
        let cs = full_message().snapshot.unwrap().conf_state;
        assert_eq!(decode_conf_state(&encode_conf_state(&cs)).unwrap(), cs);
    }

    #[test]
    fn conf_ids_over_the_limit_are_rejected() {
        let cc = ConfChange { add_voters: (0..MAX_IDS_PER_CONF as u64 + 1).collect(), ..Default::default() };
        assert_eq!(
            decode_conf_change(&encode_conf_change(&cc)),
            Err(DecodeError::InvalidField { field: "conf_change.add_voters", value: MAX_IDS_PER_CONF as u64 + 1 })
        );
    }

    #[test]
    fn hard_state_is_24_bytes_and_checks_its_length() {
        let hs = HardState { term: 5, vote: 2, commit: 40 };
        let record = encode_hard_state(&hs);
        assert_eq!(decode_hard_state(&record).unwrap(), hs);
        assert_eq!(decode_hard_state(&record[..20]), Err(DecodeError::Truncated { offset: 20, needed: 4 }));
        let longer = [&record[..], &[0]].concat();
        assert_eq!(decode_hard_state(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    /// The test vector printed in `docs/wire-format.md`; if this changes, the format changed.
    #[test]
    fn heartbeat_frame_matches_the_documented_test_vector() {
        let msg = Message { commit: 9, ..Message::new(MessageType::Heartbeat, 1, 2, 5) };
        let mut expected = vec![0x4d, 0, 0, 0, 1, 1, 7];
        for field in [1u64, 2, 5, 0, 0, 9, 0] {
            expected.extend_from_slice(&field.to_le_bytes());
        }
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x25, 0x7d, 0x6c, 0x4d]);
        assert_eq!(&encode(&msg)[..], &expected[..]);
    }

    #[test]
    fn crc32c_matches_the_castagnoli_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn bench_message_has_the_requested_shape() {
        let msg = bench_append_entries_message(64, 128);
        assert_eq!(msg.entries.len(), 64);
        assert!(msg.entries.iter().all(|e| e.data.len() == 128));
        assert_eq!(encoded_len(&msg), 77 + 64 * (21 + 128));
    }
}
