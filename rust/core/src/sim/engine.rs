//! The run loop: builds the cluster, drives steps (ticks, deliveries, faults, workload), runs each
//! Ready in the one correct order, feeds the checkers and assembles the report.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;

use super::invariants::{AppState, AppliedHistory, SafetyChecker};
use super::network::{InFlight, LinkFaults, Network, SendOutcome};
use super::trace::{mix, DropReason, Event, Trace};
use super::{Checks, MemDurable, NodeOptions, Protocol, Report, SimConfig};
use crate::contract::{ProtocolNode, ReadyView};
use crate::rng::Rng;
use crate::role::Role;

/// Read barriers remembered while waiting for their answer (older ones are forgotten).
const PENDING_READS_MAX: usize = 4096;
/// The data of the liveness phase's fresh proposal (never a workload value: those are 8 bytes).
const LIVENESS_VALUE: &[u8] = b"liveness-probe";

/// What the protocol's invariant hook sees: every node (`None` while crashed), every node's
/// stable storage and the applied history. Index `i` is node `i + 1`.
pub struct ClusterView<'a, P: Protocol> {
    nodes: &'a [Option<P>],
    durables: &'a [P::Durable],
    history: &'a AppliedHistory,
}

impl<'a, P: Protocol> ClusterView<'a, P> {
    /// Invariant: `nodes.len() == durables.len()`.
    pub fn new(nodes: &'a [Option<P>], durables: &'a [P::Durable], history: &'a AppliedHistory) -> Self {
        assert_eq!(nodes.len(), durables.len(), "one durable state per node");
        ClusterView { nodes, durables, history }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `id` if it is running.
    pub fn node(&self, id: u64) -> Option<&'a P> {
        self.nodes[id as usize - 1].as_ref()
    }

    pub fn durable(&self, id: u64) -> &'a P::Durable {
        &self.durables[id as usize - 1]
    }

    pub fn history(&self) -> &'a AppliedHistory {
        self.history
    }
}

/// Why a run stopped.
enum Failure {
    Safety(String),
    Liveness(String),
}

impl From<String> for Failure {
    fn from(description: String) -> Self {
        Failure::Safety(description)
    }
}

type Outcome = Result<(), Failure>;

#[derive(Debug, Clone, Default)]
struct NodeMeta {
    paused: bool,
    /// When a crashed node restarts or a paused node resumes (0: not down).
    down_until_tick: u64,
    /// Lives started so far (the first start is life 1).
    lives: u64,
    last_role: Option<Role>,
    last_term: u64,
    last_leader: u64,
}

struct Simulation<P: Protocol> {
    cfg: SimConfig,
    members: Vec<u64>,
    rng: Rng,
    nodes: Vec<Option<P>>,
    durables: Vec<P::Durable>,
    meta: Vec<NodeMeta>,
    net: Network,
    trace: Trace,
    safety: SafetyChecker,
    checker: P::Checker,
    report: Report,
    step: u64,
    tick: u64,
    next_value: u64,
    next_read_token: u64,
    /// Read token → the lowest index a correct answer may carry.
    pending_reads: BTreeMap<u64, u64>,
    partition_until_tick: u64,
    /// The index at which the liveness probe was first applied.
    liveness_index: Option<u64>,
}

/// Runs one simulation of protocol `P`. Never panics: a panic inside a core is reported as a
/// violation with the trace that led to it.
pub fn run<P: Protocol>(cfg: &SimConfig) -> Report {
    let mut report = Report { protocol: P::NAME, seed: cfg.seed, ..Default::default() };
    if let Err(reason) = cfg.validate() {
        report.violation = Some(format!("invalid simulation config: {reason}"));
        return report;
    }
    let mut sim = Simulation::<P>::new(cfg.clone(), report);
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run_all())).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Failure::Safety(format!("panic: {message}")))
    });
    sim.finish(outcome)
}

impl<P: Protocol> Simulation<P> {
    fn new(cfg: SimConfig, mut report: Report) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let drop_percent = rng.range(0, u64::from(cfg.faults.drop_percent) + 1) as u32;
        report.drop_percent = drop_percent;
        let link = LinkFaults {
            drop_percent,
            duplicate_percent: cfg.faults.duplicate_percent,
            max_delay_steps: cfg.faults.max_delay_steps,
        };
        let members: Vec<u64> = (1..=cfg.nodes as u64).collect();
        let durables = members.iter().map(|id| P::new_durable(*id, &members)).collect();
        Simulation {
            members,
            rng,
            nodes: (0..cfg.nodes).map(|_| None).collect(),
            durables,
            meta: vec![NodeMeta::default(); cfg.nodes],
            net: Network::new(cfg.nodes, link),
            trace: Trace::new(cfg.trace_events),
            safety: SafetyChecker::new(),
            checker: P::Checker::default(),
            report,
            step: 0,
            tick: 0,
            next_value: 0,
            next_read_token: 0,
            pending_reads: BTreeMap::new(),
            partition_until_tick: 0,
            liveness_index: None,
            cfg,
        }
    }

    fn record(&mut self, event: Event) {
        self.trace.record(self.step, self.tick, event);
    }

    fn run_all(&mut self) -> Outcome {
        for id in 1..=self.cfg.nodes as u64 {
            self.start_node(id)?;
        }
        while self.step < self.cfg.steps {
            self.step_once(true)?;
        }
        self.check(true)?;
        if self.cfg.liveness {
            self.liveness()?;
            self.check(true)?;
        }
        Ok(())
    }

    fn finish(mut self, outcome: Outcome) -> Report {
        let mut report = std::mem::take(&mut self.report);
        match outcome {
            Ok(()) => report.ok = true,
            Err(failure) => {
                let (text, liveness) = match failure {
                    Failure::Safety(text) => (text, false),
                    Failure::Liveness(text) => (format!("liveness: {text}"), true),
                };
                report.violation = Some(format!("step {} tick {}: {text}", self.step, self.tick));
                report.liveness_failure = liveness;
                report.trace = self.trace.format(&|frame| P::describe_frame(frame));
                for (i, node) in self.nodes.iter().enumerate() {
                    let state = match node {
                        Some(node) if self.meta[i].paused => format!("paused, {}", node.describe()),
                        Some(node) => node.describe(),
                        None => "crashed".to_string(),
                    };
                    report.trace.push(format!("final state n{}: {state}", i + 1));
                }
            }
        }
        report.trace_digest = self.trace.digest();
        report.events = self.trace.count();
        report.steps = self.step;
        report.ticks = self.tick;
        report.leaders_seen = self.safety.leaders_seen() as u64;
        report.entries_committed = self.safety.history().last_index();
        report
    }

    fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some() && !self.meta[i].paused
    }

    fn nodes_down(&self) -> usize {
        (0..self.cfg.nodes).filter(|i| !self.is_up(*i)).count()
    }

    fn node_options(&self, id: u64, life: u64) -> NodeOptions {
        NodeOptions {
            election_tick: self.cfg.election_tick,
            heartbeat_tick: self.cfg.heartbeat_tick,
            pre_vote: self.cfg.pre_vote,
            check_quorum: self.cfg.check_quorum,
            seed: mix(self.cfg.seed, id << 32 | life),
        }
    }

    // ------------------------------------------------------------------ node lives

    /// Starts (or restarts) node `id` from its durable state; the application restores from the
    /// durable snapshot.
    fn start_node(&mut self, id: u64) -> Outcome {
        let i = id as usize - 1;
        let (index, data) = self.durables[i].app_snapshot();
        let app = AppState::from_snapshot(index, &data)?;
        self.safety.restart(id, app)?;
        self.safety.observe_durable(id, P::durable_hard_state(&self.durables[i]))?;
        let meta = &mut self.meta[i];
        meta.lives += 1;
        meta.down_until_tick = 0;
        meta.paused = false;
        meta.last_role = None;
        let life = meta.lives;
        let options = self.node_options(id, life);
        let node = P::start(id, &self.members, &options, &self.durables[i], app.applied)
            .map_err(|e| format!("node {id} failed to start from its storage: {e}"))?;
        self.nodes[i] = Some(node);
        if self.meta[i].lives > 1 {
            self.report.restarts += 1;
            self.record(Event::Restart { node: id, applied: app.applied });
        }
        self.after_input(i)
    }

    fn crash(&mut self, i: usize, down_ticks: u64) {
        let id = i as u64 + 1;
        self.nodes[i] = None;
        self.net.discard_held(id);
        self.meta[i].paused = false;
        self.meta[i].down_until_tick = self.tick + down_ticks;
        self.report.crashes += 1;
        self.record(Event::Crash { node: id });
    }

    fn pause(&mut self, i: usize, down_ticks: u64) {
        self.meta[i].paused = true;
        self.meta[i].down_until_tick = self.tick + down_ticks;
        self.report.pauses += 1;
        self.record(Event::Pause { node: i as u64 + 1 });
    }

    fn resume(&mut self, i: usize) {
        let id = i as u64 + 1;
        self.meta[i].paused = false;
        self.meta[i].down_until_tick = 0;
        let released = self.net.release(id, self.step);
        self.record(Event::Resume { node: id, released });
    }

    // ------------------------------------------------------------------ the Ready cycle

    /// After any input to node `i`: run its Ready cycles, then observe its role and commit.
    fn after_input(&mut self, i: usize) -> Outcome {
        self.process_ready(i)?;
        self.observe(i)
    }

    /// Hands node `id`'s frames to the network (which may drop, delay or duplicate them).
    fn send_frames(&mut self, id: u64, frames: &[(u64, Bytes)]) -> Outcome {
        for (to, frame) in frames {
            let to = *to;
            if to == 0 || to > self.cfg.nodes as u64 || to == id {
                return Err(format!("node {id} sent a frame to invalid node {to}").into());
            }
            self.report.messages_sent += 1;
            let outcome = self.net.send(self.step, id, to, frame.clone(), &mut self.rng);
            let reason = match outcome {
                SendOutcome::Queued => None,
                SendOutcome::Duplicated => {
                    self.report.messages_duplicated += 1;
                    self.trace.record(self.step, self.tick, Event::Duplicate { from: id, to });
                    None
                }
                SendOutcome::DroppedRandomly => Some(DropReason::Random),
                SendOutcome::DroppedByPartition => Some(DropReason::Partition),
                SendOutcome::DroppedQueueFull => Some(DropReason::QueueFull),
            };
            if let Some(reason) = reason {
                self.report.messages_dropped += 1;
                let event = Event::Drop { from: id, to, reason, frame: frame.clone() };
                self.trace.record(self.step, self.tick, event);
            }
        }
        Ok(())
    }

    /// The only place a Ready is handled: persist, check durable state, send, restore/apply,
    /// answer reads, advance. In that order.
    fn process_ready(&mut self, i: usize) -> Outcome {
        let id = i as u64 + 1;
        loop {
            let Some(node) = self.nodes[i].as_mut() else { return Ok(()) };
            if !node.core().has_ready() {
                return Ok(());
            }
            self.safety.observe_term(node.term());
            let at_ready = node.hard_state();
            let ready = node.core_mut().ready().expect("has_ready was true and the previous Ready was advanced");
            // 1. Send what may leave before the disk write: only under a term and vote that
            //    are already durable (checked, not trusted).
            if !ready.messages().is_empty() {
                let durable = P::durable_hard_state(&self.durables[i]);
                self.safety.check_sent_early(id, at_ready, durable)?;
                self.send_frames(id, ready.messages())?;
            }
            // 2. Persist.
            P::persist(&mut self.durables[i], &ready).map_err(|e| format!("node {id} could not persist: {e}"))?;
            let durable = P::durable_hard_state(&self.durables[i]);
            self.safety.check_persisted(id, at_ready, durable)?;
            self.safety.observe_durable(id, durable)?;
            // 3. Send what waited for the disk.
            self.send_frames(id, ready.persisted_messages())?;
            // 4. Restore, then apply.
            if let Some((index, data)) = P::Durable::installed_snapshot(&ready) {
                let app = AppState::from_snapshot(index, &data)?;
                self.safety.observe_restore(id, app)?;
                self.report.snapshots_installed += 1;
                self.trace.record(self.step, self.tick, Event::Restore { node: id, index });
            }
            for (index, term, data) in P::committed(&ready) {
                self.safety.observe_apply(id, index, term, &data)?;
                self.trace.record(self.step, self.tick, Event::Apply { node: id, index, term });
                if self.liveness_index.is_none() && data.as_ref() == LIVENESS_VALUE {
                    self.liveness_index = Some(index);
                }
            }
            for read in ready.read_states() {
                let (index, token) = (read.index, read_token(&read.context));
                if let Some(min_index) = self.pending_reads.remove(&token) {
                    self.report.reads_answered += 1;
                    self.trace.record(self.step, self.tick, Event::ReadState { node: id, token, index });
                    if index < min_index {
                        return Err(format!(
                            "linearizable read: read r{token} answered at index {index}, but index {min_index} \
                             was applied before it was asked"
                        )
                        .into());
                    }
                }
            }
            // 4. Advance.
            let node = self.nodes[i].as_mut().expect("still running");
            node.core_mut().advance(ready.mark()).expect("advance of the outstanding Ready");
        }
    }

    fn observe(&mut self, i: usize) -> Outcome {
        let id = i as u64 + 1;
        let Some(node) = self.nodes[i].as_ref() else { return Ok(()) };
        let core = node.core();
        let (role, term, leader, commit) = (core.role(), node.term(), core.leader(), core.commit_index());
        let by_transfer = role == Role::Leader && node.leads_by_transfer();
        self.safety.observe_term(term);
        if role == Role::Leader {
            self.safety.observe_leader(id, term)?;
        }
        self.safety.observe_commit(id, commit)?;
        self.report.max_term = self.report.max_term.max(term);
        let meta = &mut self.meta[i];
        if meta.last_role != Some(role) || meta.last_term != term || meta.last_leader != leader {
            if by_transfer {
                self.report.leader_transfers += 1;
            }
            meta.last_role = Some(role);
            meta.last_term = term;
            meta.last_leader = leader;
            self.record(Event::Role { node: id, role, term, leader });
        }
        Ok(())
    }

    fn check(&mut self, full: bool) -> Outcome {
        let view = ClusterView::new(&self.nodes, &self.durables, self.safety.history());
        self.checker.check(&view, full)?;
        Ok(())
    }

    // ------------------------------------------------------------------ steps

    fn step_once(&mut self, faults_on: bool) -> Outcome {
        self.step += 1;
        if self.step % self.cfg.steps_per_tick == 0 {
            self.tick += 1;
            self.on_tick(faults_on)?;
        }
        while let Some(message) = self.net.pop_due(self.step) {
            self.deliver(message)?;
        }
        if faults_on {
            self.workload()?;
        }
        let full = self.cfg.full_check_every_steps > 0 && self.step % self.cfg.full_check_every_steps == 0;
        self.check(full)
    }

    fn deliver(&mut self, message: InFlight) -> Outcome {
        let i = message.to as usize - 1;
        let (from, to) = (message.from, message.to);
        let reason = if self.nodes[i].is_none() {
            Some(DropReason::Crashed)
        } else if self.meta[i].paused {
            if self.net.hold(message.clone()) {
                return Ok(());
            }
            Some(DropReason::QueueFull)
        } else if self.net.is_blocked(from, to) {
            Some(DropReason::Partition)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.report.messages_dropped += 1;
            self.record(Event::Drop { from, to, reason, frame: message.frame });
            return Ok(());
        }
        self.report.messages_delivered += 1;
        self.record(Event::Deliver { from, to, frame: message.frame.clone() });
        let node = self.nodes[i].as_mut().expect("checked above");
        node.core_mut().step(&message.frame).map_err(|e| format!("node {to} refused a frame from {from}: {e}"))?;
        self.after_input(i)
    }

    fn on_tick(&mut self, faults_on: bool) -> Outcome {
        // Faults that end now.
        for i in 0..self.cfg.nodes {
            let until = self.meta[i].down_until_tick;
            if until != 0 && self.tick >= until {
                if self.nodes[i].is_none() {
                    self.start_node(i as u64 + 1)?;
                } else {
                    self.resume(i);
                }
            }
        }
        if self.partition_until_tick != 0 && self.tick >= self.partition_until_tick {
            self.partition_until_tick = 0;
            self.net.heal();
            self.record(Event::Heal);
        }
        if faults_on {
            self.inject_faults()?;
        }
        for i in 0..self.cfg.nodes {
            if self.is_up(i) {
                let node = self.nodes[i].as_mut().expect("up");
                node.core_mut().tick();
                node.after_tick();
                self.after_input(i)?;
            }
        }
        if self.cfg.compact_every_ticks > 0 && self.tick % self.cfg.compact_every_ticks == 0 {
            self.compact_logs();
        }
        Ok(())
    }

    fn compact_logs(&mut self) {
        for i in 0..self.cfg.nodes {
            if !self.is_up(i) {
                continue;
            }
            let id = i as u64 + 1;
            let app = self.safety.app(id);
            let (snapshot_index, _) = self.durables[i].app_snapshot();
            if app.applied < snapshot_index + self.cfg.compact_min_entries.max(1) {
                continue;
            }
            if self.durables[i].compact(app.applied, app.snapshot_data()).is_ok() {
                self.report.compactions += 1;
                self.record(Event::Compact { node: id, index: app.applied });
            }
        }
    }

    /// The current leader with the highest term among running nodes, if any.
    fn current_leader(&self) -> Option<usize> {
        let max_term = self.nodes.iter().flatten().map(|n| n.term()).max()?;
        (0..self.cfg.nodes)
            .find(|i| self.nodes[*i].as_ref().is_some_and(|n| n.core().role() == Role::Leader && n.term() == max_term))
    }

    fn random_node(&mut self) -> usize {
        self.rng.range(0, self.cfg.nodes as u64) as usize
    }

    fn inject_faults(&mut self) -> Outcome {
        let faults = self.cfg.faults;
        let n = self.cfg.nodes;
        // Node faults: crash or pause.
        if (faults.crashes || faults.pauses)
            && self.rng.chance_per_mille(faults.fault_per_mille_per_tick)
            && self.nodes_down() < faults.max_nodes_down
        {
            // A third of node faults hit the leader, where they hurt most.
            let leader = self.current_leader();
            let pick = match leader {
                Some(l) if self.rng.range(0, 3) == 0 => l,
                _ => self.random_node(),
            };
            let crash = faults.crashes && (!faults.pauses || self.rng.range(0, 2) == 0);
            if self.is_up(pick) {
                if crash {
                    let ticks = self.rng.range(5, 80);
                    self.crash(pick, ticks);
                } else {
                    let ticks = self.rng.range(3, 40);
                    self.pause(pick, ticks);
                }
            }
        }
        // Partitions.
        let mut kinds: Vec<&'static str> = Vec::with_capacity(3);
        if faults.partitions {
            kinds.push("symmetric");
        }
        if faults.asymmetric_partitions {
            kinds.push("asymmetric");
        }
        if faults.leader_isolation {
            kinds.push("leader-isolation");
        }
        if !kinds.is_empty()
            && self.partition_until_tick == 0
            && n > 1
            && self.rng.chance_per_mille(faults.fault_per_mille_per_tick)
        {
            let kind = kinds[self.rng.range(0, kinds.len() as u64) as usize];
            let until = self.tick + self.rng.range(10, 100);
            let side_mask = match kind {
                "symmetric" => {
                    let mask = self.rng.range(1, (1u64 << n) - 1);
                    self.net.split(mask);
                    Some(mask)
                }
                "asymmetric" => {
                    let mut cut = 0;
                    for from in 1..=n as u64 {
                        for to in 1..=n as u64 {
                            if from != to && self.rng.chance(25) {
                                self.net.set_blocked(from, to, true);
                                cut += 1;
                            }
                        }
                    }
                    (cut > 0).then_some(0)
                }
                _ => self.current_leader().map(|l| {
                    let mask = 1u64 << l;
                    self.net.split(mask);
                    mask
                }),
            };
            if let Some(side_mask) = side_mask {
                self.partition_until_tick = until;
                self.report.partitions += 1;
                self.record(Event::Partition { kind, side_mask });
            }
        }
        // Spurious elections.
        if faults.campaigns && self.rng.chance_per_mille(5) {
            let i = self.random_node();
            if self.is_up(i) {
                self.record(Event::Campaign { node: i as u64 + 1 });
                self.nodes[i].as_mut().expect("up").core_mut().campaign();
                self.after_input(i)?;
            }
        }
        Ok(())
    }

    fn workload(&mut self) -> Outcome {
        if self.rng.chance(self.cfg.propose_percent) {
            let i = self.random_node();
            if self.is_up(i) {
                self.next_value += 1;
                let value = self.next_value;
                let data = Bytes::copy_from_slice(&value.to_le_bytes());
                let accepted = self.nodes[i].as_mut().expect("up").propose(data).is_ok();
                self.report.proposals += 1;
                if !accepted {
                    self.report.proposals_dropped += 1;
                }
                self.record(Event::Propose { node: i as u64 + 1, value, accepted });
                self.after_input(i)?;
            }
        }
        if self.rng.chance_per_mille(self.cfg.read_per_mille) {
            let i = self.random_node();
            if self.is_up(i) {
                self.next_read_token += 1;
                let token = self.next_read_token;
                let min_index = self.safety.history().last_index();
                let context = Bytes::copy_from_slice(&token.to_le_bytes());
                if self.nodes[i].as_mut().expect("up").core_mut().read_index(context).is_ok() {
                    self.report.reads += 1;
                    if self.pending_reads.len() >= PENDING_READS_MAX {
                        self.pending_reads.pop_first();
                    }
                    self.pending_reads.insert(token, min_index);
                    self.record(Event::Read { node: i as u64 + 1, token, min_index });
                }
                self.after_input(i)?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ liveness

    /// Heals everything, then requires a leader within the bound and a fresh proposal applied on
    /// every node within the bound again.
    fn liveness(&mut self) -> Outcome {
        self.record(Event::Note("faults stop: liveness phase"));
        for i in 0..self.cfg.nodes {
            if self.nodes[i].is_none() {
                self.start_node(i as u64 + 1)?;
            } else if self.meta[i].paused {
                self.resume(i);
            }
        }
        self.partition_until_tick = 0;
        self.net.heal();
        self.net.faults.drop_percent = 0;
        self.net.faults.duplicate_percent = 0;
        self.record(Event::Heal);
        let heal_tick = self.tick;
        let bound_ticks = self.cfg.liveness_election_timeouts * self.cfg.election_tick;
        while self.current_leader().is_none() {
            if self.tick - heal_tick > bound_ticks {
                return Err(Failure::Liveness(format!(
                    "no leader within {} election timeouts ({bound_ticks} ticks) after healing",
                    self.cfg.liveness_election_timeouts
                )));
            }
            self.step_once(false)?;
        }
        self.report.liveness_ticks_to_leader = Some(self.tick - heal_tick);
        let start_tick = self.tick;
        let mut proposed_at_tick: Option<u64> = None;
        loop {
            if let Some(index) = self.liveness_index {
                let all = (1..=self.cfg.nodes as u64).all(|id| self.safety.app(id).applied >= index);
                if all {
                    self.report.liveness_ticks_to_commit = Some(self.tick - heal_tick);
                    return Ok(());
                }
            }
            if self.tick - start_tick > bound_ticks {
                return Err(Failure::Liveness(format!(
                    "a fresh proposal was not applied on every node within {} election timeouts \
                     ({bound_ticks} ticks) of a leader appearing (first applied at {:?})",
                    self.cfg.liveness_election_timeouts, self.liveness_index
                )));
            }
            // (Re)propose at the current leader until some node applies the probe: a leader can
            // still lose an uncommitted entry when it is deposed.
            let retry_due = match proposed_at_tick {
                None => true,
                Some(t) => self.tick >= t + 2 * self.cfg.election_tick,
            };
            if self.liveness_index.is_none() && retry_due {
                if let Some(l) = self.current_leader() {
                    let accepted = self.nodes[l]
                        .as_mut()
                        .expect("leader runs")
                        .propose(Bytes::from_static(LIVENESS_VALUE))
                        .is_ok();
                    self.record(Event::Propose { node: l as u64 + 1, value: 0, accepted });
                    if accepted {
                        proposed_at_tick = Some(self.tick);
                    }
                    self.after_input(l)?;
                }
            }
            self.step_once(false)?;
        }
    }
}

fn read_token(context: &Bytes) -> u64 {
    context.as_ref().try_into().map(u64::from_le_bytes).unwrap_or(0)
}
