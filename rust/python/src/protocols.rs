//! The protocols this build runs: each one's identity (`consensus_core::ProtocolId`: its name and
//! its protocol byte on the wire, docs/wire-format.md) and its simulator. `_core.PROTOCOLS` exposes
//! `(name, wire id)` pairs, which the Python registry (`consensus.protocols`) takes its ids from,
//! and `consensus.sim` looks protocols up here.

use consensus_core::sim::{self, Report, SimConfig};
use consensus_core::ProtocolId;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub struct Protocol {
    pub id: ProtocolId,
    pub simulate: fn(&SimConfig) -> Report,
}

/// One row per `ProtocolId::ALL`, in that order.
pub const PROTOCOLS: &[Protocol] = &[
    Protocol { id: ProtocolId::Raft, simulate: sim::run_raft },
    Protocol { id: ProtocolId::Paxos, simulate: sim::run_paxos },
];

/// The protocol called `name`; `ValueError` naming the available ones otherwise.
pub fn find(name: &str) -> PyResult<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.id.name() == name).ok_or_else(|| {
        let available: Vec<&str> = PROTOCOLS.iter().map(|p| p.id.name()).collect();
        PyValueError::new_err(format!("unknown protocol {name:?} (available: {})", available.join(", ")))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    debug_assert!(PROTOCOLS.iter().map(|p| p.id).eq(ProtocolId::ALL), "one row per protocol, in id order");
    let pairs: Vec<(&str, u8)> = PROTOCOLS.iter().map(|p| (p.id.name(), p.id.frame_byte())).collect();
    m.add("PROTOCOLS", pyo3::types::PyTuple::new(m.py(), pairs)?)
}
