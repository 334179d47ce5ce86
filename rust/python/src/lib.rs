//! `consensus._core`: the PyO3 bindings of `consensus-core` and `consensus-storage`. This crate
//! converts between Python and Rust and holds no protocol logic; every protocol decision lives in
//! the core crate. Calls that do not need the GIL release it (file writes and fsyncs, simulator
//! runs); the crate starts no thread of its own. The public names are re-exported by the
//! pure-Python package `consensus`.
//!
//! Layout: `node`, `storage`, `convert`, `common`, `role` and `errors` are what every protocol
//! shares; `raft` and `paxos` hold only what differs and never import each other.

use pyo3::prelude::*;

mod common;
mod convert;
mod errors;
mod node;
mod paxos;
mod protocols;
mod raft;
mod role;
mod sim;
mod storage;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<role::Role>()?;
    common::register(m)?;
    protocols::register(m)?;
    raft::register(m)?;
    paxos::register(m)?;
    sim::register(m)?;
    Ok(())
}
