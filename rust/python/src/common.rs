//! The value classes both protocols' modules export: `EntryKind` and `ReadState` (registered as
//! `RaftEntryKind` and `RaftReadState`, the names they had before Multi-Paxos shared them).

use bytes::Bytes;
use consensus_core::contract::ReadState as CoreReadState;
use consensus_core::entry::EntryKind as CoreEntryKind;
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

/// The `#[pymethods]` of a class wrapping a core value in `inner`: a getter per field listed
/// (`name: Type = field` for a `Copy` field, returned as is or, under `converted`, converted to
/// `Type`; `field` for a bytes one), then the class's own methods.
macro_rules! pymethods_with_getters {
    (
        $class:ident,
        copy { $($name:ident: $ty:ty = $field:ident),* $(,)? },
        bytes { $($bytes:ident),* $(,)? },
        $(converted { $($conv:ident: $conv_ty:ty = $conv_field:ident),* $(,)? },)?
        { $($own:tt)* }
    ) => {
        #[::pyo3::pymethods]
        impl $class {
            $(
                #[getter]
                fn $name(&self) -> $ty {
                    self.inner.$field
                }
            )*
            $($(
                #[getter]
                fn $conv(&self) -> $conv_ty {
                    self.inner.$conv_field.into()
                }
            )*)?
            $(
                #[getter]
                fn $bytes<'py>(&self, py: ::pyo3::Python<'py>) -> ::pyo3::Bound<'py, ::pyo3::types::PyBytes> {
                    ::pyo3::types::PyBytes::new(py, &self.inner.$bytes)
                }
            )*
            $($own)*
        }
    };
}
pub(crate) use pymethods_with_getters;

/// A protocol's `MessageType` class, exported from the Python module `$module`: one variant per
/// message type of the core's enum `$core`, valued as on the wire, and the conversions both ways.
macro_rules! message_type_class {
    (
        $class:ident in $module:literal mirrors $core:ident {
            $($variant:ident = $value:literal => $core_variant:ident),+ $(,)?
        }
    ) => {
        // The attribute is written here, not passed in: the methods `eq` and `hash` generate
        // must share the macro's hygiene.
        #[::pyo3::pyclass(name = "MessageType", module = $module, from_py_object, eq, eq_int, frozen, hash)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum $class {
            $($variant = $value),+
        }

        impl From<$core> for $class {
            fn from(t: $core) -> Self {
                match t {
                    $($core::$core_variant => $class::$variant),+
                }
            }
        }

        impl From<$class> for $core {
            fn from(t: $class) -> Self {
                match t {
                    $($class::$variant => $core::$core_variant),+
                }
            }
        }
    };
}
pub(crate) use message_type_class;
