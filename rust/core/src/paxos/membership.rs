//! Membership as a function of the slot: the α-window rule of Paxos Made Simple §3. A
//! reconfiguration chosen at slot `i` with window `α` governs every slot above `i + α`; the leader
//! never has a slot beyond its commit index plus α in flight, so the configuration of every slot it
//! proposes follows from slots already chosen.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::message::{Value, ValueKind};
use crate::codec::{FrameReader, FrameWriter};
use crate::error::DecodeError;

/// Version byte of a reconfiguration record (the one command of a `RECONFIG` value).
pub const RECONFIG_RECORD_VERSION: u8 = 1;
/// Most members of one configuration.
pub const MAX_MEMBERS: usize = 4096;

/// Encodes a reconfiguration record: version (u8), α (u64), member count (u32), ids (u64 each).
pub fn encode_reconfig(alpha: u64, members: &[u64]) -> Bytes {
    let mut w = FrameWriter::unframed(1 + 8 + 4 + 8 * members.len());
    w.put_u8(RECONFIG_RECORD_VERSION);
    w.put_u64(alpha);
    w.put_count(members.len());
    for id in members {
        w.put_u64(*id);
    }
    w.finish()
}

/// Decodes a reconfiguration record into `(α, members)`.
pub fn decode_reconfig(record: &Bytes) -> Result<(u64, Vec<u64>), DecodeError> {
    let mut r = FrameReader::unframed(record);
    let version = r.get_u8()?;
    if version != RECONFIG_RECORD_VERSION {
        return Err(DecodeError::Version(version));
    }
    let alpha = r.get_u64()?;
    let count = r.get_count("reconfig.members", MAX_MEMBERS, 8)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(r.get_u64()?);
    }
    r.finish()?;
    if members.is_empty() || members.contains(&0) {
        return Err(DecodeError::InvalidField { field: "reconfig.members", value: members.len() as u64 });
    }
    Ok((alpha, members))
}

/// The `(α, members)` of a reconfiguration value, if it is a well-formed one. A malformed one
/// (which a correct leader never proposes) changes nothing, on every replica alike.
pub fn reconfig_of(value: &Value) -> Option<(u64, Vec<u64>)> {
    if value.kind != ValueKind::Reconfig {
        return None;
    }
    match value.commands.as_slice() {
        [record] => decode_reconfig(record).ok(),
        _ => None,
    }
}

/// Whether `voters` holds a majority of `members`.
pub fn is_majority(members: &[u64], voters: &BTreeSet<u64>) -> bool {
    let votes = members.iter().filter(|id| voters.contains(id)).count();
    votes > members.len() / 2
}

/// Configurations keyed by the first slot they govern. Invariant: never empty; each configuration
/// is sorted and free of duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    configs: BTreeMap<u64, Vec<u64>>,
}

fn normalized(members: &[u64]) -> Vec<u64> {
    let mut members = members.to_vec();
    members.sort_unstable();
    members.dedup();
    members
}

impl Membership {
    /// `members` governs every slot from `first_slot` on.
    pub fn new(first_slot: u64, members: &[u64]) -> Self {
        Membership { configs: BTreeMap::from([(first_slot, normalized(members))]) }
    }

    /// Rebuilds a membership from the configuration at `first_slot` and later ones.
    pub fn with_pending(first_slot: u64, members: &[u64], pending: &[(u64, Vec<u64>)]) -> Self {
        let mut membership = Membership::new(first_slot, members);
        for (from_slot, members) in pending {
            if *from_slot > first_slot {
                membership.configs.insert(*from_slot, normalized(members));
            }
        }
        membership
    }

    /// The configuration governing `slot`.
    pub fn at(&self, slot: u64) -> &[u64] {
        self.configs
            .range(..=slot)
            .next_back()
            .or_else(|| self.configs.iter().next())
            .map(|(_, members)| members.as_slice())
            .expect("a membership is never empty")
    }

    /// The last configuration known (it governs every slot from its first one on).
    pub fn latest(&self) -> &[u64] {
        self.configs.values().next_back().map(Vec::as_slice).expect("a membership is never empty")
    }

    /// The first slot the latest configuration governs. Above the commit index + 1 while a
    /// decided change has not taken effect yet.
    pub fn latest_first_slot(&self) -> u64 {
        self.configs.keys().next_back().copied().expect("a membership is never empty")
    }

    /// Every configuration governing a slot at or above `slot`.
    pub fn from_slot(&self, slot: u64) -> Vec<&[u64]> {
        let mut out = vec![self.at(slot)];
        out.extend(self.configs.range(slot + 1..).map(|(_, m)| m.as_slice()));
        out
    }

    /// Configurations starting above `slot`: `(first slot, members)`.
    pub fn pending_after(&self, slot: u64) -> Vec<(u64, Vec<u64>)> {
        self.configs.range(slot + 1..).map(|(s, m)| (*s, m.clone())).collect()
    }

    /// Every node of a configuration governing a slot at or above `slot`.
    pub fn nodes_from(&self, slot: u64) -> BTreeSet<u64> {
        self.from_slot(slot).into_iter().flatten().copied().collect()
    }

    /// Whether `id` is in a configuration governing a slot at or above `slot` (no allocation).
    pub fn is_node_from(&self, slot: u64, id: u64) -> bool {
        self.at(slot).contains(&id) || self.configs.range(slot + 1..).any(|(_, members)| members.contains(&id))
    }

    /// Whether a configuration starts at a slot in `lo..=hi`: the set of configurations
    /// governing slots from `hi` on differs from the one from `lo` on.
    pub fn changes_within(&self, lo: u64, hi: u64) -> bool {
        lo <= hi && self.configs.range(lo..=hi).next().is_some()
    }

    /// Records that `value` was chosen at `slot`: a reconfiguration takes effect above `slot + α`.
    pub fn on_chosen(&mut self, slot: u64, value: &Value) {
        if let Some((alpha, members)) = reconfig_of(value) {
            self.configs.insert(slot.saturating_add(alpha).saturating_add(1), normalized(&members));
        }
    }

    /// Forgets configurations that only govern slots below `first_slot`.
    pub fn trim(&mut self, first_slot: u64) {
        let current = self.at(first_slot).to_vec();
        self.configs = self.configs.split_off(&(first_slot + 1));
        self.configs.insert(first_slot, current);
    }

    /// Whether `voters` holds a majority of every configuration governing slots from `slot` on.
    pub fn has_quorums_from(&self, slot: u64, voters: &BTreeSet<u64>) -> bool {
        self.from_slot(slot).iter().all(|members| is_majority(members, voters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_chosen_at_i_governs_slots_above_i_plus_alpha() {
        let mut m = Membership::new(1, &[3, 1, 2]);
        let value = Value { kind: ValueKind::Reconfig, round: 1, commands: vec![encode_reconfig(4, &[1, 2, 3, 4])] };
        m.on_chosen(10, &value);
        assert_eq!(m.at(14), &[1, 2, 3]);
        assert_eq!(m.at(15), &[1, 2, 3, 4]);
        assert_eq!(m.from_slot(12).len(), 2);
        assert_eq!(m.latest_first_slot(), 15);
        assert!(m.has_quorums_from(12, &BTreeSet::from([1, 2, 3])));
        assert!(!m.has_quorums_from(12, &BTreeSet::from([1, 2])), "2 of 4 is no majority");
        m.trim(16);
        assert_eq!(m.at(1), &[1, 2, 3, 4]);
    }

    #[test]
    fn malformed_records_change_nothing() {
        let mut m = Membership::new(1, &[1, 2, 3]);
        let bad = Value { kind: ValueKind::Reconfig, round: 1, commands: vec![Bytes::from_static(b"\x01\x00")] };
        m.on_chosen(1, &bad);
        let empty = Value { kind: ValueKind::Reconfig, round: 1, commands: vec![encode_reconfig(1, &[])] };
        m.on_chosen(1, &empty);
        assert_eq!(m.latest(), &[1, 2, 3]);
        assert_eq!(decode_reconfig(&encode_reconfig(7, &[5, 6])).unwrap(), (7, vec![5, 6]));
    }
}
