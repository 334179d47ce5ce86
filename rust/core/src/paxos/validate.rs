//! Validation at the door (docs/wire-format.md): every check a Multi-Paxos message must pass
//! before it may change any state. A message that fails is refused with `Error::Protocol` and
//! changes nothing; these are things no correct peer sends.

use super::config::MAX_INFLIGHT_SLOTS;
use super::membership::decode_reconfig;
use super::message::{Message, MessageType, Snapshot, Value, ValueKind};
use crate::error::Result;
use crate::limits::{self, INDEX_MAX, TERM_MAX};
use crate::refuse;

/// How far above the highest slot a node knows decided (its commit, or a snapshot it is sent) an
/// Accept or a promise may name a slot. A leader never assigns a slot more than
/// `max_inflight_slots` (at most 2^20) above its commit, so a correct peer exceeds this only for a
/// replica that lags by more than a million slots, which drops the message as if it were lost
/// and catches up by `CATCH_UP` or a snapshot first. It keeps a forged far-away slot out of the
/// log, where a later leader would have to fill every slot below it with a no-op.
pub const SLOT_LEAD_MAX: u64 = 1 << 21;

/// The addressing checks: the message is for `id`, from another, non-zero node.
pub fn check_addressing(m: &Message, id: u64) -> Result<()> {
    limits::check_addressing(m.to, m.from, id)
}

/// Every check that needs only the message itself.
pub fn check_message(m: &Message) -> Result<()> {
    check_ranges(m)?;
    let carries_slots = matches!(
        m.msg_type,
        MessageType::Promise | MessageType::PromisePage | MessageType::Accept | MessageType::CatchUp
    );
    if !carries_slots && !m.entries.is_empty() {
        return Err(refuse!(m, "this type carries no slots"));
    }
    check_slots(m)?;
    if matches!(m.msg_type, MessageType::Accept | MessageType::CatchUp) {
        check_contiguous(m)?;
    }
    match (&m.snapshot, m.msg_type) {
        (Some(snapshot), MessageType::Promise | MessageType::PromisePage | MessageType::Snapshot) => {
            check_snapshot(m, snapshot)
        }
        (Some(_), _) => Err(refuse!(m, "this type carries no snapshot")),
        _ => Ok(()),
    }
}

/// Every message names a ballot some node led or promised: round 1 or more, a node id, a round
/// no higher than `TERM_MAX`.
fn check_ranges(m: &Message) -> Result<()> {
    if m.ballot.round == 0 || m.ballot.node == 0 {
        return Err(refuse!(m, format!("ballot {} names no round or no node", m.ballot)));
    }
    if m.ballot.round > TERM_MAX {
        return Err(refuse!(m, format!("ballot round {} above TERM_MAX", m.ballot.round)));
    }
    for (field, value) in [("index", m.index), ("last_index", m.last_index), ("commit", m.commit)] {
        if value > INDEX_MAX {
            return Err(refuse!(m, format!("{field} {value} above INDEX_MAX")));
        }
    }
    Ok(())
}

/// Slots ascend strictly, each in `1..=INDEX_MAX`, accepted at a ballot no higher than the
/// message's, holding a value first proposed no later, whose membership record decodes.
fn check_slots(m: &Message) -> Result<()> {
    let mut previous = 0;
    for slot in &m.entries {
        if slot.slot <= previous || slot.slot > INDEX_MAX {
            return Err(refuse!(m, format!("slot {} after slot {previous}", slot.slot)));
        }
        previous = slot.slot;
        if slot.ballot > m.ballot || slot.value.round > m.ballot.round {
            return Err(refuse!(
                m,
                format!("slot {} of ballot {} above the message ballot {}", slot.slot, slot.ballot, m.ballot),
            ));
        }
        check_value(&slot.value).map_err(|reason| refuse!(m, format!("slot {}: {reason}", slot.slot)))?;
    }
    Ok(())
}

/// A membership value holds exactly one record that decodes (non-empty members, no id 0).
pub fn check_value(value: &Value) -> std::result::Result<(), String> {
    if value.kind != ValueKind::Reconfig {
        return Ok(());
    }
    match value.commands.as_slice() {
        [record] => match decode_reconfig(record) {
            Ok((alpha, _)) if (1..=MAX_INFLIGHT_SLOTS).contains(&alpha) => Ok(()),
            Ok((alpha, _)) => Err(format!("membership record with alpha {alpha}")),
            Err(e) => Err(format!("membership record: {e}")),
        },
        other => Err(format!("membership value of {} commands", other.len())),
    }
}

/// Accepts and catch-ups carry a run of consecutive slots.
fn check_contiguous(m: &Message) -> Result<()> {
    let gap = m.entries.windows(2).find(|pair| pair[1].slot != pair[0].slot + 1);
    match gap {
        Some(pair) => Err(refuse!(m, format!("slot {} does not follow slot {}", pair[1].slot, pair[0].slot))),
        None => Ok(()),
    }
}

fn check_snapshot(m: &Message, snapshot: &Snapshot) -> Result<()> {
    if snapshot.index == 0 || snapshot.index > INDEX_MAX || snapshot.term > m.ballot.round {
        return Err(refuse!(m, format!("snapshot at {} of term {}", snapshot.index, snapshot.term)));
    }
    if !valid_members(&snapshot.members) {
        return Err(refuse!(m, "snapshot members empty or holding id 0"));
    }
    let mut previous = snapshot.index + 1;
    for (first_slot, members) in &snapshot.pending {
        if *first_slot <= previous || *first_slot > INDEX_MAX || !valid_members(members) {
            return Err(refuse!(m, format!("snapshot pending configuration at {first_slot}")));
        }
        previous = *first_slot;
    }
    Ok(())
}

fn valid_members(members: &[u64]) -> bool {
    !members.is_empty() && !members.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::paxos::membership::encode_reconfig;
    use crate::paxos::message::{AcceptedSlot, Ballot};
    use bytes::Bytes;

    fn accept(ballot: Ballot, slots: &[u64]) -> Message {
        let mut m = Message::new(MessageType::Accept, ballot.node, 1, ballot);
        m.entries = slots
            .iter()
            .map(|s| AcceptedSlot { slot: *s, ballot, value: Value::batch(ballot.round, vec![Bytes::from("x")]) })
            .collect();
        m
    }

    #[test]
    fn accepts_with_a_gap_or_out_of_order_or_slot_zero_are_refused() {
        let b = Ballot::new(3, 2);
        assert!(check_message(&accept(b, &[4, 5, 6])).is_ok());
        for slots in [&[4, 6][..], &[5, 4], &[0, 1], &[4, 4]] {
            assert!(matches!(check_message(&accept(b, slots)), Err(Error::Protocol(_))), "{slots:?}");
        }
    }

    #[test]
    fn ballots_of_round_zero_or_node_zero_are_refused() {
        assert!(check_message(&accept(Ballot::new(0, 2), &[])).is_err());
        assert!(check_message(&accept(Ballot::new(3, 0), &[])).is_err());
    }

    #[test]
    fn rounds_above_term_max_and_values_of_later_rounds_are_refused() {
        let mut m = accept(Ballot::new(TERM_MAX + 1, 2), &[]);
        assert!(check_message(&m).is_err());
        m = accept(Ballot::new(3, 2), &[1]);
        m.entries[0].value.round = 4;
        assert!(check_message(&m).is_err());
    }

    #[test]
    fn membership_values_must_decode() {
        let mut m = accept(Ballot::new(3, 2), &[1]);
        m.entries[0].value = Value { kind: ValueKind::Reconfig, round: 3, commands: vec![Bytes::from("junk")] };
        assert!(check_message(&m).is_err());
        m.entries[0].value.commands = vec![encode_reconfig(4, &[1, 2, 3])];
        assert!(check_message(&m).is_ok());
    }

    #[test]
    fn snapshots_without_members_are_refused() {
        let mut m = Message::new(MessageType::Snapshot, 2, 1, Ballot::new(3, 2));
        m.snapshot = Some(Snapshot { index: 5, term: 1, members: vec![], ..Default::default() });
        assert!(check_message(&m).is_err());
        m.snapshot = Some(Snapshot { index: 5, term: 1, members: vec![1, 2], ..Default::default() });
        assert!(check_message(&m).is_ok());
    }
}
