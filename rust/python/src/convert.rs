//! Conversions every protocol's classes share: bytes in, proposal batches, frame lists out, and
//! the checks of the numbers a caller passes (node ids, non-negative settings, the read option).

use bytes::Bytes;
use consensus_core::contract::Frame;
use consensus_core::raft::ReadOnlyOption;
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::errors::config_error;

pub fn bytes_of(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

const BATCH_TYPES: &str = "propose_many takes a list of bytes or a 2-D uint8 array";

/// Extracts a proposal batch: a list (or any sequence) of bytes-like objects, or a 2-D `uint8`
/// NumPy array with one entry per row (copied in one piece, no Python object per row). A list is
/// checked first, so the common case never imports NumPy.
pub fn batch_from(batch: &Bound<'_, PyAny>) -> PyResult<Vec<Bytes>> {
    if let Ok(list) = batch.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            match item.cast::<PyBytes>() {
                Ok(b) => out.push(bytes_of(b.as_bytes())),
                Err(_) => {
                    out.push(bytes_of(&item.extract::<Vec<u8>>().map_err(|_| PyTypeError::new_err(BATCH_TYPES))?))
                }
            }
        }
        return Ok(out);
    }
    if let Ok(array) = batch.extract::<PyReadonlyArray2<u8>>() {
        let shape = array.shape();
        let (rows, width) = (shape[0], shape[1]);
        let whole = match array.as_slice() {
            Ok(slice) => Bytes::copy_from_slice(slice),
            Err(_) => Bytes::from(array.as_array().iter().copied().collect::<Vec<u8>>()),
        };
        return Ok((0..rows).map(|r| whole.slice(r * width..(r + 1) * width)).collect());
    }
    let mut out = Vec::new();
    for item in batch.try_iter()? {
        let data: Vec<u8> = item?.extract().map_err(|_| PyTypeError::new_err(BATCH_TYPES))?;
        out.push(Bytes::from(data));
    }
    Ok(out)
}

/// One frame of `step_many`'s iterable: it must be `bytes`.
pub fn frame_of(frame: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let frame = frame.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("step_many takes bytes frames"))?;
    Ok(bytes_of(frame.as_bytes()))
}

/// `[(to, frame_bytes), ...]` as Python tuples.
pub fn frame_list<'py>(py: Python<'py>, frames: &[Frame]) -> PyResult<Bound<'py, PyList>> {
    let items = frames
        .iter()
        .map(|(to, frame)| PyTuple::new(py, [to.into_pyobject(py)?.into_any(), PyBytes::new(py, frame).into_any()]))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// The id of the node being built: a positive integer, else a `ConfigError` (field `id`).
pub fn node_id(id: i64) -> PyResult<u64> {
    u64::try_from(id).ok().filter(|id| *id > 0).ok_or_else(|| config_error("id", "must be a positive integer"))
}

/// The ids of a membership list: positive integers, else a `ConfigError` naming `field`.
pub fn member_ids(field: &'static str, ids: Vec<i64>) -> PyResult<Vec<u64>> {
    let positive = |id: i64| u64::try_from(id).ok().filter(|id| *id > 0);
    ids.into_iter().map(|id| positive(id).ok_or_else(|| config_error(field, "ids must be positive integers"))).collect()
}

/// A setting that must not be negative.
pub fn unsigned(field: &'static str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| config_error(field, format!("must not be negative (got {value})")))
}

pub fn parse_read_only_option(value: &str) -> PyResult<ReadOnlyOption> {
    match value {
        "safe" => Ok(ReadOnlyOption::Safe),
        "lease_based" => Ok(ReadOnlyOption::LeaseBased),
        other => Err(config_error("read_only_option", format!("must be 'safe' or 'lease_based' (got {other:?})"))),
    }
}

pub fn read_only_option_name(option: ReadOnlyOption) -> &'static str {
    match option {
        ReadOnlyOption::Safe => "safe",
        ReadOnlyOption::LeaseBased => "lease_based",
    }
}

/// `unsigned("name", name)?`: a constructor argument checked under its own name.
macro_rules! unsigned_arg {
    ($arg:ident) => {
        $crate::convert::unsigned(stringify!($arg), $arg)?
    };
}
pub(crate) use unsigned_arg;
