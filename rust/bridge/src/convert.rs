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
//! moved only once, into `convert`; an async function's result goes through the
//! tag's [`IntoOutput::output`] instead, which defers that conversion to the loop
//! thread (an [`Output`]). Both are generic only in the value's type, so functions
//! returning the same type share one instance of each: per function, a cell compiles
//! little more than the probe (what the glue costs to compile is measured by
//! `benchmarks/glue_cost.py`).

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// A [`Probe`] of the type `future` ends with.
pub fn probe_output<F: Future>(_future: &F) -> Probe<F::Output> {
    Probe(PhantomData)
}

#[derive(Clone, Copy)]
pub struct PyErrTag;
#[derive(Clone, Copy)]
pub struct DisplayErrTag;
#[derive(Clone, Copy)]
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
}

impl PlainTag {
    pub fn convert<'py, T: IntoPyObject<'py>>(
        self,
        py: Python<'py>,
        value: T,
    ) -> PyResult<Py<PyAny>> {
        value.into_py_any(py)
    }
}

/// How an async function's result becomes an [`Output`], its conversion deferred to
/// the loop thread: implemented by each tag for the values it converts, generic only
/// in their type (functions returning the same type share one instance).
pub trait IntoOutput<T> {
    fn output(self, value: T) -> Output;
}

impl<T> IntoOutput<T> for PlainTag
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    fn output(self, value: T) -> Output {
        Box::new(move |py| self.convert(py, value))
    }
}

impl<T> IntoOutput<Result<T, PyErr>> for PyErrTag
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    fn output(self, value: Result<T, PyErr>) -> Output {
        Box::new(move |py| self.convert(py, value))
    }
}

impl<T, E> IntoOutput<Result<T, E>> for DisplayErrTag
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
    E: Display + Send + 'static,
{
    fn output(self, value: Result<T, E>) -> Output {
        Box::new(move |py| self.convert(py, value))
    }
}

/// An async function declared to return `()`: Python gets `None`.
#[derive(Clone, Copy)]
pub struct NoneTag;

impl IntoOutput<()> for NoneTag {
    fn output(self, (): ()) -> Output {
        Box::new(|py| Ok(py.None()))
    }
}

/// An async function declared to return `Result<(), E>`: `Ok(())` is `None`, an
/// error goes as the inner tag (picked for the `Result`) says.
#[derive(Clone, Copy)]
pub struct UnitOk<K>(pub K);

impl<K, E> IntoOutput<Result<(), E>> for UnitOk<K>
where
    K: IntoOutput<Result<NoneValue, E>>,
{
    fn output(self, value: Result<(), E>) -> Output {
        self.0.output(value.map(|()| NoneValue))
    }
}

pin_project_lite::pin_project! {
    /// A cell function's future ending in its [`Output`]: what an async function's
    /// coroutine runs. A plain struct rather than an `async` block, so that a cell
    /// compiles one small `poll` per function and no state machine of its own.
    pub struct Converting<F, K> {
        #[pin]
        future: F,
        kind: K,
    }
}

impl<F, K> Converting<F, K> {
    pub(crate) fn new(future: F, kind: K) -> Self {
        Converting { future, kind }
    }
}

impl<F, K> Future for Converting<F, K>
where
    F: Future,
    K: IntoOutput<F::Output> + Copy,
{
    type Output = Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(value) => Poll::Ready(this.kind.output(value)),
            Poll::Pending => Poll::Pending,
        }
    }
}
