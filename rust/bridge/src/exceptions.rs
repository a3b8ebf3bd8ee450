//! The Python exception classes the bridge raises, shared by every cell.
//!
//! They live in the Python package (`ipy_rustasync.errors`), not in this crate:
//! each cell is its own extension module, and a class created per cell would make
//! `except ipy_rustasync.RustPanic` miss every cell but one.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static RUST_PANIC: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static RUST_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "ipy_rustasync.errors", name)
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
