//! The event trace: a bounded ring buffer of compact events, formatted only when a run fails, and
//! a running digest over every event of the run (two runs of one seed must agree on it).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::role::Role;

/// Mixes two words into one (the SplitMix64 finalizer over their combination).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.rotate_left(23) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes: the fingerprint of an entry's data.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Why a frame never reached its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Random,
    Partition,
    Crashed,
    QueueFull,
}

/// What happened. Frames are kept as shared `Bytes` (no copy) so that a failing run can print them
/// decoded.
#[derive(Debug, Clone)]
pub enum Event {
    Deliver {
        from: u64,
        to: u64,
        frame: Bytes,
    },
    Drop {
        from: u64,
        to: u64,
        reason: DropReason,
        frame: Bytes,
    },
    Duplicate {
        from: u64,
        to: u64,
    },
    Crash {
        node: u64,
    },
    Restart {
        node: u64,
        applied: u64,
    },
    Pause {
        node: u64,
    },
    Resume {
        node: u64,
        released: usize,
    },
    /// `side_mask`: one side of a symmetric split; `asymmetric`: one-way links were cut.
    Partition {
        kind: &'static str,
        side_mask: u64,
    },
    Heal,
    Role {
        node: u64,
        role: Role,
        term: u64,
        leader: u64,
    },
    Campaign {
        node: u64,
    },
    Propose {
        node: u64,
        value: u64,
        accepted: bool,
    },
    Apply {
        node: u64,
        index: u64,
        term: u64,
    },
    Compact {
        node: u64,
        index: u64,
    },
    Restore {
        node: u64,
        index: u64,
    },
    Read {
        node: u64,
        token: u64,
        min_index: u64,
    },
    ReadState {
        node: u64,
        token: u64,
        index: u64,
    },
    Note(&'static str),
}

impl Event {
    fn fingerprint(&self) -> u64 {
        match self {
            Event::Deliver { from, to, frame } => mix(mix(1, *from * 64 + *to), frame.len() as u64),
            Event::Drop { from, to, reason, frame } => {
                mix(mix(2, *from * 64 + *to), (*reason as u64) << 32 | frame.len() as u64)
            }
            Event::Duplicate { from, to } => mix(3, *from * 64 + *to),
            Event::Crash { node } => mix(4, *node),
            Event::Restart { node, applied } => mix(mix(5, *node), *applied),
            Event::Pause { node } => mix(6, *node),
            Event::Resume { node, released } => mix(mix(7, *node), *released as u64),
            Event::Partition { kind, side_mask } => mix(mix(8, hash_bytes(kind.as_bytes())), *side_mask),
            Event::Heal => mix(9, 0),
            Event::Role { node, role, term, leader } => mix(mix(mix(10, *node * 8 + *role as u64), *term), *leader),
            Event::Campaign { node } => mix(11, *node),
            Event::Propose { node, value, accepted } => mix(mix(12, *node * 2 + *accepted as u64), *value),
            Event::Apply { node, index, term } => mix(mix(mix(13, *node), *index), *term),
            Event::Compact { node, index } => mix(mix(14, *node), *index),
            Event::Restore { node, index } => mix(mix(15, *node), *index),
            Event::Read { node, token, min_index } => mix(mix(mix(16, *node), *token), *min_index),
            Event::ReadState { node, token, index } => mix(mix(mix(17, *node), *token), *index),
            Event::Note(text) => mix(18, hash_bytes(text.as_bytes())),
        }
    }

    /// One line; `describe` renders a frame (the protocol's decoder).
    pub fn format(&self, describe: &dyn Fn(&Bytes) -> String) -> String {
        match self {
            Event::Deliver { from, to, frame } => format!("deliver {from}->{to} {}", describe(frame)),
            Event::Drop { from, to, reason, frame } => {
                format!("drop {from}->{to} ({reason:?}) {}", describe(frame))
            }
            Event::Duplicate { from, to } => format!("duplicate {from}->{to}"),
            Event::Crash { node } => format!("crash n{node}"),
            Event::Restart { node, applied } => format!("restart n{node} applied={applied}"),
            Event::Pause { node } => format!("pause n{node}"),
            Event::Resume { node, released } => format!("resume n{node} ({released} held frames released)"),
            Event::Partition { kind, side_mask } => format!("partition {kind} mask={side_mask:#b}"),
            Event::Heal => "heal all partitions".to_string(),
            Event::Role { node, role, term, leader } => {
                format!("n{node} is {} term={term} leader={leader}", role.as_str())
            }
            Event::Campaign { node } => format!("campaign n{node}"),
            Event::Propose { node, value, accepted } => {
                format!("propose v{value} at n{node}{}", if *accepted { "" } else { " (dropped)" })
            }
            Event::Apply { node, index, term } => format!("n{node} applies {index}@{term}"),
            Event::Compact { node, index } => format!("n{node} compacts to {index}"),
            Event::Restore { node, index } => format!("n{node} restores snapshot {index}"),
            Event::Read { node, token, min_index } => format!("read r{token} at n{node} (needs >= {min_index})"),
            Event::ReadState { node, token, index } => format!("n{node} read r{token} answered at {index}"),
            Event::Note(text) => (*text).to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub step: u64,
    pub tick: u64,
    pub event: Event,
}

/// The last `capacity` events and a digest of all of them.
#[derive(Debug, Clone)]
pub struct Trace {
    records: VecDeque<Record>,
    capacity: usize,
    digest: u64,
    count: u64,
}

impl Trace {
    pub fn new(capacity: usize) -> Self {
        Trace { records: VecDeque::with_capacity(capacity.min(4096)), capacity, digest: 0, count: 0 }
    }

    pub fn record(&mut self, step: u64, tick: u64, event: Event) {
        self.digest = mix(mix(self.digest, step), event.fingerprint());
        self.count += 1;
        if self.capacity == 0 {
            return;
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(Record { step, tick, event });
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn format(&self, describe: &dyn Fn(&Bytes) -> String) -> Vec<String> {
        self.records.iter().map(|r| format!("#{:<6} t{:<5} {}", r.step, r.tick, r.event.format(describe))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_events_and_digests_all() {
        let mut a = Trace::new(3);
        let mut b = Trace::new(3);
        for i in 0..10 {
            a.record(i, 0, Event::Crash { node: i });
            b.record(i, 0, Event::Crash { node: i });
        }
        assert_eq!(a.digest(), b.digest());
        let lines = a.format(&|_| String::new());
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with("crash n9"));
        b.record(10, 0, Event::Heal);
        assert_ne!(a.digest(), b.digest());
    }
}
