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
pub mod memory;
pub mod network;
pub mod paxos;
pub mod raft;
pub mod trace;

use std::fmt;

use bytes::Bytes;

pub use self::engine::{run, ClusterView};
pub use self::invariants::{AppState, AppliedHistory, DurableFacts, SafetyChecker};
pub use self::memory::MemDurable;
pub use self::paxos::{
    run_paxos, run_paxos_with_lease_reads, run_paxos_with_reconfiguration, PaxosAdapter, PaxosChecker,
    PaxosLeaseAdapter, PaxosReconfigAdapter,
};
pub use self::raft::{run_raft, RaftAdapter, RaftChecker};
use crate::contract::ProtocolNode;

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

/// A protocol's own invariants.
pub trait Checks<P: Protocol> {
    /// Checks every node (live or crashed) and the applied history. `full` asks for the expensive
    /// pairwise checks (every `SimConfig::full_check_every_steps` steps and at the end);
    /// otherwise only cheap incremental ones.
    fn check(&mut self, view: &ClusterView<'_, P>, full: bool) -> Result<(), String>;
}

/// A protocol without invariants of its own: only the generic checks run.
impl<P: Protocol> Checks<P> for () {
    fn check(&mut self, _view: &ClusterView<'_, P>, _full: bool) -> Result<(), String> {
        Ok(())
    }
}

/// The Ready a protocol's core hands out.
pub type ReadyOf<P> = <<P as Protocol>::Node as ProtocolNode>::Ready;

/// What the simulator adds to a protocol core (`ProtocolNode`, which gives tick, step, propose,
/// read_index, the Ready contract and the role/leader/term/commit getters): the node's stable
/// storage and how a Ready lands in it, the facts the generic checks read from it, the protocol's
/// own invariants and how to describe a node or a frame in a failure report. The simulator (not
/// the adapter) orders persist → send → apply → advance.
pub trait Protocol: Sized {
    /// The protocol's core.
    type Node: ProtocolNode;
    /// Stable storage. It outlives a node: a crash drops the node, keeps this, and a restart
    /// builds a new node from it. Only what `persist` (and `compact`) wrote is in it.
    type Durable: MemDurable<Ready = ReadyOf<Self>>;
    /// The protocol's own invariants, and the state they keep across steps.
    type Checker: Default + Checks<Self>;

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

    fn core(&self) -> &Self::Node;
    fn core_mut(&mut self) -> &mut Self::Node;

    /// What the simulator does besides the core's own tick (a transport's timeouts, ...).
    fn after_tick(&mut self) {}
    /// Proposes a workload command. `Err` means dropped (no leader, transfer, ...), which is
    /// allowed. A protocol may turn some values into other requests (transfers, reconfigurations).
    fn propose(&mut self, data: Bytes) -> Result<(), String> {
        self.core_mut().propose(data).map(|_| ()).map_err(|e| e.to_string())
    }
    /// The term as the generic checks count it: one leader per term. A core whose term is not
    /// unique per leader (a Paxos round) maps it here.
    fn term(&self) -> u64 {
        self.core().term()
    }
    /// Whether the node's current leadership was handed to it by the previous leader (a
    /// leadership transfer); counted in `Report::leader_transfers`. Protocols whose workload
    /// asks for no transfers keep the default.
    fn leads_by_transfer(&self) -> bool {
        false
    }

    /// Writes the Ready's durable part to stable storage. `Err` when storage refuses the write,
    /// which is a violation (a correct core never asks for an impossible write).
    fn persist(durable: &mut Self::Durable, ready: &ReadyOf<Self>) -> Result<(), String> {
        durable.persist(ready).map_err(|e| e.to_string())
    }
    /// Committed commands to apply, in order: `(index, term, data)`.
    fn committed(ready: &ReadyOf<Self>) -> Vec<(u64, u64, Bytes)>;

    /// The node's current hard state (what must be durable before its messages leave).
    fn hard_state(&self) -> DurableFacts;
    fn durable_hard_state(durable: &Self::Durable) -> DurableFacts;

    /// One line on the node's state for a failure report (role, term, log, peers, ...).
    fn describe(&self) -> String {
        let core = self.core();
        format!("{} term {} commit {}", core.role().as_str(), self.term(), core.commit_index())
    }

    /// Renders a decoded frame for the failure trace.
    fn describe_message(message: &<Self::Node as ProtocolNode>::Message) -> String;

    /// Renders a frame for the failure trace.
    fn describe_frame(frame: &Bytes) -> String {
        match Self::Node::decode(frame) {
            Ok(message) => Self::describe_message(&message),
            Err(e) => format!("undecodable frame ({e})"),
        }
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
