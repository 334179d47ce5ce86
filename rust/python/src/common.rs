//! The value classes both protocols' modules export: `EntryKind` and `ReadState` (registered as
//! `RaftEntryKind` and `RaftReadState`, the names they had before Multi-Paxos shared them).

use bytes::Bytes;
use consensus_core::contract::ReadState as CoreReadState;
use consensus_core::paxos::EntryKind as PaxosEntryKind;
use consensus_core::raft::EntryKind as CoreEntryKind;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::bytes_of;

#[pyclass(name = "EntryKind", module = "consensus.raft", from_py_object, eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum EntryKind {
    NORMAL = 0,
    CONF_CHANGE = 1,
}

impl From<CoreEntryKind> for EntryKind {
    fn from(kind: CoreEntryKind) -> Self {
        match kind {
            CoreEntryKind::Normal => EntryKind::NORMAL,
            CoreEntryKind::ConfChange => EntryKind::CONF_CHANGE,
        }
    }
}

impl From<EntryKind> for CoreEntryKind {
    fn from(kind: EntryKind) -> Self {
        match kind {
            EntryKind::NORMAL => CoreEntryKind::Normal,
            EntryKind::CONF_CHANGE => CoreEntryKind::ConfChange,
        }
    }
}

impl From<PaxosEntryKind> for EntryKind {
    fn from(kind: PaxosEntryKind) -> Self {
        match kind {
            PaxosEntryKind::Normal => EntryKind::NORMAL,
            PaxosEntryKind::ConfChange => EntryKind::CONF_CHANGE,
        }
    }
}

/// A linearizable read may be served once the application applied up to `index`.
#[pyclass(name = "ReadState", module = "consensus.raft", from_py_object, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct ReadState {
    index: u64,
    context: Bytes,
}

impl From<&CoreReadState> for ReadState {
    fn from(read: &CoreReadState) -> Self {
        ReadState { index: read.index, context: read.context.clone() }
    }
}

#[pymethods]
impl ReadState {
    #[new]
    fn new(index: u64, context: &[u8]) -> Self {
        ReadState { index, context: bytes_of(context) }
    }
    #[getter]
    fn index(&self) -> u64 {
        self.index
    }
    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.context)
    }
    fn __repr__(&self) -> String {
        format!("ReadState(index={}, context={:?})", self.index, self.context)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RaftEntryKind", py.get_type::<EntryKind>())?;
    m.add("RaftReadState", py.get_type::<ReadState>())?;
    Ok(())
}
