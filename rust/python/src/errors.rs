//! The one place where core errors become Python exceptions (docs/design.md §3):
//!
//! ```text
//! ConsensusError
//! ├── NotLeaderError        .leader_hint (0 = unknown)
//! ├── ProposalDroppedError  .reason ("no_leader", "transfer_in_progress", "uncommitted_bytes",
//! │                          "entry_too_large", "too_many_entries", "context_too_large",
//! │                          "too_many_pending_reads", "conf_change_pending",
//! │                          "multiple_conf_changes", "empty_proposal"; "unknown" if not given)
//! ├── ConfigError           .field ("" if not given)
//! ├── DecodeError
//! ├── StorageError          .kind ("compacted", "unavailable", "snapshot_out_of_date", "corrupt",
//! │                          "io", "poisoned", "other"; "other" if not given)
//! └── ProtocolError
//! ```
//!
//! The attributes carry the core's typed reason (`DropReason::code`, `StorageError::kind`), so
//! callers branch on them and never on the message text, which is for people and may change.
//! Each is a keyword of the constructor (`NotLeaderError(message, leader_hint=3)`), for Rust and
//! Python alike; left out, the class attribute answers, so a Python subclass that sets its own
//! (`BusyError.reason`) keeps it.
//!
//! The classes are written in Python below: under the stable ABI this crate builds for
//! (abi3-py39), a `#[pyclass]` cannot extend `Exception`, and `create_exception!` gives only
//! `BaseException`'s constructor.

use std::ffi::CStr;

use consensus_core::{Error, StorageError as CoreStorageError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

const CLASSES: &CStr = cr#"
class ConsensusError(Exception):
    """Base class of every error raised by consensus."""


class NotLeaderError(ConsensusError):
    """This node is not the leader; `leader_hint` names the leader it knows (0: unknown)."""

    leader_hint = 0

    def __init__(self, message="", leader_hint=None):
        super().__init__(message)
        if leader_hint is not None:
            self.leader_hint = leader_hint


class ProposalDroppedError(ConsensusError):
    """A proposal or read was not accepted (no leader, transfer in progress, a limit reached); retry
    later. `reason` says which."""

    reason = "unknown"

    def __init__(self, message="", reason=None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(ConsensusError):
    """An invalid configuration; `field` names the setting."""

    field = ""

    def __init__(self, message="", field=None):
        super().__init__(message)
        if field is not None:
            self.field = field


class DecodeError(ConsensusError):
    """Bytes from a peer or a file could not be decoded."""


class StorageError(ConsensusError):
    """Persisted state is missing, damaged or inconsistent; `kind` says how."""

    kind = "other"

    def __init__(self, message="", kind=None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class ProtocolError(ConsensusError):
    """The protocol was used out of order (for example `advance` with a stale Ready) or a peer
    broke it."""
"#;

const NAMES: [&str; 7] = [
    "ConsensusError",
    "NotLeaderError",
    "ProposalDroppedError",
    "ConfigError",
    "DecodeError",
    "StorageError",
    "ProtocolError",
];

/// The namespace `CLASSES` ran in, once per interpreter.
static NAMESPACE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

fn namespace(py: Python<'_>) -> PyResult<&Bound<'_, PyDict>> {
    let namespace = NAMESPACE.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let globals = PyDict::new(py);
        // The classes' `__module__`: they are exported as `consensus.<Name>`.
        globals.set_item("__name__", "consensus")?;
        py.run(CLASSES, Some(&globals), None)?;
        Ok(globals.unbind())
    })?;
    Ok(namespace.bind(py))
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(namespace(py)?.as_any().get_item(name)?.cast_into::<PyType>()?)
}

/// The exception `name(message, **attribute)`.
fn build(name: &str, message: String, attribute: Option<(&str, Bound<'_, PyAny>)>) -> PyErr {
    Python::attach(|py| {
        let raised = || -> PyResult<PyErr> {
            let kwargs = PyDict::new(py);
            if let Some((key, value)) = attribute {
                kwargs.set_item(key, value)?;
            }
            Ok(PyErr::from_value(class(py, name)?.call((message,), Some(&kwargs))?))
        };
        // Building a built-in exception does not fail in practice; if it ever does, that
        // failure is what the caller sees.
        raised().unwrap_or_else(|failure| failure)
    })
}

fn with_text<'py>(py: Python<'py>, text: &str) -> Bound<'py, PyAny> {
    pyo3::types::PyString::new(py, text).into_any()
}

/// Converts a core error to its Python exception.
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Decode(_) => build("DecodeError", message, None),
        Error::ProposalDropped { reason, .. } => {
            Python::attach(|py| build("ProposalDroppedError", message, Some(("reason", with_text(py, reason.code())))))
        }
        Error::NotLeader { leader_hint } => Python::attach(|py| {
            let hint = leader_hint.into_pyobject(py).map(|hint| hint.into_any());
            build("NotLeaderError", message, hint.ok().map(|hint| ("leader_hint", hint)))
        }),
        Error::Config { field, reason } => Python::attach(|py| {
            build("ConfigError", format!("{field}: {reason}"), Some(("field", with_text(py, field))))
        }),
        Error::Storage(storage) => storage_to_py(storage),
        Error::Protocol(_) => build("ProtocolError", message, None),
    }
}

pub fn storage_to_py(error: CoreStorageError) -> PyErr {
    Python::attach(|py| build("StorageError", error.to_string(), Some(("kind", with_text(py, error.kind())))))
}

/// A `ConfigError` for a field given a value of the wrong range.
pub fn config_error(field: &'static str, reason: impl Into<String>) -> PyErr {
    to_py(Error::Config { field, reason: reason.into() })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for name in NAMES {
        m.add(name, class(m.py(), name)?)?;
    }
    Ok(())
}
