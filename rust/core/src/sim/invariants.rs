//! Protocol-independent safety checks, fed by the simulator as events happen. Each `observe_*`
//! returns `Err(description)` the moment a property breaks. Tests feed them fabricated histories
//! to prove each check fires.
//!
//! - Election safety: at most one leader per term over the whole run (Raft Figure 3).
//! - State machine safety: every node applies the same `(term, data)` at each index, and its state
//!   digest after index `i` equals the global digest chain at `i` (also after restoring a snapshot).
//! - Applies are contiguous: index `applied + 1` every time.
//! - The commit index never decreases within a node's life.
//! - Durable hard state: the persisted term never decreases and the persisted vote never changes
//!   within a term, across restarts; after `persist`, durable state equals the node's state at
//!   `ready()` time (persist-before-send: the messages of that Ready reflect durable state only).
//! - Linearizable reads: a read's answer index is at least every index applied anywhere before the
//!   read was asked.

use std::collections::BTreeMap;

use super::trace::{hash_bytes, mix};

/// The part of a node's state that must be durable before it sends anything: the term (ballot,
/// epoch), the vote (promise) and the commit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurableFacts {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// What the cluster has applied: per index the entry's term, its fingerprint, the state digest
/// after applying it and the highest term any node had when it was first applied. Index 0 is the
/// empty state. Invariant: all four vectors have the same length, `last_index() + 1`.
#[derive(Debug, Clone)]
pub struct AppliedHistory {
    terms: Vec<u64>,
    entry_hashes: Vec<u64>,
    digests: Vec<u64>,
    term_bounds: Vec<u64>,
}

impl Default for AppliedHistory {
    fn default() -> Self {
        AppliedHistory { terms: vec![0], entry_hashes: vec![0], digests: vec![0], term_bounds: vec![0] }
    }
}

impl AppliedHistory {
    /// The highest index any node has applied.
    pub fn last_index(&self) -> u64 {
        self.terms.len() as u64 - 1
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        self.terms.get(index as usize).copied()
    }

    pub fn entry_hash(&self, index: u64) -> Option<u64> {
        self.entry_hashes.get(index as usize).copied()
    }

    pub fn digest(&self, index: u64) -> Option<u64> {
        self.digests.get(index as usize).copied()
    }

    /// The highest term any node had when `index` was first applied: the entry was committed in
    /// a term at or below it, so every leader of a higher term must hold it (leader
    /// completeness). Non-decreasing in `index`.
    pub fn term_bound(&self, index: u64) -> Option<u64> {
        self.term_bounds.get(index as usize).copied()
    }
}

/// The fingerprint of one entry: its term and data.
pub fn entry_hash(term: u64, data: &[u8]) -> u64 {
    mix(term, hash_bytes(data))
}

/// The simulated state machine of one node: the digest chain of everything it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppState {
    pub applied: u64,
    pub digest: u64,
}

impl AppState {
    /// Snapshot data: the digest, 8 bytes little-endian.
    pub fn snapshot_data(&self) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(&self.digest.to_le_bytes())
    }

    /// Restores from a snapshot at `index`. Data that is not 8 bytes cannot be ours.
    pub fn from_snapshot(index: u64, data: &[u8]) -> Result<AppState, String> {
        if index == 0 {
            return Ok(AppState::default());
        }
        let bytes: [u8; 8] = data
            .try_into()
            .map_err(|_| format!("snapshot at {index} carries {} bytes of data, not a digest", data.len()))?;
        Ok(AppState { applied: index, digest: u64::from_le_bytes(bytes) })
    }
}

#[derive(Debug, Clone, Default)]
struct NodeRecord {
    app: AppState,
    /// The highest commit index seen in this life.
    commit_this_life: u64,
    /// The last durable hard state seen (survives restarts).
    durable: DurableFacts,
}

/// Generic safety checks over a run; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SafetyChecker {
    /// The leader of each term seen so far.
    leaders: BTreeMap<u64, u64>,
    history: AppliedHistory,
    nodes: BTreeMap<u64, NodeRecord>,
    /// The highest term any node has had.
    cluster_term: u64,
}

impl SafetyChecker {
    pub fn new() -> Self {
        SafetyChecker::default()
    }

    pub fn history(&self) -> &AppliedHistory {
        &self.history
    }

    pub fn app(&self, node: u64) -> AppState {
        self.nodes.get(&node).map(|r| r.app).unwrap_or_default()
    }

    /// Distinct (term, leader) pairs seen.
    pub fn leaders_seen(&self) -> usize {
        self.leaders.len()
    }

    /// Some node has reached `term` (call before it applies anything in that term).
    pub fn observe_term(&mut self, term: u64) {
        self.cluster_term = self.cluster_term.max(term);
    }

    /// `node` is leader of `term`. Returns whether this is the first sighting of that leadership.
    pub fn observe_leader(&mut self, node: u64, term: u64) -> Result<bool, String> {
        match self.leaders.get(&term) {
            Some(&other) if other != node => {
                Err(format!("election safety: nodes {other} and {node} are both leader of term {term}"))
            }
            Some(_) => Ok(false),
            None => {
                self.leaders.insert(term, node);
                Ok(true)
            }
        }
    }

    /// The node's commit index now.
    pub fn observe_commit(&mut self, node: u64, commit: u64) -> Result<(), String> {
        let record = self.nodes.entry(node).or_default();
        if commit < record.commit_this_life {
            return Err(format!(
                "commit index of node {node} went back from {} to {commit} within one life",
                record.commit_this_life
            ));
        }
        record.commit_this_life = commit;
        Ok(())
    }

    /// A node (re)starts with the application restored from its durable snapshot.
    pub fn restart(&mut self, node: u64, app: AppState) -> Result<(), String> {
        let record = self.nodes.entry(node).or_default();
        record.commit_this_life = 0;
        record.app = AppState::default();
        self.observe_restore(node, app)
    }

    /// The node's application was replaced by a snapshot.
    pub fn observe_restore(&mut self, node: u64, app: AppState) -> Result<(), String> {
        if app.applied > 0 {
            match self.history.digest(app.applied) {
                Some(digest) if digest == app.digest => {}
                Some(digest) => {
                    return Err(format!(
                        "state machine safety: node {node} restored a snapshot at {} with digest {:#x}, \
                         but the state applied there is {digest:#x}",
                        app.applied, app.digest
                    ))
                }
                None => {
                    return Err(format!(
                        "node {node} restored a snapshot at {} but nothing was ever applied there \
                         (history ends at {})",
                        app.applied,
                        self.history.last_index()
                    ))
                }
            }
        }
        self.nodes.entry(node).or_default().app = app;
        Ok(())
    }

    /// The node applied the entry `(index, term, data)`.
    pub fn observe_apply(&mut self, node: u64, index: u64, term: u64, data: &[u8]) -> Result<(), String> {
        let record = self.nodes.entry(node).or_default();
        if index != record.app.applied + 1 {
            return Err(format!("node {node} applied index {index} right after {}", record.app.applied));
        }
        let hash = entry_hash(term, data);
        let digest = mix(record.app.digest, hash);
        record.app = AppState { applied: index, digest };
        let history = &mut self.history;
        if index <= history.last_index() {
            let i = index as usize;
            if history.entry_hashes[i] != hash || history.terms[i] != term {
                return Err(format!(
                    "state machine safety: node {node} applied a different entry at index {index} \
                     (term {term}, fingerprint {hash:#x}) than was applied before (term {}, fingerprint {:#x})",
                    history.terms[i], history.entry_hashes[i]
                ));
            }
            if history.digests[i] != digest {
                return Err(format!(
                    "state machine safety: node {node}'s state after index {index} differs from the state \
                     other nodes reached there"
                ));
            }
        } else {
            history.terms.push(term);
            history.entry_hashes.push(hash);
            history.digests.push(digest);
            history.term_bounds.push(self.cluster_term.max(term));
        }
        Ok(())
    }

    /// The durable hard state just after a persist (or at restart).
    pub fn observe_durable(&mut self, node: u64, facts: DurableFacts) -> Result<(), String> {
        let record = self.nodes.entry(node).or_default();
        let before = record.durable;
        if facts.term < before.term {
            return Err(format!("durable term of node {node} went back from {} to {}", before.term, facts.term));
        }
        if facts.term == before.term && before.vote != 0 && facts.vote != before.vote {
            return Err(format!(
                "durable vote of node {node} changed within term {} from {} to {}",
                facts.term, before.vote, facts.vote
            ));
        }
        record.durable = facts;
        Ok(())
    }

    /// Send-before-persist only under a durable term and vote: frames a Ready lets leave before its
    /// write were produced under the term and vote storage already holds.
    pub fn check_sent_early(&self, node: u64, at_ready: DurableFacts, durable: DurableFacts) -> Result<(), String> {
        if (at_ready.term, at_ready.vote) != (durable.term, durable.vote) {
            return Err(format!(
                "send-before-persist: node {node} let frames leave under term/vote {:?} while storage holds {:?}",
                (at_ready.term, at_ready.vote),
                (durable.term, durable.vote)
            ));
        }
        Ok(())
    }

    /// Persist-before-send: after persisting a Ready, durable state equals the node's state at
    /// the time the Ready (and its messages) was produced.
    pub fn check_persisted(&self, node: u64, at_ready: DurableFacts, durable: DurableFacts) -> Result<(), String> {
        if at_ready != durable {
            return Err(format!(
                "persist-before-send: node {node} produced its messages with {at_ready:?} but durable state \
                 after persisting is {durable:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut c = SafetyChecker::new();
        assert_eq!(c.observe_leader(1, 3), Ok(true));
        assert_eq!(c.observe_leader(1, 3), Ok(false));
        assert!(c.observe_leader(2, 4).is_ok());
        assert!(c.observe_leader(2, 3).unwrap_err().contains("election safety"));
    }

    #[test]
    fn different_entries_at_one_index_are_caught() {
        let mut c = SafetyChecker::new();
        c.observe_apply(1, 1, 1, b"a").unwrap();
        c.observe_apply(2, 1, 1, b"a").unwrap();
        assert!(c.observe_apply(3, 1, 1, b"b").unwrap_err().contains("state machine safety"));
        assert!(c.observe_apply(2, 3, 1, b"c").is_err(), "gap");
    }

    #[test]
    fn restore_must_match_the_applied_state() {
        let mut c = SafetyChecker::new();
        c.observe_apply(1, 1, 1, b"a").unwrap();
        c.observe_apply(1, 2, 1, b"b").unwrap();
        let good = c.app(1);
        assert!(c.restart(2, good).is_ok());
        c.observe_apply(2, 3, 2, b"c").unwrap();
        assert!(c.observe_restore(3, AppState { applied: 2, digest: 7 }).is_err());
        assert!(c.observe_restore(3, AppState { applied: 9, digest: 7 }).is_err());
    }

    #[test]
    fn durable_term_and_vote_are_checked() {
        let mut c = SafetyChecker::new();
        c.observe_durable(1, DurableFacts { term: 2, vote: 0, commit: 0 }).unwrap();
        c.observe_durable(1, DurableFacts { term: 2, vote: 3, commit: 0 }).unwrap();
        assert!(c.observe_durable(1, DurableFacts { term: 2, vote: 4, commit: 0 }).is_err());
        assert!(c.observe_durable(1, DurableFacts { term: 1, vote: 3, commit: 0 }).is_err());
        let at_ready = DurableFacts { term: 3, vote: 1, commit: 0 };
        assert!(c.check_persisted(1, at_ready, DurableFacts { term: 2, vote: 1, commit: 0 }).is_err());
        assert!(c.check_persisted(1, at_ready, at_ready).is_ok());
    }

    #[test]
    fn commit_going_back_within_a_life_is_caught() {
        let mut c = SafetyChecker::new();
        c.observe_commit(1, 5).unwrap();
        assert!(c.observe_commit(1, 4).is_err());
        c.restart(1, AppState::default()).unwrap();
        c.observe_commit(1, 2).unwrap();
    }
}
