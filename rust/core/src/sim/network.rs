//! The simulated network: every frame in flight with its delivery step, link faults drawn from the
//! run's `Rng` (drop, duplicate, delay, hence reordering), partitions as a matrix of blocked
//! one-way links, and per-node holding queues for paused nodes.

use std::collections::{BinaryHeap, VecDeque};

use bytes::Bytes;

use crate::rng::Rng;

/// Frames in flight before new ones are dropped (a named bound, TigerStyle).
pub const IN_FLIGHT_FRAMES_MAX: usize = 100_000;
/// Frames held for one paused node before new ones are dropped.
pub const HELD_FRAMES_PER_NODE_MAX: usize = 20_000;

/// One frame on the wire. Ordered by delivery step, then by send order, so that equal delivery
/// steps keep a deterministic order.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub deliver_at_step: u64,
    pub sequence: u64,
    pub from: u64,
    pub to: u64,
    pub frame: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at_step, self.sequence) == (other.deliver_at_step, other.sequence)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed so that `BinaryHeap` (a max-heap) pops the earliest frame first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.deliver_at_step, other.sequence).cmp(&(self.deliver_at_step, self.sequence))
    }
}

/// What happened to a frame handed to `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Queued,
    /// Queued twice (each copy with its own delay).
    Duplicated,
    DroppedRandomly,
    DroppedByPartition,
    DroppedQueueFull,
}

/// Link-level fault rates in force right now (the liveness phase turns them off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFaults {
    pub drop_percent: u32,
    pub duplicate_percent: u32,
    /// Each frame's delay is drawn from `[1, max_delay_steps]`. Invariant: `>= 1`.
    pub max_delay_steps: u64,
}

pub struct Network {
    nodes: usize,
    queue: BinaryHeap<InFlight>,
    /// `blocked[(from - 1) * nodes + (to - 1)]`: the one-way link from `from` to `to` is cut.
    blocked: Vec<bool>,
    /// Frames that arrived at a paused node, in arrival order.
    held: Vec<VecDeque<InFlight>>,
    next_sequence: u64,
    pub faults: LinkFaults,
}

impl Network {
    pub fn new(nodes: usize, faults: LinkFaults) -> Self {
        assert!(faults.max_delay_steps >= 1, "max_delay_steps must be at least 1");
        Network {
            nodes,
            queue: BinaryHeap::new(),
            blocked: vec![false; nodes * nodes],
            held: (0..nodes).map(|_| VecDeque::new()).collect(),
            next_sequence: 0,
            faults,
        }
    }

    fn link(&self, from: u64, to: u64) -> usize {
        (from as usize - 1) * self.nodes + (to as usize - 1)
    }

    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.blocked[self.link(from, to)]
    }

    pub fn set_blocked(&mut self, from: u64, to: u64, blocked: bool) {
        if from != to {
            let link = self.link(from, to);
            self.blocked[link] = blocked;
        }
    }

    pub fn is_partitioned(&self) -> bool {
        self.blocked.iter().any(|b| *b)
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Cuts every link between `side` (a bit per node, bit 0 = node 1) and the rest, both ways.
    pub fn split(&mut self, side_mask: u64) {
        for from in 1..=self.nodes as u64 {
            for to in 1..=self.nodes as u64 {
                let a = side_mask >> (from - 1) & 1;
                let b = side_mask >> (to - 1) & 1;
                if a != b {
                    self.set_blocked(from, to, true);
                }
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn enqueue(&mut self, now_step: u64, from: u64, to: u64, frame: Bytes, rng: &mut Rng) {
        let delay = rng.range(1, self.faults.max_delay_steps + 1);
        self.next_sequence += 1;
        self.queue.push(InFlight { deliver_at_step: now_step + delay, sequence: self.next_sequence, from, to, frame });
    }

    /// Puts a frame on the wire, applying the link faults. Every random draw comes from `rng`.
    pub fn send(&mut self, now_step: u64, from: u64, to: u64, frame: Bytes, rng: &mut Rng) -> SendOutcome {
        if self.is_blocked(from, to) {
            return SendOutcome::DroppedByPartition;
        }
        if rng.chance(self.faults.drop_percent) {
            return SendOutcome::DroppedRandomly;
        }
        if self.queue.len() >= IN_FLIGHT_FRAMES_MAX {
            return SendOutcome::DroppedQueueFull;
        }
        let duplicate = rng.chance(self.faults.duplicate_percent);
        if duplicate {
            self.enqueue(now_step, from, to, frame.clone(), rng);
        }
        self.enqueue(now_step, from, to, frame, rng);
        if duplicate {
            SendOutcome::Duplicated
        } else {
            SendOutcome::Queued
        }
    }

    /// The next frame due at or before `now_step`, if any.
    pub fn pop_due(&mut self, now_step: u64) -> Option<InFlight> {
        if self.queue.peek().is_some_and(|m| m.deliver_at_step <= now_step) {
            self.queue.pop()
        } else {
            None
        }
    }

    /// Holds a frame for a paused node. Returns false when the holding queue is full (dropped).
    pub fn hold(&mut self, message: InFlight) -> bool {
        let queue = &mut self.held[message.to as usize - 1];
        if queue.len() >= HELD_FRAMES_PER_NODE_MAX {
            return false;
        }
        queue.push_back(message);
        true
    }

    /// Releases the frames held for `node` (it resumed): they arrive over the next few steps, in
    /// the order they were held.
    pub fn release(&mut self, node: u64, now_step: u64) -> usize {
        let held = std::mem::take(&mut self.held[node as usize - 1]);
        let count = held.len();
        for (i, mut message) in held.into_iter().enumerate() {
            self.next_sequence += 1;
            message.deliver_at_step = now_step + 1 + (i as u64 / 8);
            message.sequence = self.next_sequence;
            self.queue.push(message);
        }
        count
    }

    /// Forgets the frames held for a node that crashed.
    pub fn discard_held(&mut self, node: u64) -> usize {
        let queue = &mut self.held[node as usize - 1];
        let count = queue.len();
        queue.clear();
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> LinkFaults {
        LinkFaults { drop_percent: 0, duplicate_percent: 0, max_delay_steps: 5 }
    }

    #[test]
    fn frames_come_out_in_delivery_order() {
        let mut rng = Rng::new(1);
        let mut net = Network::new(3, faults());
        for i in 0..50u8 {
            net.send(0, 1, 2, Bytes::from(vec![i]), &mut rng);
        }
        let mut last = 0;
        let mut count = 0;
        for step in 0..=5 {
            while let Some(m) = net.pop_due(step) {
                assert!(m.deliver_at_step >= last && m.deliver_at_step <= step);
                last = m.deliver_at_step;
                count += 1;
            }
        }
        assert_eq!(count, 50);
    }

    #[test]
    fn split_cuts_both_directions_only_across_sides() {
        let mut net = Network::new(5, faults());
        net.split(0b00011);
        assert!(net.is_blocked(1, 3) && net.is_blocked(3, 1));
        assert!(!net.is_blocked(1, 2) && !net.is_blocked(3, 5));
        net.heal();
        assert!(!net.is_partitioned());
    }

    #[test]
    fn held_frames_are_released_in_order() {
        let mut rng = Rng::new(2);
        let mut net = Network::new(2, faults());
        net.send(0, 1, 2, Bytes::from_static(b"a"), &mut rng);
        net.send(0, 1, 2, Bytes::from_static(b"b"), &mut rng);
        while let Some(m) = net.pop_due(10) {
            assert!(net.hold(m));
        }
        assert_eq!(net.release(2, 10), 2);
        let first = net.pop_due(11).unwrap();
        let second = net.pop_due(11).unwrap();
        assert!(first.sequence < second.sequence);
    }
}
