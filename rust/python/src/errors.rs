//! The one place where core errors become Python exceptions (docs/design.md §3):
//!
//! ```text
//! ConsensusError
//! ├── NotLeaderError        .leader_hint (0 = unknown)
//! ├── ProposalDroppedError  .reason ("no_leader", "transfer_in_progress", "uncommitted_bytes",
//! │                          "entry_too_large", "too_many_entries", "context_too_large",
//! │                          "too_many_pending_reads", "conf_change_pending",
//! │                          "multiple_conf_changes", "empty_proposal"; "unknown" if raised in Python)
//! ├── ConfigError           .field
//! ├── DecodeError
//! ├── StorageError          .kind ("compacted", "unavailable", "snapshot_out_of_date", "corrupt",
//! │                          "io", "poisoned", "other"; "other" if raised in Python)
//! └── ProtocolError
//! ```
//!
//! The attributes carry the core's typed reason (`DropReason::code`, `StorageError::kind`), so
//! callers branch on them and never on the message text, which is for people and may change.

use consensus_core::{Error, StorageError as CoreStorageError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(consensus, ConsensusError, PyException, "Base class of every error raised by consensus.");
create_exception!(
    consensus,
    NotLeaderError,
    ConsensusError,
    "This node is not the leader; `leader_hint` names the leader it knows (0: unknown)."
);
create_exception!(
    consensus,
    ProposalDroppedError,
    ConsensusError,
    "A proposal or read was not accepted (no leader, transfer in progress, a limit reached); retry later."
);
create_exception!(consensus, ConfigError, ConsensusError, "An invalid configuration; the message names the field.");
create_exception!(consensus, DecodeError, ConsensusError, "Bytes from a peer or a file could not be decoded.");
create_exception!(consensus, StorageError, ConsensusError, "Persisted state is missing, damaged or inconsistent.");
create_exception!(
    consensus,
    ProtocolError,
    ConsensusError,
    "The protocol was used out of order (for example `advance` with a stale Ready) or a peer broke it."
);

/// Converts a core error to its Python exception.
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Decode(_) => DecodeError::new_err(message),
        Error::ProposalDropped { reason, .. } => {
            with_attr(ProposalDroppedError::new_err(message), "reason", reason.code())
        }
        Error::NotLeader { leader_hint } => Python::attach(|py| {
            let err = NotLeaderError::new_err(message);
            // Setting an attribute on a fresh exception instance cannot fail in practice; if it
            // ever does, the exception is still raised without the hint.
            let _ = err.value(py).setattr("leader_hint", leader_hint);
            err
        }),
        Error::Config { field, reason } => Python::attach(|py| {
            let err = ConfigError::new_err(format!("{field}: {reason}"));
            let _ = err.value(py).setattr("field", field);
            err
        }),
        Error::Storage(storage) => with_attr(StorageError::new_err(message), "kind", storage.kind()),
        Error::Protocol(_) => ProtocolError::new_err(message),
    }
}

pub fn storage_to_py(error: CoreStorageError) -> PyErr {
    with_attr(StorageError::new_err(error.to_string()), "kind", error.kind())
}

/// Sets `name` on the exception instance. Setting an attribute on a fresh exception cannot fail in
/// practice; if it ever does, the exception keeps its class-level default.
fn with_attr(err: PyErr, name: &str, value: &'static str) -> PyErr {
    Python::attach(|py| {
        let _ = err.value(py).setattr(name, value);
    });
    err
}

/// A `ConfigError` for a field given a value of the wrong range.
pub fn config_error(field: &'static str, reason: impl Into<String>) -> PyErr {
    to_py(Error::Config { field, reason: reason.into() })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ConsensusError", py.get_type::<ConsensusError>())?;
    m.add("NotLeaderError", py.get_type::<NotLeaderError>())?;
    m.add("ProposalDroppedError", py.get_type::<ProposalDroppedError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    // Class-level defaults so the attributes exist even on instances raised from Python.
    py.get_type::<NotLeaderError>().setattr("leader_hint", 0u64)?;
    py.get_type::<ConfigError>().setattr("field", "")?;
    py.get_type::<ProposalDroppedError>().setattr("reason", "unknown")?;
    py.get_type::<StorageError>().setattr("kind", "other")?;
    Ok(())
}
