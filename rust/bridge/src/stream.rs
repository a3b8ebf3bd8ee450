//! A Rust `Stream` as a Python async iterator: `async for item in numbers(10)`.
//!
//! Each `__anext__` is one [`RustCoroutine`] that asks the stream for its next item
//! on the runtime, so everything a coroutine does (binding to the awaiting loop,
//! cancellation, panics, conversion on the loop thread) holds per item. The stream
//! is polled only when Python asks for the next item: a producer inside it runs
//! one item ahead of the consumer at most, which is the backpressure. Dropping an
//! unfinished `__anext__` (a `break`, a cancelled task) drops only that `next()`,
//! which `StreamExt::next` allows, so the stream can be iterated on.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyString;
use tokio::sync::Mutex;

use crate::convert::Output;
use crate::coroutine::{coroutine_of, RustCoroutine};

type BoxStream = Pin<Box<dyn Stream<Item = Output> + Send>>;

/// The async iterator a cell's stream-returning function gives Python.
#[pyclass(name = "RustStream", module = "ipy_rustasync", frozen)]
pub struct RustStream {
    name: &'static str,
    /// `None` once exhausted or closed.
    stream: Arc<Mutex<Option<BoxStream>>>,
}

/// Wraps `stream` (items already mapped to their Python conversion) for Python, as
/// the object the generated wrapper returns.
pub fn new_stream<S>(py: Python<'_>, name: &'static str, stream: S) -> PyResult<Py<PyAny>>
where
    S: Stream<Item = Output> + Send + 'static,
{
    RustStream::any(py, name, Box::pin(stream))
}

impl RustStream {
    /// Not generic: compiled once, here, rather than once per stream function.
    fn any(py: Python<'_>, name: &'static str, stream: BoxStream) -> PyResult<Py<PyAny>> {
        let stream = RustStream {
            name,
            stream: Arc::new(Mutex::new(Some(stream))),
        };
        Ok(Py::new(py, stream)?.into_any())
    }
}

fn stop() -> Output {
    Box::new(|_py| Err(PyStopAsyncIteration::new_err(())))
}

#[pymethods]
impl RustStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next item, as an awaitable; `StopAsyncIteration` at the end.
    fn __anext__(&self, py: Python<'_>) -> PyResult<Py<RustCoroutine>> {
        let stream = self.stream.clone();
        coroutine_of(py, self.name, async move {
            let mut guard = stream.lock().await;
            let Some(inner) = guard.as_mut() else {
                return stop();
            };
            match inner.next().await {
                Some(item) => item,
                None => {
                    *guard = None; // exhausted: free what the stream holds now
                    stop()
                }
            }
        })
    }

    /// Drops the stream (what `async for` does not need, but `contextlib.aclosing`
    /// and early cleanup do).
    fn aclose(&self, py: Python<'_>) -> PyResult<Py<RustCoroutine>> {
        let stream = self.stream.clone();
        coroutine_of(py, self.name, async move {
            stream.lock().await.take();
            let none: Output = Box::new(|py| Ok(py.None()));
            none
        })
    }

    #[getter]
    fn __name__<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.name)
    }

    fn __repr__(&self) -> String {
        format!("<Rust stream {}()>", self.name)
    }
}
