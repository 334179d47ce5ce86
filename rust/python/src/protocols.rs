//! The protocols this build runs, in one table: each one's name, its protocol id on the wire
//! (docs/wire-format.md) and its simulator. `_core.PROTOCOLS` exposes `(name, id)` pairs, and
//! `consensus.sim` looks protocols up here.

use consensus_core::codec::{PROTOCOL_PAXOS, PROTOCOL_RAFT};
use consensus_core::sim::{self, Report, SimConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub struct Protocol {
    pub name: &'static str,
    /// The protocol byte of its frames.
    pub wire_id: u8,
    pub simulate: fn(&SimConfig) -> Report,
}

pub const PROTOCOLS: &[Protocol] = &[
    Protocol { name: "raft", wire_id: PROTOCOL_RAFT, simulate: sim::run_raft },
    Protocol { name: "paxos", wire_id: PROTOCOL_PAXOS, simulate: sim::run_paxos },
];

/// The protocol called `name`; `ValueError` naming the available ones otherwise.
pub fn find(name: &str) -> PyResult<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name).ok_or_else(|| {
        let available: Vec<&str> = PROTOCOLS.iter().map(|p| p.name).collect();
        PyValueError::new_err(format!("unknown protocol {name:?} (available: {})", available.join(", ")))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let pairs: Vec<(&str, u8)> = PROTOCOLS.iter().map(|p| (p.name, p.wire_id)).collect();
    m.add("PROTOCOLS", pyo3::types::PyTuple::new(m.py(), pairs)?)
}
