//! The binary encoding of Multi-Paxos messages, specified normatively in `docs/wire-format.md`.
//!
//! A [`Message`] travels as one frame of protocol [`PROTOCOL_PAXOS`] whose message-type byte is the
//! [`MessageType`] value. Every type has the same payload layout (every field, always present), so
//! the type byte selects meaning, never layout. Decoding is total: any input either fails with a
//! [`DecodeError`] or decodes to a message whose encoding is byte-for-byte the input.

use bytes::Bytes;

use crate::codec::{FrameReader, FrameWriter, MIN_FRAME_BYTES, PROTOCOL_PAXOS};
use crate::error::DecodeError;
use crate::paxos::message::{AcceptedSlot, Ballot, Message, MessageType, Snapshot, Value, ValueKind};

// `decode` and the `Message` methods `encode`, `encoded_len`, `decode`.
crate::message_wire_api!(Message);

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
    w.put_list(commands, |w, command| w.put_bytes(command));
}

fn get_commands(r: &mut FrameReader, field: &'static str) -> Result<Vec<Bytes>, DecodeError> {
    r.get_list(field, MAX_COMMANDS_PER_VALUE, 4, |r| r.get_bytes(usize::MAX))
}

/// A ballot: round, then node.
fn put_ballot(w: &mut FrameWriter, ballot: Ballot) {
    w.put_u64(ballot.round);
    w.put_u64(ballot.node);
}

fn get_ballot(r: &mut FrameReader) -> Result<Ballot, DecodeError> {
    Ok(Ballot { round: r.get_u64()?, node: r.get_u64()? })
}

/// One slot: slot, ballot (round, node), value kind, value round, commands (also the layout of
/// the file storage's ACCEPTED records).
pub fn put_slot(w: &mut FrameWriter, slot: &AcceptedSlot) {
    w.put_u64(slot.slot);
    put_ballot(w, slot.ballot);
    w.put_u8(slot.value.kind as u8);
    w.put_u64(slot.value.round);
    put_commands(w, &slot.value.commands);
}

/// Reads what [`put_slot`] wrote.
pub fn get_slot(r: &mut FrameReader) -> Result<AcceptedSlot, DecodeError> {
    let slot = r.get_u64()?;
    let ballot = get_ballot(r)?;
    let kind = r.get_u8()?;
    let kind =
        ValueKind::from_u8(kind).ok_or(DecodeError::InvalidField { field: "slot.kind", value: u64::from(kind) })?;
    let round = r.get_u64()?;
    let commands = get_commands(r, "slot.commands")?;
    Ok(AcceptedSlot { slot, ballot, value: Value { kind, round, commands } })
}

/// A snapshot: index, term, members, the pending configurations (each its first slot and its
/// members), data.
fn put_snapshot(w: &mut FrameWriter, s: &Snapshot) {
    w.put_u64(s.index);
    w.put_u64(s.term);
    put_ids(w, &s.members);
    w.put_list(&s.pending, |w, (from_slot, members)| {
        w.put_u64(*from_slot);
        put_ids(w, members);
    });
    w.put_bytes(&s.data);
}

fn get_snapshot(r: &mut FrameReader) -> Result<Snapshot, DecodeError> {
    let index = r.get_u64()?;
    let term = r.get_u64()?;
    let members = get_ids(r, "snapshot.members")?;
    let pending = r.get_list("snapshot.pending", MAX_PENDING_CONFIGS, PENDING_FIXED_BYTES, |r| {
        let from_slot = r.get_u64()?;
        Ok((from_slot, get_ids(r, "snapshot.pending.members")?))
    })?;
    let data = r.get_bytes(usize::MAX)?;
    Ok(Snapshot { index, term, members, pending, data })
}

/// A list of node ids: count (u32), then each id (u64).
pub fn put_ids(w: &mut FrameWriter, ids: &[u64]) {
    w.put_list(ids, |w, id| w.put_u64(*id));
}

/// Reads what [`put_ids`] wrote (at most [`MAX_MEMBERS`] ids).
pub fn get_ids(r: &mut FrameReader, field: &'static str) -> Result<Vec<u64>, DecodeError> {
    r.get_list(field, MAX_MEMBERS, 8, FrameReader::get_u64)
}

/// Encodes `msg` as one frame, in a single allocation of exactly [`encoded_len`] bytes.
pub fn encode(msg: &Message) -> Bytes {
    let payload_len = payload_len(msg);
    let mut w = FrameWriter::message(PROTOCOL_PAXOS, msg.msg_type as u8, msg.from, msg.to, payload_len);
    put_ballot(&mut w, msg.ballot);
    w.put_u64(msg.index);
    w.put_u64(msg.last_index);
    w.put_u64(msg.commit);
    w.put_bytes(&msg.context);
    w.put_list(&msg.entries, put_slot);
    put_commands(&mut w, &msg.commands);
    w.put_option(msg.snapshot.as_ref(), put_snapshot);
    w.finish()
}

/// Decodes one frame, rejecting frames larger than `max_frame_bytes`.
pub fn decode_with_limit(frame: &Bytes, max_frame_bytes: usize) -> Result<Message, DecodeError> {
    let (msg_type, from, to, mut r) =
        FrameReader::open_message(frame, PROTOCOL_PAXOS, max_frame_bytes, MessageType::from_u8)?;
    let ballot = get_ballot(&mut r)?;
    let index = r.get_u64()?;
    let last_index = r.get_u64()?;
    let commit = r.get_u64()?;
    let context = r.get_bytes(MAX_CONTEXT_BYTES)?;
    let entries = r.get_list("message.entries", MAX_SLOTS_PER_MESSAGE, SLOT_FIXED_BYTES, get_slot)?;
    let commands = get_commands(&mut r, "message.commands")?;
    let snapshot = r.get_option("message.snapshot_present", get_snapshot)?;
    r.finish()?;
    Ok(Message { msg_type, from, to, ballot, index, last_index, commit, entries, commands, context, snapshot })
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
