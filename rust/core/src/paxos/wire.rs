//! The binary encoding of Multi-Paxos messages, specified normatively in `docs/wire-format.md`.
//!
//! A [`Message`] travels as one frame of protocol [`PROTOCOL_PAXOS`] whose message-type byte is the
//! [`MessageType`] value. Every type has the same payload layout (every field, always present), so
//! the type byte selects meaning, never layout. Decoding is total: any input either fails with a
//! [`DecodeError`] or decodes to a message whose encoding is byte-for-byte the input.

use bytes::Bytes;

use crate::codec::{FrameReader, FrameWriter, HEADER_BYTES, MAX_FRAME_BYTES, MIN_FRAME_BYTES, PROTOCOL_PAXOS};
use crate::error::DecodeError;
use crate::paxos::message::{AcceptedSlot, Ballot, Message, MessageType, Snapshot, Value, ValueKind};

/// Most slots one message may carry.
pub const MAX_SLOTS_PER_MESSAGE: usize = 1 << 20;
/// Most commands in one slot value or one forwarded proposal.
pub const MAX_COMMANDS_PER_VALUE: usize = 1 << 20;
pub use super::membership::MAX_MEMBERS;
/// Most pending configurations in a snapshot.
pub const MAX_PENDING_CONFIGS: usize = 64;
/// Most bytes of a message's `context`.
pub const MAX_CONTEXT_BYTES: usize = 1 << 20;

/// from, to, ballot round, ballot node, index, last_index, commit (7 x u64), context length (u32),
/// slot count (u32), command count (u32), snapshot presence (u8).
const MESSAGE_FIXED_BYTES: usize = 7 * 8 + 4 + 4 + 4 + 1;
/// slot, ballot round, ballot node (3 x u64), value kind (u8), value round (u64), command count (u32).
pub const SLOT_FIXED_BYTES: usize = 3 * 8 + 1 + 8 + 4;
/// index, term (2 x u64), member count (u32), pending count (u32), data length (u32).
const SNAPSHOT_FIXED_BYTES: usize = 2 * 8 + 4 + 4 + 4;
/// first slot (u64), member count (u32).
const PENDING_FIXED_BYTES: usize = 8 + 4;

fn commands_len(commands: &[Bytes]) -> usize {
    commands.iter().map(|c| 4 + c.len()).sum()
}

/// Size on the wire of one slot.
pub fn slot_len(slot: &AcceptedSlot) -> usize {
    SLOT_FIXED_BYTES + commands_len(&slot.value.commands)
}

fn payload_len(msg: &Message) -> usize {
    let slots: usize = msg.entries.iter().map(slot_len).sum();
    let snapshot = msg.snapshot.as_ref().map_or(0, |s| {
        let pending: usize = s.pending.iter().map(|(_, m)| PENDING_FIXED_BYTES + 8 * m.len()).sum();
        SNAPSHOT_FIXED_BYTES + 8 * s.members.len() + pending + s.data.len()
    });
    MESSAGE_FIXED_BYTES + msg.context.len() + slots + commands_len(&msg.commands) + snapshot
}

/// The exact size of `encode(msg)`.
pub fn encoded_len(msg: &Message) -> usize {
    MIN_FRAME_BYTES + payload_len(msg)
}

fn put_commands(w: &mut FrameWriter, commands: &[Bytes]) {
    w.put_count(commands.len());
    for command in commands {
        w.put_bytes(command);
    }
}

fn get_commands(r: &mut FrameReader, field: &'static str) -> Result<Vec<Bytes>, DecodeError> {
    let count = r.get_count(field, MAX_COMMANDS_PER_VALUE, 4)?;
    let mut commands = Vec::with_capacity(count);
    for _ in 0..count {
        commands.push(r.get_bytes(usize::MAX)?);
    }
    Ok(commands)
}

/// One slot: slot, ballot (round, node), value kind, value round, commands (also the layout of
/// the file storage's ACCEPTED records).
pub fn put_slot(w: &mut FrameWriter, slot: &AcceptedSlot) {
    w.put_u64(slot.slot);
    w.put_u64(slot.ballot.round);
    w.put_u64(slot.ballot.node);
    w.put_u8(slot.value.kind as u8);
    w.put_u64(slot.value.round);
    put_commands(w, &slot.value.commands);
}

/// Reads what [`put_slot`] wrote.
pub fn get_slot(r: &mut FrameReader) -> Result<AcceptedSlot, DecodeError> {
    let slot = r.get_u64()?;
    let ballot = Ballot { round: r.get_u64()?, node: r.get_u64()? };
    let kind = match r.get_u8()? {
        0 => ValueKind::Noop,
        1 => ValueKind::Batch,
        2 => ValueKind::Reconfig,
        other => return Err(DecodeError::InvalidField { field: "slot.kind", value: u64::from(other) }),
    };
    let round = r.get_u64()?;
    let commands = get_commands(r, "slot.commands")?;
    Ok(AcceptedSlot { slot, ballot, value: Value { kind, round, commands } })
}

/// A list of node ids: count (u32), then each id (u64).
pub fn put_ids(w: &mut FrameWriter, ids: &[u64]) {
    w.put_count(ids.len());
    for id in ids {
        w.put_u64(*id);
    }
}

/// Reads what [`put_ids`] wrote (at most [`MAX_MEMBERS`] ids).
pub fn get_ids(r: &mut FrameReader, field: &'static str) -> Result<Vec<u64>, DecodeError> {
    let count = r.get_count(field, MAX_MEMBERS, 8)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(r.get_u64()?);
    }
    Ok(ids)
}

/// Encodes `msg` as one frame, in a single allocation of exactly [`encoded_len`] bytes.
pub fn encode(msg: &Message) -> Bytes {
    let payload_len = payload_len(msg);
    let mut w = FrameWriter::new(PROTOCOL_PAXOS, msg.msg_type as u8, payload_len);
    w.put_u64(msg.from);
    w.put_u64(msg.to);
    w.put_u64(msg.ballot.round);
    w.put_u64(msg.ballot.node);
    w.put_u64(msg.index);
    w.put_u64(msg.last_index);
    w.put_u64(msg.commit);
    w.put_bytes(&msg.context);
    w.put_count(msg.entries.len());
    for slot in &msg.entries {
        put_slot(&mut w, slot);
    }
    put_commands(&mut w, &msg.commands);
    match &msg.snapshot {
        None => w.put_u8(0),
        Some(s) => {
            w.put_u8(1);
            w.put_u64(s.index);
            w.put_u64(s.term);
            put_ids(&mut w, &s.members);
            w.put_count(s.pending.len());
            for (from_slot, members) in &s.pending {
                w.put_u64(*from_slot);
                put_ids(&mut w, members);
            }
            w.put_bytes(&s.data);
        }
    }
    debug_assert_eq!(w.len(), HEADER_BYTES + payload_len, "encoded_len disagrees with encode");
    w.finish()
}

/// Decodes one frame with the default frame limit [`MAX_FRAME_BYTES`].
pub fn decode(frame: &Bytes) -> Result<Message, DecodeError> {
    decode_with_limit(frame, MAX_FRAME_BYTES)
}

/// Decodes one frame, rejecting frames larger than `max_frame_bytes`.
pub fn decode_with_limit(frame: &Bytes, max_frame_bytes: usize) -> Result<Message, DecodeError> {
    let (type_byte, mut r) = FrameReader::open(frame, PROTOCOL_PAXOS, max_frame_bytes)?;
    let msg_type = MessageType::from_u8(type_byte).ok_or(DecodeError::UnknownMessageType(type_byte))?;
    let from = r.get_u64()?;
    let to = r.get_u64()?;
    let ballot = Ballot { round: r.get_u64()?, node: r.get_u64()? };
    let index = r.get_u64()?;
    let last_index = r.get_u64()?;
    let commit = r.get_u64()?;
    let context = r.get_bytes(MAX_CONTEXT_BYTES)?;
    let count = r.get_count("message.entries", MAX_SLOTS_PER_MESSAGE, SLOT_FIXED_BYTES)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(get_slot(&mut r)?);
    }
    let commands = get_commands(&mut r, "message.commands")?;
    let snapshot = match r.get_u8()? {
        0 => None,
        1 => {
            let index = r.get_u64()?;
            let term = r.get_u64()?;
            let members = get_ids(&mut r, "snapshot.members")?;
            let count = r.get_count("snapshot.pending", MAX_PENDING_CONFIGS, PENDING_FIXED_BYTES)?;
            let mut pending = Vec::with_capacity(count);
            for _ in 0..count {
                let from_slot = r.get_u64()?;
                pending.push((from_slot, get_ids(&mut r, "snapshot.pending.members")?));
            }
            let data = r.get_bytes(usize::MAX)?;
            Some(Snapshot { index, term, members, pending, data })
        }
        other => return Err(DecodeError::InvalidField { field: "message.snapshot_present", value: u64::from(other) }),
    };
    r.finish()?;
    Ok(Message { msg_type, from, to, ballot, index, last_index, commit, entries, commands, context, snapshot })
}

impl Message {
    /// This message as one wire frame; see [`encode`].
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes one wire frame; see [`decode`].
    pub fn decode(frame: &Bytes) -> Result<Message, DecodeError> {
        decode(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::reseal_frame;
    use crate::rng::Rng;

    fn sample() -> Message {
        Message {
            msg_type: MessageType::Promise,
            from: 1,
            to: 2,
            ballot: Ballot::new(7, 1),
            index: 3,
            last_index: 9,
            commit: 2,
            entries: vec![
                AcceptedSlot { slot: 3, ballot: Ballot::new(5, 2), value: Value::batch(5, vec![Bytes::from("a")]) },
                AcceptedSlot { slot: 4, ballot: Ballot::new(6, 3), value: Value::noop(6) },
            ],
            commands: vec![Bytes::from("x"), Bytes::new()],
            context: Bytes::from("ctx"),
            snapshot: Some(Snapshot {
                index: 2,
                term: 1,
                members: vec![1, 2, 3],
                pending: vec![(9, vec![1, 2, 3, 4])],
                data: Bytes::from("s"),
            }),
        }
    }

    #[test]
    fn every_message_type_round_trips() {
        for msg_type in MessageType::ALL {
            let msg = Message { msg_type, ..sample() };
            let frame = encode(&msg);
            assert_eq!(frame.len(), encoded_len(&msg));
            assert_eq!(decode(&frame).unwrap(), msg);
        }
        let empty = Message::new(MessageType::Commit, 1, 2, Ballot::new(1, 1));
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    /// The test vector of docs/wire-format.md §10.4.
    #[test]
    fn commit_test_vector_is_pinned() {
        let mut msg = Message::new(MessageType::Commit, 1, 2, Ballot::new(5, 1));
        msg.commit = 9;
        let mut expected = vec![0x50, 0, 0, 0, 1, 2, 5];
        for field in [1u64, 2, 5, 1, 0, 0, 9] {
            expected.extend_from_slice(&field.to_le_bytes());
        }
        expected.extend_from_slice(&[0; 13]);
        expected.extend_from_slice(&[0xfc, 0x65, 0x64, 0xf9]);
        assert_eq!(encode(&msg).to_vec(), expected);
    }

    #[test]
    fn raft_frames_and_unknown_types_are_refused() {
        let raft = crate::raft::wire::encode(&crate::raft::Message::default());
        assert!(matches!(decode(&raft), Err(DecodeError::WrongProtocol { .. })));
        let mut bytes = encode(&sample()).to_vec();
        bytes[6] = 99;
        reseal_frame(&mut bytes);
        assert_eq!(decode(&Bytes::from(bytes)), Err(DecodeError::UnknownMessageType(99)));
    }

    #[test]
    fn mutated_and_truncated_frames_never_panic() {
        let frame = encode(&sample()).to_vec();
        let mut rng = Rng::new(11);
        for round in 0..20_000 {
            let mut bytes = frame.clone();
            match round % 3 {
                0 => {
                    let at = rng.range(0, bytes.len() as u64) as usize;
                    bytes[at] = rng.next_u64() as u8;
                }
                1 => bytes.truncate(rng.range(0, bytes.len() as u64) as usize),
                _ => {
                    for _ in 0..4 {
                        let at = rng.range(0, bytes.len() as u64) as usize;
                        bytes[at] = rng.next_u64() as u8;
                    }
                }
            }
            reseal_frame(&mut bytes);
            if let Ok(msg) = decode(&Bytes::from(bytes.clone())) {
                assert_eq!(encode(&msg).to_vec(), bytes, "decoding is canonical");
            }
        }
        for len in 0..64 {
            let random: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let _ = decode(&Bytes::from(random));
        }
    }
}
