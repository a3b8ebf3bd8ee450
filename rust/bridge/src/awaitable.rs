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
//!
//! Functions marked `#[rust_async(inline)]` differ in one step: the first `send`
//! polls the future right there, on the awaiting thread, inside the runtime's
//! context (so tokio timers and `tokio::spawn` work) and holding the GIL. A future
//! that is ready at once finishes without touching the loop or another thread;
//! one that is pending moves to the runtime as above. A poll that holds the loop
//! longer than [`SLOW_INLINE_POLL`] warns once per function.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use tokio::task::AbortHandle;

use crate::channel::channel_for;
use crate::convert::Output;
use crate::panics::{catching, Guarded};
use crate::runtime::Active;
use crate::sync::{lock, Exclusive};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Output> + Send>>;

/// How often a blocking `_run_blocking` wakes to let signals (Ctrl-C) in.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// An inline poll longer than this warns: it held the event loop that long.
pub const SLOW_INLINE_POLL: Duration = Duration::from_millis(10);

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
    /// `#[rust_async(inline)]`: first poll on the awaiting thread.
    inline: bool,
    state: State,
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const REUSED: &str = "cannot reuse already awaited coroutine";

/// Wraps `future` (the cell function's future, ending in its converted output) into
/// a new `RustAwaitable` named `name`; `inline` as for `#[rust_async(inline)]`.
pub fn new_awaitable<F>(
    py: Python<'_>,
    name: &'static str,
    inline: bool,
    future: F,
) -> PyResult<Py<RustAwaitable>>
where
    F: Future<Output = Output> + Send + 'static,
{
    Py::new(
        py,
        RustAwaitable {
            name,
            inline,
            state: State::Created(Exclusive::new(Box::pin(future))),
        },
    )
}

impl RustAwaitable {
    /// One step of the coroutine: yield the asyncio future to wait on, or finish.
    fn step<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.state {
            State::Created(_) if self.inline => self.poll_inline(py),
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

    /// The inline first poll: finish now if the future is ready, else hand it to the
    /// runtime like a default awaitable.
    fn poll_inline<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let State::Created(future) = &mut self.state else {
            return Err(PyRuntimeError::new_err(REUSED));
        };
        let active = Active::new()?;
        let _context = active.runtime().enter();
        // Any waker would do: a future left pending is spawned next, and the runtime
        // polls it again at once with its own waker.
        let mut cx = Context::from_waker(Waker::noop());
        let started = Instant::now();
        let polled = catching(|| future.get_mut().as_mut().poll(&mut cx));
        let held = started.elapsed();
        if held > SLOW_INLINE_POLL {
            warn_slow_inline(py, self.name, held);
        }
        match polled {
            Ok(Poll::Pending) => self.start(py),
            Ok(Poll::Ready(output)) => {
                self.state = State::Done;
                Err(PyStopIteration::new_err((output(py)?,)))
            }
            Err(report) => {
                self.state = State::Done;
                Err(report.into_pyerr(py))
            }
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
        let active = Active::new()?;
        let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        // What `Future.__await__` does before yielding itself to the Task.
        future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
        let State::Created(rust_future) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(PyRuntimeError::new_err(REUSED));
        };
        let completes = future.clone().unbind();
        let guarded = Guarded::new(rust_future.into_inner());
        let handle = active.spawn(async move {
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

    /// Runs the future to completion from synchronous code: what
    /// `ipy_rustasync.run` does with a Rust awaitable, inside or outside a running
    /// loop. The caller's thread waits with the GIL released, waking every
    /// [`SIGNAL_CHECK`] to let Ctrl-C or a kernel interrupt in, which drops the
    /// future; past `timeout` seconds the future is dropped and `TimeoutError` raised.
    #[pyo3(signature = (timeout=None))]
    fn _run_blocking(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let deadline = match timeout {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds, not {t}"
                )))
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        if !matches!(self.state, State::Created(_)) {
            return Err(PyRuntimeError::new_err(format!(
                "{}() is already being awaited (or has finished); ipy_rustasync.run needs a fresh call",
                self.name
            )));
        }
        let State::Created(future) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("checked just above");
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.state = State::Created(future);
            return Err(PyRuntimeError::new_err(format!(
                "ipy_rustasync.run({}(...)) was called on one of the Rust runtime's own threads, \
                 where blocking would stall it; await the call instead",
                self.name
            )));
        }
        // Held for the whole wait: the runtime stays up while this thread blocks on it.
        let active = Active::new()?;
        let runtime = active.runtime();
        let mut handle = runtime.spawn(Guarded::new(future.into_inner()));
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            let waited = py.detach(|| {
                runtime.block_on(async { tokio::time::timeout(slice, &mut handle).await })
            });
            match waited {
                Ok(Ok(Ok(output))) => return output(py),
                Ok(Ok(Err(report))) => return Err(report.into_pyerr(py)),
                Ok(Err(join)) => {
                    return Err(PyRuntimeError::new_err(format!(
                        "{}() stopped without a result: {join}",
                        self.name
                    )))
                }
                Err(_elapsed) => {}
            }
            if let Err(interrupt) = py.check_signals() {
                handle.abort();
                return Err(interrupt);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                handle.abort();
                return Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                    "{}() did not finish within {} s",
                    self.name,
                    timeout.unwrap_or_default()
                )));
            }
        }
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

/// Functions that have already been warned about.
static WARNED_SLOW: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn warn_slow_inline(py: Python<'_>, name: &'static str, held: Duration) {
    {
        let mut warned = lock(&WARNED_SLOW);
        if warned.contains(&name) {
            return;
        }
        warned.push(name);
    }
    let msg = format!(
        "{name}() is #[rust_async(inline)] but one poll held the event loop for {} ms; \
         remove #[rust_async(inline)] so it runs on the runtime's threads (the default)",
        held.as_millis()
    );
    runtime_warning(py, msg);
}

/// Issues a `RuntimeWarning`; one that a warnings filter turns into an error cannot
/// propagate from here (a drop, a poll), so it is reported as unraisable.
fn runtime_warning(py: Python<'_>, msg: String) {
    let category = py.get_type::<PyRuntimeWarning>();
    let msg = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    if let Err(err) = PyErr::warn(py, &category, &msg, 1) {
        err.write_unraisable(py, None);
    }
}

impl Drop for RustAwaitable {
    fn drop(&mut self) {
        match &self.state {
            // Like Python's own coroutines: a call nobody awaited is almost always a
            // forgotten `await`, so say so.
            State::Created(_) => Python::attach(|py| {
                runtime_warning(py, format!("coroutine '{}' was never awaited", self.name));
            }),
            // Garbage-collected while running: nobody can observe the result, so the
            // Rust future is dropped now rather than run to completion.
            State::Running { task, .. } => task.abort(),
            State::Done => {}
        }
    }
}
