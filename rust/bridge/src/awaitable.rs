//! The Python object a cell's `async fn` returns: a coroutine driven by tokio.
//!
//! Calling the exported function only creates the Rust future; nothing runs and no
//! loop is looked up (so `asyncio.run(f())`, or creating the awaitable in one cell and
//! awaiting it in the next, both work). The first `send` binds it to the loop running
//! on that thread: the future is spawned on the runtime, and the coroutine yields an
//! asyncio future of that loop, which the loop's [`Channel`](crate::channel) completes.
//! The coroutine protocol (`send`, `throw`, `close`, `__await__`) makes
//! `asyncio.iscoroutine()` true, so `asyncio.run`, `create_task`, `gather` and
//! `wait_for` all accept it.

use std::future::Future;
use std::pin::Pin;

use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use tokio::task::AbortHandle;

use crate::channel::channel_for;
use crate::convert::Output;
use crate::panics::Guarded;
use crate::runtime::runtime;
use crate::sync::Exclusive;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Output> + Send>>;

enum State {
    /// Created, never awaited: the future has not been polled.
    Created(Exclusive<BoxFuture>),
    /// Running on the runtime; `future` is the asyncio future it will complete.
    Running {
        future: Py<PyAny>,
        task: AbortHandle,
    },
    /// Finished, failed, cancelled or closed.
    Done,
}

/// A Rust future as a Python coroutine.
#[pyclass(name = "RustAwaitable", module = "ipy_rustasync")]
pub struct RustAwaitable {
    name: &'static str,
    state: State,
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const REUSED: &str = "cannot reuse already awaited coroutine";

/// Wraps `future` (the cell function's future, ending in its converted output) into
/// a new `RustAwaitable` named `name`.
pub fn new_awaitable<F>(
    py: Python<'_>,
    name: &'static str,
    future: F,
) -> PyResult<Py<RustAwaitable>>
where
    F: Future<Output = Output> + Send + 'static,
{
    Py::new(
        py,
        RustAwaitable {
            name,
            state: State::Created(Exclusive::new(Box::pin(future))),
        },
    )
}

impl RustAwaitable {
    /// One step of the coroutine: yield the asyncio future to wait on, or finish.
    fn step<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.state {
            State::Created(_) => self.start(py),
            State::Running { future, .. } => {
                let future = future.bind(py).clone();
                if future
                    .call_method0(pyo3::intern!(py, "done"))?
                    .is_truthy()?
                {
                    self.state = State::Done;
                    let value = future.call_method0(pyo3::intern!(py, "result"))?;
                    Err(PyStopIteration::new_err((value.unbind(),)))
                } else {
                    // Resumed before completion (not by asyncio's Task): wait again.
                    future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
                    Ok(future)
                }
            }
            State::Done => Err(PyRuntimeError::new_err(REUSED)),
        }
    }

    fn start<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let get_running_loop = GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?;
        let event_loop = get_running_loop.call0().map_err(|_| {
            PyRuntimeError::new_err(format!(
                "{}() must be awaited inside a running asyncio event loop; \
                 from synchronous code use ipy_rustasync.run({}(...))",
                self.name, self.name
            ))
        })?;
        let channel = channel_for(py, &event_loop)?;
        let runtime = runtime()?;
        let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        // What `Future.__await__` does before yielding itself to the Task.
        future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
        let State::Created(rust_future) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(PyRuntimeError::new_err(REUSED));
        };
        let completes = future.clone().unbind();
        let guarded = Guarded::new(rust_future.into_inner());
        let handle = runtime.spawn(async move {
            let outcome = guarded.await;
            channel.push(completes, outcome);
        });
        self.state = State::Running {
            future: future.clone().unbind(),
            task: handle.abort_handle(),
        };
        Ok(future)
    }

    /// Stops the work: drops the Rust future (on the runtime if it is running).
    fn stop(&mut self) {
        if let State::Running { task, .. } = std::mem::replace(&mut self.state, State::Done) {
            task.abort();
        }
    }
}

#[pymethods]
impl RustAwaitable {
    fn send<'py>(
        &mut self,
        py: Python<'py>,
        _value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.step(py)
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.step(py)
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Raises `exc` at the await point: the Rust future is dropped first, which is
    /// how task cancellation and `wait_for` timeouts reach Rust.
    #[pyo3(signature = (exc, value=None, _traceback=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        exc: Bound<'_, PyAny>,
        value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if let State::Running { future, .. } = &self.state {
            future.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        self.stop();
        let exc = match value {
            Some(value) if !value.is_none() => value,
            _ if exc.is_instance_of::<pyo3::types::PyType>() => exc.call0()?,
            _ => exc,
        };
        Err(PyErr::from_value(exc))
    }

    fn close(&mut self) {
        self.stop();
    }

    #[getter]
    fn __name__<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.name)
    }

    #[getter]
    fn __qualname__<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.name)
    }

    fn __repr__(&self) -> String {
        let state = match self.state {
            State::Created(_) => "not awaited yet",
            State::Running { .. } => "running",
            State::Done => "done",
        };
        format!("<Rust coroutine {}() {state}>", self.name)
    }
}

impl Drop for RustAwaitable {
    fn drop(&mut self) {
        match &self.state {
            // Like Python's own coroutines: a call nobody awaited is almost always a
            // forgotten `await`, so say so.
            State::Created(_) => Python::attach(|py| {
                let msg = format!("coroutine '{}' was never awaited", self.name);
                let category = py.get_type::<PyRuntimeWarning>();
                if let Err(err) = PyErr::warn(
                    py,
                    &category,
                    &std::ffi::CString::new(msg).unwrap_or_default(),
                    1,
                ) {
                    err.write_unraisable(py, None);
                }
            }),
            // Garbage-collected while running: nobody can observe the result, so the
            // Rust future is dropped now rather than run to completion.
            State::Running { task, .. } => task.abort(),
            State::Done => {}
        }
    }
}
