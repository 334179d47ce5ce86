//! `consensus.sim`: runs the deterministic simulator of the core crate. Runs release the GIL.

use consensus_core::sim::{Faults, Report, SimConfig};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::config_error;
use crate::protocols;

fn faults_from(faults: Option<&Bound<'_, PyAny>>) -> PyResult<Faults> {
    let Some(faults) = faults else { return Ok(Faults::all()) };
    if let Ok(name) = faults.extract::<String>() {
        return match name.as_str() {
            "all" => Ok(Faults::all()),
            "none" => Ok(Faults::none()),
            other => Err(config_error("faults", format!("must be 'all', 'none' or a dict (got {other:?})"))),
        };
    }
    let dict = faults.cast::<PyDict>().map_err(|_| config_error("faults", "must be 'all', 'none' or a dict"))?;
    let mut out = Faults::all();
    for (key, value) in dict.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "drop_percent" => out.drop_percent = value.extract()?,
            "duplicate_percent" => out.duplicate_percent = value.extract()?,
            "max_delay_steps" => out.max_delay_steps = value.extract()?,
            "partitions" => out.partitions = value.extract()?,
            "asymmetric_partitions" => out.asymmetric_partitions = value.extract()?,
            "leader_isolation" => out.leader_isolation = value.extract()?,
            "crashes" => out.crashes = value.extract()?,
            "pauses" => out.pauses = value.extract()?,
            "campaigns" => out.campaigns = value.extract()?,
            "fault_per_mille_per_tick" => out.fault_per_mille_per_tick = value.extract()?,
            "max_nodes_down" => out.max_nodes_down = value.extract()?,
            other => return Err(config_error("faults", format!("unknown fault {other:?}"))),
        }
    }
    Ok(out)
}

fn config_from(nodes: usize, seed: u64, steps: Option<u64>, faults: Faults, liveness: bool) -> PyResult<SimConfig> {
    let mut cfg = SimConfig::new(seed);
    cfg.nodes = nodes;
    if let Some(steps) = steps {
        cfg.steps = steps;
    }
    cfg.faults = faults;
    cfg.liveness = liveness;
    cfg.validate().map_err(|reason| config_error("sim", reason))?;
    Ok(cfg)
}

fn report_dict<'py>(py: Python<'py>, r: &Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("protocol", r.protocol)?;
    d.set_item("seed", r.seed)?;
    d.set_item("ok", r.ok)?;
    d.set_item("violation", r.violation.clone())?;
    d.set_item("liveness_failure", r.liveness_failure)?;
    d.set_item("trace", r.trace.clone())?;
    d.set_item("trace_digest", r.trace_digest)?;
    d.set_item("events", r.events)?;
    d.set_item("steps", r.steps)?;
    d.set_item("ticks", r.ticks)?;
    d.set_item("drop_percent", r.drop_percent)?;
    d.set_item("leaders_seen", r.leaders_seen)?;
    d.set_item("max_term", r.max_term)?;
    d.set_item("entries_committed", r.entries_committed)?;
    d.set_item("proposals", r.proposals)?;
    d.set_item("proposals_dropped", r.proposals_dropped)?;
    d.set_item("leader_transfers", r.leader_transfers)?;
    d.set_item("reads", r.reads)?;
    d.set_item("reads_answered", r.reads_answered)?;
    d.set_item("messages_sent", r.messages_sent)?;
    d.set_item("messages_delivered", r.messages_delivered)?;
    d.set_item("messages_dropped", r.messages_dropped)?;
    d.set_item("messages_duplicated", r.messages_duplicated)?;
    d.set_item("crashes", r.crashes)?;
    d.set_item("restarts", r.restarts)?;
    d.set_item("pauses", r.pauses)?;
    d.set_item("partitions", r.partitions)?;
    d.set_item("compactions", r.compactions)?;
    d.set_item("snapshots_installed", r.snapshots_installed)?;
    d.set_item("liveness_ticks_to_leader", r.liveness_ticks_to_leader)?;
    d.set_item("liveness_ticks_to_commit", r.liveness_ticks_to_commit)?;
    d.set_item("summary", r.to_string())?;
    Ok(d)
}

/// Runs one simulation and returns its report as a dict.
#[pyfunction]
#[pyo3(signature = (protocol = "raft", nodes = 5, seed = 0, steps = None, faults = None, liveness = true))]
pub fn sim_run<'py>(
    py: Python<'py>,
    protocol: &str,
    nodes: usize,
    seed: u64,
    steps: Option<u64>,
    faults: Option<&Bound<'py, PyAny>>,
    liveness: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let protocol = protocols::find(protocol)?;
    let cfg = config_from(nodes, seed, steps, faults_from(faults)?, liveness)?;
    let report = py.detach(move || (protocol.simulate)(&cfg));
    report_dict(py, &report)
}

/// Runs seeds `[seed_start, seed_stop)` and returns the reports of the failing ones plus totals.
#[pyfunction]
#[pyo3(signature = (protocol = "raft", nodes = 5, seed_start = 0, seed_stop = 1, steps = None, faults = None))]
pub fn sim_run_many<'py>(
    py: Python<'py>,
    protocol: &str,
    nodes: usize,
    seed_start: u64,
    seed_stop: u64,
    steps: Option<u64>,
    faults: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let faults = faults_from(faults)?;
    let base = config_from(nodes, seed_start, steps, faults, true)?;
    let protocol = protocols::find(protocol)?;
    let (failures, totals) = py.detach(move || {
        let mut failures = Vec::new();
        let mut totals = [0u64; 6];
        for seed in seed_start..seed_stop {
            let cfg = SimConfig { seed, ..base.clone() };
            let report = (protocol.simulate)(&cfg);
            totals[0] += 1;
            totals[1] += report.leaders_seen;
            totals[2] += report.entries_committed;
            totals[3] += report.crashes;
            totals[4] += report.snapshots_installed;
            totals[5] += report.messages_dropped;
            if !report.ok {
                failures.push(report);
            }
        }
        (failures, totals)
    });
    let d = PyDict::new(py);
    d.set_item("runs", totals[0])?;
    d.set_item("leaders_seen", totals[1])?;
    d.set_item("entries_committed", totals[2])?;
    d.set_item("crashes", totals[3])?;
    d.set_item("snapshots_installed", totals[4])?;
    d.set_item("messages_dropped", totals[5])?;
    let failed = failures.iter().map(|r| report_dict(py, r)).collect::<PyResult<Vec<_>>>()?;
    d.set_item("failures", failed)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sim_run, m)?)?;
    m.add_function(wrap_pyfunction!(sim_run_many, m)?)?;
    Ok(())
}
