//! The deterministic simulator: a cluster of protocol cores, a simulated network and seeded faults,
//! with safety invariants checked at every step and a liveness check once the faults stop.
//!
//! One `u64` seed names one run: every random draw (faults, delays, workload, the cores' own
//! election timeouts) comes from `crate::rng::Rng` seeded by it, there is no clock and no
//! hashing with random state, so the same seed replays the same run event for event
//! (`Report::trace_digest`). A failing seed reports the last events before the violation.
//!
//! The simulator drives any `Protocol` through the Ready contract of docs/design.md §2 and is the one
//! place that orders it: `ready` → send `messages` → `persist` → send `persisted_messages` → apply
//! `committed` → `advance`.
//!
//! ```no_run
//! use consensus_core::sim::{run_raft, SimConfig};
//! let report = run_raft(&SimConfig::new(42));
//! assert!(report.ok, "{report}");
//! ```

mod engine;
pub mod hostile;
pub mod invariants;
pub mod network;
pub mod paxos;
pub mod raft;
pub mod trace;

use std::fmt;

use bytes::Bytes;

pub use self::engine::{run, ClusterView};
pub use self::invariants::{AppState, AppliedHistory, DurableFacts, SafetyChecker};
pub use self::paxos::{
    run_paxos, run_paxos_with_lease_reads, run_paxos_with_reconfiguration, PaxosAdapter, PaxosChecker,
    PaxosLeaseAdapter, PaxosReconfigAdapter,
};
pub use self::raft::{run_raft, RaftAdapter, RaftChecker};
use crate::contract::ReadyView;
use crate::role::Role;

/// Runs `runner` once per seed of `seeds`, spread over the machine's cores (at most 16 threads),
/// and returns every report in seed order. The test suites and tools run seed sweeps with it.
pub fn run_seeds(
    runner: fn(&SimConfig) -> Report,
    seeds: std::ops::Range<u64>,
    config: &(dyn Fn(u64) -> SimConfig + Sync),
) -> Vec<Report> {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(16) as u64;
    let mut reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = seeds.clone();
                scope.spawn(move || {
                    seeds.filter(|seed| seed % threads == t).map(|seed| runner(&config(seed))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a simulation panicked")).collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

/// What a node is built with: the protocol-independent part of its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOptions {
    pub election_tick: u64,
    pub heartbeat_tick: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Seeds the core's own PRNG; differs per node life so that a restarted node draws anew.
    pub seed: u64,
}

/// A protocol core as the simulator sees it: the Ready contract, split so that the simulator
/// (not the adapter) orders persist → send → apply → advance, plus the accessors the generic
/// checks need and a hook for the protocol's own invariants.
pub trait Protocol: Sized {
    /// Stable storage. It outlives a node: a crash drops the node, keeps this, and a restart
    /// builds a new node from it. Only what `persist` (and `compact`) wrote is in it.
    type Durable;
    /// One batch of work handed out by `ready`; its frames come from `ReadyView`.
    type Ready: ReadyView;
    /// State the protocol's invariant checks keep across steps.
    type Checker: Default;

    const NAME: &'static str;

    /// Empty storage for a member of a new cluster of `members`.
    fn new_durable(id: u64, members: &[u64]) -> Self::Durable;
    /// Builds a node from its durable state (a fresh start or a restart after a crash). `applied`
    /// is what the application already holds (the index of the snapshot it restored from).
    fn start(
        id: u64,
        members: &[u64],
        options: &NodeOptions,
        durable: &Self::Durable,
        applied: u64,
    ) -> Result<Self, String>;

    fn tick(&mut self);
    /// Starts an election now (as an election timeout would).
    fn campaign(&mut self);
    /// A frame from a peer. An error is a violation: the simulator only delivers frames that a
    /// correct peer encoded.
    fn step(&mut self, frame: &Bytes) -> Result<(), String>;
    /// Proposes a command. `Err` means dropped (no leader, transfer, ...), which is allowed.
    fn propose(&mut self, data: Bytes) -> Result<(), String>;
    /// Asks for a linearizable read barrier; answered by `read_states` of a later Ready.
    fn read_index(&mut self, _context: Bytes) -> Result<(), String> {
        Err("read_index is not supported".into())
    }

    fn has_ready(&self) -> bool;
    fn ready(&mut self) -> Self::Ready;
    /// Writes the Ready's durable part (hard state, entries, snapshot) to stable storage.
    /// `Err` when storage refuses the write, which is a violation (a correct core never asks
    /// for an impossible write).
    fn persist(durable: &mut Self::Durable, ready: &Self::Ready) -> Result<(), String>;
    /// A snapshot the application must restore from before applying: `(index, data)`.
    fn snapshot(ready: &Self::Ready) -> Option<(u64, Bytes)>;
    /// Committed commands to apply, in order: `(index, term, data)`.
    fn committed(ready: &Self::Ready) -> Vec<(u64, u64, Bytes)>;
    /// Answered read barriers: `(index, context)`.
    fn read_states(_ready: &Self::Ready) -> Vec<(u64, Bytes)> {
        Vec::new()
    }
    fn advance(&mut self, ready: Self::Ready);

    fn role(&self) -> Role;
    /// Whether the node's current leadership was handed to it by the previous leader (a
    /// leadership transfer); counted in `Report::leader_transfers`. Protocols whose workload
    /// asks for no transfers keep the default.
    fn leads_by_transfer(&self) -> bool {
        false
    }
    /// The leader this node knows of (0: unknown).
    fn leader(&self) -> u64;
    fn term(&self) -> u64;
    fn commit_index(&self) -> u64;
    /// The node's current hard state (what must be durable before its messages leave).
    fn hard_state(&self) -> DurableFacts;
    fn durable_hard_state(durable: &Self::Durable) -> DurableFacts;
    /// The application snapshot held in storage: `(index, data)`, index 0 when none.
    fn durable_snapshot(durable: &Self::Durable) -> (u64, Bytes);
    /// Records an application snapshot at the applied `index` and drops the log up to it. `Err`
    /// when storage refuses (already compacted there, ...): not a violation.
    fn compact(durable: &mut Self::Durable, index: u64, data: Bytes) -> Result<(), String>;

    /// The protocol's own invariants over every node (live or crashed) and the applied history.
    /// `full` asks for the expensive pairwise checks (every `SimConfig::full_check_every_steps`
    /// steps and at the end); otherwise only cheap incremental ones.
    fn check(checker: &mut Self::Checker, view: &ClusterView<'_, Self>, full: bool) -> Result<(), String>;

    /// One line on the node's state for a failure report (role, term, log, peers, ...).
    fn describe(&self) -> String {
        format!("{} term {} commit {}", self.role().as_str(), self.term(), self.commit_index())
    }

    /// Renders a frame for the failure trace.
    fn describe_frame(frame: &Bytes) -> String {
        format!("{} bytes", frame.len())
    }
}

/// Which faults a run injects. Every draw comes from the run's `Rng`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// The most frames a run drops, in percent: each run draws its own drop rate uniformly from
    /// `0..=drop_percent`, so a batch of seeds covers clean and lossy networks alike.
    pub drop_percent: u32,
    /// Frames delivered twice, in percent.
    pub duplicate_percent: u32,
    /// Each frame's delay is drawn from `[1, max_delay_steps]`; above 1 frames get reordered.
    pub max_delay_steps: u64,
    /// Symmetric partitions: the cluster splits in two sides that cannot talk.
    pub partitions: bool,
    /// One-way link cuts: A hears B but B does not hear A.
    pub asymmetric_partitions: bool,
    /// The current leader is cut off from everyone.
    pub leader_isolation: bool,
    /// Nodes crash (losing everything not persisted) and restart from storage.
    pub crashes: bool,
    /// Nodes stop (no ticks, no message processing; frames for them queue up) and resume.
    pub pauses: bool,
    /// Spurious `campaign()` calls at random nodes.
    pub campaigns: bool,
    /// Chance per tick, in per mille, that a new node fault (crash or pause) starts, and
    /// separately that a new partition starts.
    pub fault_per_mille_per_tick: u32,
    /// At most this many nodes are down (crashed or paused) at once.
    pub max_nodes_down: usize,
}

impl Faults {
    /// Every fault on; drop rate drawn per run from 0–30 %.
    pub fn all() -> Self {
        Faults {
            drop_percent: 30,
            duplicate_percent: 5,
            max_delay_steps: 12,
            partitions: true,
            asymmetric_partitions: true,
            leader_isolation: true,
            crashes: true,
            pauses: true,
            campaigns: true,
            fault_per_mille_per_tick: 15,
            max_nodes_down: 2,
        }
    }

    /// A perfect network (every frame arrives one step later, in order) and no node faults.
    pub fn none() -> Self {
        Faults {
            drop_percent: 0,
            duplicate_percent: 0,
            max_delay_steps: 1,
            partitions: false,
            asymmetric_partitions: false,
            leader_isolation: false,
            crashes: false,
            pauses: false,
            campaigns: false,
            fault_per_mille_per_tick: 0,
            max_nodes_down: 0,
        }
    }
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// Steps with faults on. A step is the network's unit of time; nodes tick every
    /// `steps_per_tick` steps.
    pub steps: u64,
    pub faults: Faults,
    pub election_tick: u64,
    pub heartbeat_tick: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub steps_per_tick: u64,
    /// Chance per step, in percent, of a proposal at a random node.
    pub propose_percent: u32,
    /// Chance per step, in per mille, of a read barrier at a random node.
    pub read_per_mille: u32,
    /// Every this many ticks each node compacts its log if it applied `compact_min_entries`
    /// entries past its last snapshot.
    pub compact_every_ticks: u64,
    pub compact_min_entries: u64,
    /// The expensive pairwise checks run every this many steps (and at the end).
    pub full_check_every_steps: u64,
    /// Run the liveness phase after the faults stop.
    pub liveness: bool,
    /// Bound of the liveness phase, in election timeouts (`election_tick` ticks each), for a
    /// leader to appear and again for a fresh proposal to be applied everywhere.
    pub liveness_election_timeouts: u64,
    /// Events kept for the failure trace.
    pub trace_events: usize,
}

impl SimConfig {
    /// 5 nodes, every fault on, 3000 fault steps (600 ticks, about 40 election timeouts).
    pub fn new(seed: u64) -> Self {
        SimConfig {
            nodes: 5,
            seed,
            steps: 3000,
            faults: Faults::all(),
            election_tick: 10,
            heartbeat_tick: 1,
            pre_vote: true,
            check_quorum: true,
            steps_per_tick: 5,
            propose_percent: 10,
            read_per_mille: 10,
            compact_every_ticks: 10,
            compact_min_entries: 16,
            full_check_every_steps: 100,
            liveness: true,
            liveness_election_timeouts: 10,
            trace_events: 300,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > 64 {
            return Err("nodes must be in 1..=64".into());
        }
        if self.steps_per_tick == 0 {
            return Err("steps_per_tick must be at least 1".into());
        }
        if self.faults.max_delay_steps == 0 {
            return Err("faults.max_delay_steps must be at least 1".into());
        }
        if self.faults.drop_percent > 100 || self.faults.duplicate_percent > 100 || self.propose_percent > 100 {
            return Err("percentages must be at most 100".into());
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return Err("need 0 < heartbeat_tick < election_tick".into());
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::new(0)
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub protocol: &'static str,
    pub seed: u64,
    pub ok: bool,
    /// The first broken property (safety or liveness), if any.
    pub violation: Option<String>,
    /// True when the violation is a liveness failure (no leader or no commit within the bound).
    pub liveness_failure: bool,
    /// The last events before the violation, formatted; empty when ok.
    pub trace: Vec<String>,
    /// A digest of every event of the run: equal for two runs of one seed.
    pub trace_digest: u64,
    pub events: u64,
    pub steps: u64,
    pub ticks: u64,
    /// The drop rate this run drew, in percent.
    pub drop_percent: u32,
    /// Distinct (term, leader) pairs seen.
    pub leaders_seen: u64,
    pub max_term: u64,
    /// The highest index applied by any node.
    pub entries_committed: u64,
    pub proposals: u64,
    pub proposals_dropped: u64,
    /// Leaderships won by a transfer election (the previous leader handed over).
    pub leader_transfers: u64,
    pub reads: u64,
    pub reads_answered: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub compactions: u64,
    /// Snapshots installed by nodes (each one sent by a leader and restored by the application).
    pub snapshots_installed: u64,
    /// Ticks after the heal until a leader of the highest term appeared.
    pub liveness_ticks_to_leader: Option<u64>,
    /// Ticks after the heal until the fresh proposal was applied on every node.
    pub liveness_ticks_to_commit: Option<u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.ok {
            "ok"
        } else if self.liveness_failure {
            "LIVENESS FAILURE"
        } else {
            "SAFETY VIOLATION"
        };
        writeln!(f, "{} seed {}: {status}", self.protocol, self.seed)?;
        if let Some(violation) = &self.violation {
            writeln!(f, "  violation: {violation}")?;
        }
        writeln!(
            f,
            "  {} steps, {} ticks, drop {}%, {} leaders seen, max term {}, {} entries committed",
            self.steps, self.ticks, self.drop_percent, self.leaders_seen, self.max_term, self.entries_committed
        )?;
        writeln!(
            f,
            "  proposals {} ({} dropped), reads {} ({} answered), {} leader transfers",
            self.proposals, self.proposals_dropped, self.reads, self.reads_answered, self.leader_transfers
        )?;
        writeln!(
            f,
            "  messages: {} sent, {} delivered, {} dropped, {} duplicated",
            self.messages_sent, self.messages_delivered, self.messages_dropped, self.messages_duplicated
        )?;
        writeln!(
            f,
            "  faults: {} crashes, {} restarts, {} pauses, {} partitions; {} compactions, {} snapshots installed",
            self.crashes, self.restarts, self.pauses, self.partitions, self.compactions, self.snapshots_installed
        )?;
        let ticks = |t: Option<u64>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
        write!(
            f,
            "  liveness: leader after {} ticks, commit everywhere after {} ticks; trace digest {:#018x}",
            ticks(self.liveness_ticks_to_leader),
            ticks(self.liveness_ticks_to_commit),
            self.trace_digest
        )?;
        if !self.trace.is_empty() {
            writeln!(f, "\n  last {} events:", self.trace.len())?;
            for line in &self.trace {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}
