//! Validation at the door (docs/wire-format.md): every check a Raft message must pass before it
//! may change any state. A message that fails is refused with `Error::Protocol` and changes
//! nothing; these are things no correct peer sends, so the caller may count and drop it.

use std::collections::BTreeSet;

use super::message::{ConfState, Entry, EntryKind, Message, MessageType, Snapshot};
use super::wire;
use crate::error::Result;
use crate::limits::{self, INDEX_MAX, TERM_MAX};
use crate::refuse;

/// The addressing checks: the message is for `id`, from another, non-zero node.
pub fn check_addressing(m: &Message, id: u64) -> Result<()> {
    limits::check_addressing(m.to, m.from, id)
}

/// Every check that needs only the message itself: ranges of the numbers, which types carry a
/// term, entries or a snapshot, and the shape of the entries and the snapshot.
pub fn check_message(m: &Message) -> Result<()> {
    check_ranges(m)?;
    match m.msg_type {
        MessageType::AppendEntries => check_append_entries(m)?,
        MessageType::Propose => check_proposed_entries(m)?,
        _ if !m.entries.is_empty() => return Err(refuse!(m, "this type carries no entries")),
        _ => {}
    }
    match (&m.snapshot, m.msg_type) {
        (Some(snapshot), MessageType::InstallSnapshot) => check_snapshot(m, snapshot),
        (Some(_), _) => Err(refuse!(m, "this type carries no snapshot")),
        _ => Ok(()),
    }
}

/// Only forwarded requests (proposals, reads, transfers) go without a term; no number is past
/// its limit.
fn check_ranges(m: &Message) -> Result<()> {
    let forwarded = matches!(m.msg_type, MessageType::Propose | MessageType::ReadIndex | MessageType::TransferLeader);
    if m.term == 0 && !forwarded {
        return Err(refuse!(m, "no term"));
    }
    if m.term > TERM_MAX || m.log_term > TERM_MAX {
        return Err(refuse!(m, format!("term {} or log term {} above TERM_MAX", m.term, m.log_term)));
    }
    for (field, value) in [("index", m.index), ("commit", m.commit), ("reject_hint", m.reject_hint)] {
        if value > INDEX_MAX {
            return Err(refuse!(m, format!("{field} {value} above INDEX_MAX")));
        }
    }
    Ok(())
}

/// Raft §5.3: the entries follow `index` without a gap, their terms never decrease, start at or
/// above `log_term` and stay at or below the leader's term; conf changes decode.
fn check_append_entries(m: &Message) -> Result<()> {
    let mut expected = m.index;
    let mut previous_term = m.log_term;
    for entry in &m.entries {
        expected = expected.checked_add(1).filter(|i| *i <= INDEX_MAX).ok_or_else(|| refuse!(m, "index overflow"))?;
        if entry.index != expected {
            return Err(refuse!(m, format!("entry {} where {expected} was expected", entry.index)));
        }
        if entry.term == 0 || entry.term < previous_term || entry.term > m.term {
            return Err(refuse!(
                m,
                format!(
                    "entry {} of term {} after term {previous_term} (message term {})",
                    entry.index, entry.term, m.term
                ),
            ));
        }
        previous_term = entry.term;
        check_entry_payload(m, entry)?;
    }
    Ok(())
}

/// Forwarded proposals get their index and term from the leader; only their payload is checked.
fn check_proposed_entries(m: &Message) -> Result<()> {
    m.entries.iter().try_for_each(|entry| check_entry_payload(m, entry))
}

fn check_entry_payload(m: &Message, entry: &Entry) -> Result<()> {
    if entry.kind == EntryKind::ConfChange {
        wire::decode_conf_change(&entry.data)
            .map_err(|e| refuse!(m, format!("entry {}: conf change does not decode: {e}", entry.index)))?;
    }
    Ok(())
}

fn check_snapshot(m: &Message, snapshot: &Snapshot) -> Result<()> {
    if snapshot.index == 0 || snapshot.index > INDEX_MAX {
        return Err(refuse!(m, format!("snapshot index {}", snapshot.index)));
    }
    if snapshot.term == 0 || snapshot.term > m.term {
        return Err(refuse!(m, format!("snapshot term {} (message term {})", snapshot.term, m.term)));
    }
    check_conf_state(&snapshot.conf_state).map_err(|reason| refuse!(m, format!("snapshot configuration: {reason}")))
}

/// A configuration a node could be in: voters, no id 0, no id twice in a list, no voter that is
/// also a learner, outgoing learners only inside a joint configuration.
pub fn check_conf_state(cs: &ConfState) -> std::result::Result<(), String> {
    if cs.voters.is_empty() {
        return Err("no voters".into());
    }
    let lists = [
        ("voters", &cs.voters),
        ("learners", &cs.learners),
        ("voters_outgoing", &cs.voters_outgoing),
        ("learners_next", &cs.learners_next),
    ];
    for (name, ids) in lists {
        let distinct: BTreeSet<u64> = ids.iter().copied().collect();
        if distinct.len() != ids.len() || distinct.contains(&0) {
            return Err(format!("{name} holds id 0 or an id twice"));
        }
    }
    if cs.learners.iter().any(|id| cs.voters.contains(id) || cs.voters_outgoing.contains(id)) {
        return Err("a learner is also a voter".into());
    }
    if cs.voters_outgoing.is_empty() && !cs.learners_next.is_empty() {
        return Err("learners_next outside a joint configuration".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use bytes::Bytes;

    fn append(index: u64, log_term: u64, term: u64, entries: &[(u64, u64)]) -> Message {
        let mut m = Message::new(MessageType::AppendEntries, 2, 1, term);
        m.index = index;
        m.log_term = log_term;
        m.entries =
            entries.iter().map(|&(i, t)| Entry::new(i, t, EntryKind::Normal, Bytes::from_static(b"x"))).collect();
        m
    }

    #[test]
    fn contiguous_entries_from_index_plus_one_pass() {
        assert!(check_message(&append(3, 1, 2, &[(4, 1), (5, 2)])).is_ok());
        assert!(check_message(&append(0, 0, 1, &[])).is_ok());
    }

    #[test]
    fn entries_not_starting_at_index_plus_one_or_with_a_gap_are_refused() {
        for entries in [&[(5, 1)][..], &[(4, 1), (6, 1)], &[(3, 1)], &[(4, 1), (4, 1)]] {
            assert!(matches!(check_message(&append(3, 1, 2, entries)), Err(Error::Protocol(_))), "{entries:?}");
        }
        assert!(check_message(&append(INDEX_MAX, 1, 2, &[(0, 1)])).is_err(), "index overflow");
    }

    #[test]
    fn entry_terms_that_decrease_or_exceed_the_message_term_are_refused() {
        assert!(check_message(&append(3, 2, 3, &[(4, 1)])).is_err(), "below log_term");
        assert!(check_message(&append(3, 1, 3, &[(4, 3), (5, 2)])).is_err(), "decreasing");
        assert!(check_message(&append(3, 1, 3, &[(4, 4)])).is_err(), "above the message term");
        assert!(check_message(&append(3, 1, 3, &[(4, 0)])).is_err(), "term 0");
    }

    #[test]
    fn terms_above_term_max_and_missing_terms_are_refused() {
        let mut m = Message::new(MessageType::Heartbeat, 2, 1, u64::MAX);
        assert!(check_message(&m).is_err());
        m.term = TERM_MAX;
        assert!(check_message(&m).is_ok());
        m.term = 0;
        assert!(check_message(&m).is_err());
        for forwarded in [MessageType::Propose, MessageType::ReadIndex, MessageType::TransferLeader] {
            assert!(check_message(&Message::new(forwarded, 2, 1, 0)).is_ok(), "{forwarded:?} carries no term");
        }
    }

    #[test]
    fn garbage_conf_change_in_an_append_is_refused() {
        let mut m = append(0, 0, 1, &[(1, 1)]);
        m.entries[0].kind = EntryKind::ConfChange;
        assert!(check_message(&m).is_err());
        m.entries[0].data = wire::encode_conf_change(&Default::default());
        assert!(check_message(&m).is_ok());
    }

    #[test]
    fn snapshot_with_an_impossible_configuration_is_refused() {
        let mut m = Message::new(MessageType::InstallSnapshot, 2, 1, 3);
        let good = ConfState { voters: vec![1, 2, 3], ..Default::default() };
        m.snapshot = Some(Snapshot { index: 5, term: 2, conf_state: good.clone(), data: Bytes::new() });
        assert!(check_message(&m).is_ok());
        for cs in [
            ConfState::default(),
            ConfState { voters: vec![1, 0], ..Default::default() },
            ConfState { voters: vec![1, 1], ..Default::default() },
            ConfState { voters: vec![1], learners: vec![1], ..Default::default() },
        ] {
            m.snapshot = Some(Snapshot { index: 5, term: 2, conf_state: cs.clone(), data: Bytes::new() });
            assert!(check_message(&m).is_err(), "{cs:?}");
        }
        m.snapshot = Some(Snapshot { index: 5, term: 4, conf_state: good, data: Bytes::new() });
        assert!(check_message(&m).is_err(), "snapshot term above the message term");
    }
}
