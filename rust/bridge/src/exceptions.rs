//! The Python exception classes the bridge raises, shared by every cell.
//!
//! They live in the Python package (`ipy_rustasync._base.errors`, imported here by their public names `ipy_rustasync.RustError`/`RustPanic`), not in this crate:
//! each cell is its own extension module, and a class created per cell would make
//! `except ipy_rustasync.RustPanic` miss every cell but one.

use pyo3::exceptions::{PyDeprecationWarning, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTraceback, PyTuple, PyType};

use crate::capi::version_at_least;

static RUST_PANIC: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static RUST_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "ipy_rustasync", name)
}

/// Builds `cls(message)` and sets the given extra attributes on it.
fn build(
    py: Python<'_>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    message: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyErr {
    let made = class(py, cell, name).and_then(|cls| {
        let exc = cls.call1((message.clone(),))?;
        for (key, value) in attrs {
            exc.setattr(*key, value.bind(py))?;
        }
        Ok(PyErr::from_value(exc))
    });
    // Only reachable if the Python package is broken; still tell the user what failed.
    made.unwrap_or_else(|_| PyRuntimeError::new_err(message))
}

/// `ipy_rustasync.RustPanic(message)` with the cell line it happened on, if known.
pub(crate) fn rust_panic(
    py: Python<'_>,
    message: String,
    rust_message: &str,
    line: Option<u32>,
) -> PyErr {
    let line = line.map_or_else(
        || py.None(),
        |l| {
            l.into_pyobject(py)
                .map(|o| o.into_any().unbind())
                .unwrap_or_else(|_| py.None())
        },
    );
    let rust_message = pyo3::types::PyString::new(py, rust_message)
        .into_any()
        .unbind();
    build(
        py,
        &RUST_PANIC,
        "RustPanic",
        message,
        &[("rust_message", rust_message), ("cell_line", line)],
    )
}

/// `ipy_rustasync.RustError(message)` for a `Result::Err` whose error is `Display`.
pub(crate) fn rust_error(py: Python<'_>, message: String, rust_type: &str) -> PyErr {
    let rust_type = pyo3::types::PyString::new(py, rust_type)
        .into_any()
        .unbind();
    build(
        py,
        &RUST_ERROR,
        "RustError",
        message,
        &[("rust_type", rust_type)],
    )
}

/// The exception `throw(typ, val, tb)` raises, built by the rules generators and
/// coroutines follow (and with their messages).
pub(crate) fn thrown(
    py: Python<'_>,
    typ: &Bound<'_, PyAny>,
    rest: &Bound<'_, PyTuple>,
) -> PyResult<PyErr> {
    if rest.len() > 2 {
        return Err(PyTypeError::new_err(format!(
            "throw expected at most 3 arguments, got {}",
            rest.len() + 1
        )));
    }
    let val = rest.get_item(0).ok().filter(|v| !v.is_none());
    let tb = rest.get_item(1).ok().filter(|t| !t.is_none());
    let (val, tb) = (val.as_ref(), tb.as_ref());
    // Whenever more than one argument is passed, even `None`s, as CPython does.
    if !rest.is_empty() && version_at_least(3, 12) {
        PyErr::warn(
            py,
            &py.get_type::<PyDeprecationWarning>(),
            c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
            1,
        )?;
    }
    if let Some(tb) = tb {
        if !tb.is_instance_of::<PyTraceback>() {
            return Err(PyTypeError::new_err(
                "throw() third argument must be a traceback object",
            ));
        }
    }
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    let exc = if let Ok(class) = typ.cast::<PyType>() {
        if !class.is_subclass(&base)? {
            return Err(not_an_exception(typ));
        }
        match val {
            Some(val) if val.is_instance(class)? => val.clone(),
            Some(val) => match val.cast::<PyTuple>() {
                Ok(args) => class.call1(args)?,
                Err(_) => class.call1((val,))?,
            },
            None => class.call0()?,
        }
    } else if typ.is_instance(&base)? {
        if val.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        typ.clone()
    } else {
        return Err(not_an_exception(typ));
    };
    if let Some(tb) = tb {
        exc.setattr("__traceback__", tb)?;
    }
    Ok(PyErr::from_value(exc))
}

fn not_an_exception(typ: &Bound<'_, PyAny>) -> PyErr {
    let name = typ
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!(
        "exceptions must be classes or instances deriving from BaseException, not {name}"
    ))
}
