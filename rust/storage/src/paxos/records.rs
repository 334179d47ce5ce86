//! What Multi-Paxos writes into the shared framing (docs/storage-format.md, "Multi-Paxos
//! records"): the WAL record payloads, their replay, and the snapshot body.

use std::collections::BTreeMap;

use bytes::Bytes;
use consensus_core::codec::{FrameReader, FrameWriter};
use consensus_core::paxos::wire::{
    get_ids, get_slot, put_ids, put_slot, slot_len, MAX_PENDING_CONFIGS, SLOT_FIXED_BYTES,
};
use consensus_core::paxos::{AcceptedSlot, Ballot, HardState, Snapshot};

use crate::format::{encode_snapshot_file, for_each_batch, put_record, u64_at, FormatError, ProtocolId};
use crate::wal::SnapshotFile;

pub const RECORD_ACCEPTED: u8 = 1;
pub const RECORD_HARD_STATE: u8 = 2;
pub const RECORD_MEMBERS: u8 = 3;

/// One decoded Multi-Paxos WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Slots accepted (or learned decided); each replaces what its slot held.
    Accepted(Vec<AcceptedSlot>),
    HardState(HardState),
    /// The members of a new cluster, governing from slot 1 (a snapshot supersedes it).
    Members(Vec<u64>),
}

impl Record {
    /// The highest slot the record wrote (0: none), for segment deletion.
    pub fn max_slot(&self) -> u64 {
        match self {
            Record::Accepted(slots) => slots.iter().map(|s| s.slot).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// Appends ACCEPTED records for `slots`, splitting them so that no payload exceeds
/// `payload_bytes_max` (a slot larger than that still gets a record of its own).
pub fn put_accepted(out: &mut Vec<u8>, slots: &[AcceptedSlot], payload_bytes_max: usize) {
    for_each_batch(slots, 4, payload_bytes_max, slot_len, |batch, size| {
        let mut w = FrameWriter::unframed(size);
        w.put_list(batch, put_slot);
        put_record(out, RECORD_ACCEPTED, &w.finish());
    });
}

pub fn put_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    let mut payload = [0u8; 24];
    payload[..8].copy_from_slice(&hs.promised.round.to_le_bytes());
    payload[8..16].copy_from_slice(&hs.promised.node.to_le_bytes());
    payload[16..].copy_from_slice(&hs.commit.to_le_bytes());
    put_record(out, RECORD_HARD_STATE, &payload);
}

pub fn put_members(out: &mut Vec<u8>, members: &[u64]) {
    let mut w = FrameWriter::unframed(4 + 8 * members.len());
    put_ids(&mut w, members);
    put_record(out, RECORD_MEMBERS, &w.finish());
}

/// Decodes the payload of a record whose checksum holds.
pub fn decode_record(record_type: u8, payload: &[u8]) -> Result<Record, FormatError> {
    match record_type {
        RECORD_ACCEPTED => {
            let payload = Bytes::copy_from_slice(payload);
            let mut r = FrameReader::unframed(&payload);
            let count = r.get_count("accepted.count", usize::MAX, SLOT_FIXED_BYTES)?;
            let mut slots = Vec::with_capacity(count);
            for _ in 0..count {
                let slot = get_slot(&mut r)?;
                if slot.slot == 0 {
                    return Err(FormatError::new("accepted slot 0"));
                }
                slots.push(slot);
            }
            r.finish()?;
            if slots.is_empty() {
                return Err(FormatError::new("empty accepted record"));
            }
            Ok(Record::Accepted(slots))
        }
        RECORD_HARD_STATE => {
            if payload.len() != 24 {
                return Err(FormatError::new(format!("hard state of {} bytes, expected 24", payload.len())));
            }
            let promised = Ballot::new(u64_at(payload, 0), u64_at(payload, 8));
            Ok(Record::HardState(HardState { promised, commit: u64_at(payload, 16) }))
        }
        RECORD_MEMBERS => {
            let payload = Bytes::copy_from_slice(payload);
            let mut r = FrameReader::unframed(&payload);
            let members = get_ids(&mut r, "members")?;
            r.finish()?;
            if members.is_empty() || members.contains(&0) {
                return Err(FormatError::new("members record without members or with id 0"));
            }
            Ok(Record::Members(members))
        }
        other => Err(FormatError::new(format!("unknown record type {other}"))),
    }
}

/// What the WAL holds once every record is read, in order: the last hard state, every slot's last
/// accepted value and the initial members.
#[derive(Debug, Default)]
pub struct Replay {
    pub hard_state: Option<HardState>,
    pub accepted: BTreeMap<u64, AcceptedSlot>,
    pub members: Option<Vec<u64>>,
}

impl Replay {
    /// Returns the highest slot the record wrote (0: none), which `Wal::open` keeps per segment.
    /// Slots are keyed, never positional: a later record for a slot replaces the earlier one and
    /// touches no other slot (no truncation, unlike a Raft log).
    pub fn apply(&mut self, record: Record) -> u64 {
        let key = record.max_slot();
        match record {
            Record::Accepted(slots) => {
                for slot in slots {
                    self.accepted.insert(slot.slot, slot);
                }
            }
            Record::HardState(hs) => self.hard_state = Some(hs),
            Record::Members(members) => self.members = Some(members),
        }
        key
    }
}

/// Snapshot body: index, term, members, pending configurations, data (length-prefixed).
impl SnapshotFile for Snapshot {
    fn file_key(&self) -> (u64, u64) {
        (self.index, self.term)
    }

    fn encode_file(&self) -> Vec<u8> {
        let mut w = FrameWriter::unframed(64);
        w.put_u64(self.index);
        w.put_u64(self.term);
        put_ids(&mut w, &self.members);
        w.put_count(self.pending.len());
        for (first_slot, members) in &self.pending {
            w.put_u64(*first_slot);
            put_ids(&mut w, members);
        }
        w.put_u64(self.data.len() as u64);
        encode_snapshot_file(ProtocolId::Paxos, &w.finish(), &self.data)
    }
}

/// Decodes a snapshot body (the data is a slice of `body`, not a copy).
pub fn decode_snapshot_body(body: Bytes) -> Result<Snapshot, FormatError> {
    let mut r = FrameReader::unframed(&body);
    let index = r.get_u64()?;
    let term = r.get_u64()?;
    let members = get_ids(&mut r, "snapshot.members")?;
    let count = r.get_count("snapshot.pending", MAX_PENDING_CONFIGS, 12)?;
    let mut pending = Vec::with_capacity(count);
    for _ in 0..count {
        let first_slot = r.get_u64()?;
        pending.push((first_slot, get_ids(&mut r, "snapshot.pending.members")?));
    }
    let data_len = r.get_u64()?;
    let at = r.position();
    if data_len != (body.len() - at) as u64 {
        return Err(FormatError::new("data length"));
    }
    if index == 0 || members.is_empty() {
        return Err(FormatError::new("snapshot at index 0 or without members"));
    }
    Ok(Snapshot { index, term, members, pending, data: body.slice(at..) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_support::{assert_snapshot_file_round_trips_and_refuses_any_flipped_bit, read_all};
    use consensus_core::paxos::Value;

    fn slot(slot: u64, round: u64, data: &'static [u8]) -> AcceptedSlot {
        AcceptedSlot {
            slot,
            ballot: Ballot::new(round, 2),
            value: Value::batch(round, vec![Bytes::from_static(data), Bytes::from_static(b"more")]),
        }
    }

    #[test]
    fn every_record_type_round_trips() {
        let mut buf = Vec::new();
        let slots = vec![slot(7, 3, b"a"), AcceptedSlot { slot: 9, ballot: Ballot::new(4, 1), value: Value::noop(4) }];
        put_accepted(&mut buf, &slots, usize::MAX);
        let hs = HardState { promised: Ballot::new(5, 3), commit: 6 };
        put_hard_state(&mut buf, &hs);
        put_members(&mut buf, &[1, 2, 3]);
        assert_eq!(
            read_all(&buf, decode_record),
            vec![Record::Accepted(slots), Record::HardState(hs), Record::Members(vec![1, 2, 3])]
        );
    }

    #[test]
    fn large_accepted_batches_split_into_bounded_records() {
        let mut buf = Vec::new();
        let slots: Vec<AcceptedSlot> = (1..=9).map(|i| slot(i, 1, b"0123456789")).collect();
        put_accepted(&mut buf, &slots, 4 + 3 * slot_len(&slots[0]));
        let records = read_all(&buf, decode_record);
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], Record::Accepted(slots[6..].to_vec()));
    }

    #[test]
    fn replay_keeps_each_slots_last_value_and_never_truncates_other_slots() {
        let mut replay = Replay::default();
        replay.apply(Record::Accepted(vec![slot(1, 1, b"a"), slot(2, 1, b"b"), slot(3, 1, b"c")]));
        // A later leader's value for slot 2 only: slots 1 and 3 stay (a Raft-style truncation
        // from the first rewritten position would lose slot 3, which a quorum may have chosen).
        replay.apply(Record::Accepted(vec![slot(2, 2, b"B")]));
        let held: Vec<(u64, u64)> = replay.accepted.values().map(|s| (s.slot, s.ballot.round)).collect();
        assert_eq!(held, vec![(1, 1), (2, 2), (3, 1)]);
    }

    #[test]
    fn snapshot_file_round_trips_and_rejects_any_flipped_bit() {
        let snapshot = Snapshot {
            index: 12,
            term: 3,
            members: vec![1, 2, 3],
            pending: vec![(20, vec![1, 2, 3, 4])],
            data: Bytes::from_static(b"state"),
        };
        assert_snapshot_file_round_trips_and_refuses_any_flipped_bit(
            snapshot.encode_file(),
            ProtocolId::Paxos,
            &snapshot,
            decode_snapshot_body,
        );
    }
}
