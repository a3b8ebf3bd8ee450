//! Turning what an exported function returns into a Python object or exception.
//!
//! The exporter does not know from syntax alone whether a return type is a
//! `Result` (type aliases, `anyhow::Result`, ...), so the choice is made by the type
//! checker with "autoref specialisation": the generated code calls
//! `(&&&probe(&value)).ira_kind()`, and method resolution picks the first of these
//! that applies, in this order:
//!
//! 1. [`PyErrKind`]: `Result<T, PyErr>`: the `PyErr` is raised as it is;
//! 2. [`DisplayErrKind`]: `Result<T, E: Display>`: `Err` raises `ipy_rustasync.RustError`;
//! 3. [`PlainKind`]: anything else, converted with PyO3's `IntoPyObject`.
//!
//! Each returns a zero-sized tag whose `convert` does the work, so the value itself is
//! moved only once, into `convert`; an async function's future ends with the tag's
//! `output`, which defers that conversion to the loop thread (an [`Output`]). Both
//! are generic only in the value's type, so functions returning the same type share
//! one instance of each (what the glue costs to compile, `benchmarks/glue_cost.py`).

use std::convert::Infallible;
use std::fmt::Display;
use std::marker::PhantomData;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::PyNone;
use pyo3::IntoPyObjectExt;

use crate::exceptions::rust_error;
use crate::panics::{catching, PanicReport};

/// A finished future's result, converted to Python on the loop thread, where the GIL
/// is already held, so no tokio worker ever waits for the GIL.
pub type Output = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Py<PyAny>> + Send>;

/// What a started future ends with: its output, or the panic that ended it.
pub(crate) type Outcome = Result<Output, PanicReport>;

/// The Python result of a finished future, as a coroutine's `await` gives it: the
/// converted output; a panic (in the future or in converting its output, such as a
/// user's `IntoPyObject` impl) as `RustPanic`; and a `StopIteration` as
/// `RuntimeError("coroutine raised StopIteration")` (PEP 479: raised out of a
/// coroutine it would otherwise end the awaiting generator as if it returned).
pub(crate) fn settle(py: Python<'_>, outcome: Outcome) -> PyResult<Py<PyAny>> {
    let result = match outcome {
        Ok(output) => catching(|| output(py)).unwrap_or_else(|report| Err(report.into_pyerr(py))),
        Err(report) => Err(report.into_pyerr(py)),
    };
    result.map_err(|err| {
        if !err.is_instance_of::<PyStopIteration>(py) {
            return err;
        }
        let wrapped = PyRuntimeError::new_err("coroutine raised StopIteration");
        wrapped.set_cause(py, Some(err));
        wrapped
    })
}

/// Stands for Rust's `()`, which Python sees as `None` (PyO3 itself would give `()`).
pub struct NoneValue;

impl<'py> IntoPyObject<'py> for NoneValue {
    type Target = PyNone;
    type Output = Borrowed<'py, 'py, PyNone>;
    type Error = Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyNone::get(py))
    }
}

/// Carries only the type of a value, for method resolution.
pub struct Probe<T>(PhantomData<fn() -> T>);

/// A [`Probe`] of `value`'s type.
pub fn probe<T>(_value: &T) -> Probe<T> {
    Probe(PhantomData)
}

pub struct PyErrTag;
pub struct DisplayErrTag;
pub struct PlainTag;

pub trait PyErrKind {
    #[inline]
    fn ira_kind(&self) -> PyErrTag {
        PyErrTag
    }
}
impl<T> PyErrKind for &&Probe<Result<T, PyErr>> {}

pub trait DisplayErrKind {
    #[inline]
    fn ira_kind(&self) -> DisplayErrTag {
        DisplayErrTag
    }
}
impl<T, E: Display> DisplayErrKind for &&&Probe<Result<T, E>> {}

pub trait PlainKind {
    #[inline]
    fn ira_kind(&self) -> PlainTag {
        PlainTag
    }
}
impl<T> PlainKind for &Probe<T> {}

impl PyErrTag {
    pub fn convert<'py, T: IntoPyObject<'py>>(
        self,
        py: Python<'py>,
        value: Result<T, PyErr>,
    ) -> PyResult<Py<PyAny>> {
        value?.into_py_any(py)
    }

    pub fn output<T>(self, value: Result<T, PyErr>) -> Output
    where
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        Box::new(move |py| self.convert(py, value))
    }
}

impl DisplayErrTag {
    pub fn convert<'py, T: IntoPyObject<'py>, E: Display>(
        self,
        py: Python<'py>,
        value: Result<T, E>,
    ) -> PyResult<Py<PyAny>> {
        match value {
            Ok(ok) => ok.into_py_any(py),
            Err(err) => Err(rust_error(py, err.to_string(), std::any::type_name::<E>())),
        }
    }

    pub fn output<T, E>(self, value: Result<T, E>) -> Output
    where
        T: for<'py> IntoPyObject<'py> + Send + 'static,
        E: Display + Send + 'static,
    {
        Box::new(move |py| self.convert(py, value))
    }
}

impl PlainTag {
    pub fn convert<'py, T: IntoPyObject<'py>>(
        self,
        py: Python<'py>,
        value: T,
    ) -> PyResult<Py<PyAny>> {
        value.into_py_any(py)
    }

    pub fn output<T>(self, value: T) -> Output
    where
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        Box::new(move |py| self.convert(py, value))
    }
}
