//! `consensus._core`: the PyO3 bindings of `consensus-core`. This crate only converts between
//! Python and Rust; every protocol decision lives in the core crate. The public names are
//! re-exported by the pure-Python package `consensus`.

use pyo3::prelude::*;

mod errors;
mod paxos;
mod raft;
mod role;
mod sim;
mod storage;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<role::Role>()?;
    raft::register(m)?;
    paxos::register(m)?;
    sim::register(m)?;
    storage::register(m)?;
    Ok(())
}
