//! `RustCoroutine`: what calling a cell's `async fn` returns.
//!
//! It is a coroutine in the sense asyncio and `collections.abc.Coroutine` use
//! (`send`, `throw`, `close`, `__await__`), and nothing more: not a future, not
//! iterable. Calling the function only creates the Rust future; nothing runs and no
//! loop is looked up until something awaits it, so `asyncio.run(f())`, or creating
//! the coroutine in one cell and awaiting it in the next, both work.
//!
//! The first `send` (an `await`, or a Task stepping it) starts it on the loop
//! running on that thread: the future is spawned on the runtime (or first polled in
//! place, for `#[rust_async(inline)]`), and the coroutine yields a [`RustFuture`]
//! for the driving Task to wait on, as an `async def` awaiting an asyncio future
//! yields that future. The next `send` returns its result. Everything else follows
//! Python's own coroutines: sending a value into a fresh one, reusing a finished
//! one, awaiting one twice at once, `throw`, `close`, PEP 479, and the
//! `RuntimeWarning` for one never awaited.
//!
//! `asyncio.ensure_future`, `gather`, `wait_for`, `create_task` and friends wrap a
//! coroutine in a task. On a loop the bridge has run on, its task factory makes that
//! a [`RustTask`](crate::task::RustTask), which runs the Rust future directly; on
//! any other loop it is an ordinary `asyncio.Task` driving this coroutine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::call::{Body, Call, Started};
use crate::cancel::CancelToken;
use crate::capi::{chained, next_result, SendResult, SendSlot};
use crate::convert::{settle, Converting, IntoOutput, Output};
use crate::exceptions::thrown;
use crate::future::RustFuture;
use crate::running_loop::running_loop;
use crate::spawn::{poll_first, runtime_warning, BoxFuture};
use crate::sync::lock;

const REUSED: &str = "cannot reuse already awaited coroutine";

enum State {
    /// Created, never started.
    Fresh(Call),
    /// Being stepped right now (an inline poll).
    Running,
    /// Started: suspended until its future is done.
    Awaiting(Py<RustFuture>),
    /// Handed to a task (`asyncio.create_task`), which runs it from now on: it
    /// counts as suspended in that task until the task marks it done.
    Handed,
    /// Returned, raised, or closed.
    Closed,
}

/// A Rust future as a Python coroutine.
///
/// It needs no garbage collector: the only object it refers to is the future it waits
/// on, which its loop's channel holds while it runs (and abandons, dropping its
/// callbacks, if the loop goes away first), and which refers back to nothing that
/// could lead here once it is done. (PyO3 0.30 makes every pyclass a GC type, so it
/// is tracked all the same: that costs each call, see the README's bridge figures.)
#[pyclass(frozen, weakref, name = "RustCoroutine", module = "ipy_rustasync")]
pub struct RustCoroutine {
    name: &'static str,
    state: Mutex<State>,
    /// Whether `state` is still `Fresh`, readable without the lock (the finalizer
    /// asks at every deallocation).
    fresh: AtomicBool,
    /// Set by the task it was handed to once that task is done.
    task_done: AtomicBool,
}

/// Wraps `future` (the cell function's future, as calling it made it) into a new
/// coroutine named `name`, for the generated wrapper to return; `kind` (a tag of
/// `convert.rs`) says how what it ends with becomes Python. `inline` as for
/// `#[rust_async(inline)]`; `token` for a function taking a
/// [`CancelHandle`](crate::CancelHandle) (cancelling calls `token.cancel()` and lets
/// the future run on); `with_caller` for one taking Python async callables or
/// awaitables.
///
/// Generic only in boxing the future: a cell instantiates it once per async
/// function, so the rest is [`RustCoroutine::create`], compiled once, here.
pub fn new_coroutine<F, K>(
    py: Python<'_>,
    name: &'static str,
    inline: bool,
    token: Option<CancelToken>,
    with_caller: bool,
    future: F,
    kind: K,
) -> PyResult<Py<PyAny>>
where
    F: std::future::Future + Send + 'static,
    K: IntoOutput<F::Output> + Copy + Send + 'static,
{
    let body = Body::Ready(Box::pin(Converting::new(future, kind)));
    RustCoroutine::create(py, name, body, inline, token, with_caller).map(Py::into_any)
}

/// A coroutine for an async `#[pymethods]` method: `make` runs when the call starts
/// (on the thread that starts it, attached), borrows the object and makes the
/// future, so that the borrow lasts from the first step to the end of the call, as
/// for PyO3's own async methods, not from the moment the coroutine is created.
pub fn new_deferred_coroutine<F, M>(
    py: Python<'_>,
    name: &'static str,
    inline: bool,
    token: Option<CancelToken>,
    with_caller: bool,
    make: M,
) -> PyResult<Py<PyAny>>
where
    F: std::future::Future<Output = Output> + Send + 'static,
    M: FnOnce(Python<'_>) -> PyResult<F> + Send + 'static,
{
    let make = move |py: Python<'_>| -> PyResult<BoxFuture> { Ok(Box::pin(make(py)?)) };
    let body = Body::Deferred(Box::new(make));
    RustCoroutine::create(py, name, body, inline, token, with_caller).map(Py::into_any)
}

/// A coroutine running `future`, for the bridge's own awaitables (a stream's items).
pub(crate) fn coroutine_of<F>(
    py: Python<'_>,
    name: &'static str,
    future: F,
) -> PyResult<Py<RustCoroutine>>
where
    F: std::future::Future<Output = Output> + Send + 'static,
{
    RustCoroutine::create(py, name, Body::Ready(Box::pin(future)), false, None, false)
}

impl RustCoroutine {
    fn create(
        py: Python<'_>,
        name: &'static str,
        body: Body,
        inline: bool,
        cancel_token: Option<CancelToken>,
        with_caller: bool,
    ) -> PyResult<Py<RustCoroutine>> {
        Py::new(
            py,
            RustCoroutine {
                name,
                state: Mutex::new(State::Fresh(Call {
                    name,
                    body,
                    inline,
                    cancel_token,
                    with_caller,
                })),
                fresh: AtomicBool::new(true),
                task_done: AtomicBool::new(false),
            },
        )
    }
}

fn no_loop_error(name: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "{name}() must be awaited inside a running asyncio event loop; \
         from synchronous code use ipy_rustasync.run({name}(...))"
    ))
}

impl RustCoroutine {
    /// Takes the unstarted call out, for a task to run (`None` if it was started).
    pub(crate) fn hand_over(&self) -> Option<Call> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, State::Handed) {
            State::Fresh(call) => {
                self.fresh.store(false, Ordering::Relaxed);
                Some(call)
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// Whether a task it was handed to is still running it.
    fn in_pending_task(&self, state: &State) -> bool {
        matches!(state, State::Handed) && !self.task_done.load(Ordering::SeqCst)
    }

    /// Sets the state, dropping the old one after the lock is released.
    fn set(&self, state: State) {
        let old = std::mem::replace(&mut *lock(&self.state), state);
        drop(old);
    }

    /// Takes the state out (leaving `Closed`), once it leaves `Fresh` for good.
    fn close_state(&self, state: &mut State) -> State {
        self.fresh.store(false, Ordering::Relaxed);
        std::mem::replace(state, State::Closed)
    }

    /// One step, as `send(value)` takes it.
    fn step<'py>(
        slf: &Bound<'py, Self>,
        value: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<SendResult<'py>> {
        let py = slf.py();
        let this = slf.get();
        let mut state = lock(&this.state);
        if matches!(*state, State::Fresh(_)) && value.is_some_and(|v| !v.is_none()) {
            return Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            ));
        }
        match std::mem::replace(&mut *state, State::Running) {
            State::Fresh(call) => {
                this.fresh.store(false, Ordering::Relaxed);
                drop(state);
                let stepped = this.begin(py, call);
                match stepped {
                    Ok(FirstStep::Suspended(future)) => {
                        this.set(State::Awaiting(future.clone_ref(py)));
                        Ok(SendResult::Yield(future.into_bound(py).into_any()))
                    }
                    Ok(FirstStep::Done(result)) => {
                        this.set(State::Closed);
                        result.map(|value| SendResult::Return(value.into_bound(py)))
                    }
                    Err(err) => {
                        this.set(State::Closed);
                        Err(err)
                    }
                }
            }
            other => {
                *state = other;
                this.resume(py, state)
            }
        }
    }

    /// A step of a coroutine that is not fresh (`state` is its locked state).
    fn resume<'py>(
        &self,
        py: Python<'py>,
        state: std::sync::MutexGuard<'_, State>,
    ) -> PyResult<SendResult<'py>> {
        match &*state {
            State::Fresh(_) => Err(PyRuntimeError::new_err(REUSED)),
            State::Running => Err(PyValueError::new_err("coroutine already executing")),
            State::Awaiting(future) => {
                let future = future.clone_ref(py);
                drop(state);
                let waited = future.get();
                if !waited.is_done() {
                    // What an `async def` suspended on an asyncio future does when
                    // sent into before the future is done.
                    self.set(State::Closed);
                    RustFuture::abandon(future.bind(py));
                    return Err(PyRuntimeError::new_err("await wasn't used with future"));
                }
                self.set(State::Closed);
                waited
                    .outcome(py)
                    .map(|value| SendResult::Return(value.into_bound(py)))
            }
            State::Handed | State::Closed => Err(PyRuntimeError::new_err(REUSED)),
        }
    }

    /// Starts `call` on the running loop: inline first if asked; a future still
    /// pending is spawned, and returned for the caller to wait on.
    fn begin(&self, py: Python<'_>, call: Call) -> PyResult<FirstStep> {
        let Started {
            name,
            mut future,
            inline,
            cancel_token,
            with_caller,
        } = call.start(py);
        let mut active = None;
        if inline && !with_caller {
            // A future that is ready at once needs no loop at all.
            match poll_first(py, name, &mut future)? {
                Ok(outcome) => return Ok(FirstStep::Done(settle(py, outcome))),
                Err(going_on) => active = Some(going_on),
            }
        }
        let Some(event_loop) = running_loop(py)? else {
            return Err(no_loop_error(name));
        };
        let waiter = Bound::new(
            py,
            RustFuture::new(name, event_loop.unbind(), cancel_token).traced(py)?,
        )?;
        let inline_later = inline && with_caller;
        RustFuture::start(
            &waiter,
            future,
            inline_later,
            with_caller,
            None,
            true,
            active,
        )?;
        waiter.get().set_blocking();
        Ok(FirstStep::Suspended(waiter.unbind()))
    }

    /// `throw(...)`: the exception is raised where the coroutine waits, which Rust
    /// cannot catch, so it ends the coroutine (dropping the Rust future) and
    /// propagates (a `StopIteration` as PEP 479's `RuntimeError`). A finished
    /// coroutine refuses whatever is thrown, as an exhausted `async def` does.
    fn throw_in(slf: &Bound<'_, Self>, exc: PyErr) -> PyErr {
        let py = slf.py();
        let this = slf.get();
        let mut state = lock(&this.state);
        match &*state {
            State::Running => return PyValueError::new_err("coroutine already executing"),
            State::Closed => return PyRuntimeError::new_err(REUSED),
            State::Handed if !this.in_pending_task(&state) => {
                return PyRuntimeError::new_err(REUSED)
            }
            // Suspended in its task, which goes on (the exception only ends this
            // coroutine's own view of it).
            State::Handed => return pep479(py, exc),
            State::Fresh(_) | State::Awaiting(_) => {}
        }
        let old = this.close_state(&mut state);
        drop(state);
        // From 3.12, PEP 479's conversion is an exception handler around the body,
        // which an exception thrown before the first step never reaches.
        let converted = match &old {
            State::Fresh(_) if crate::capi::version_at_least(3, 12) => exc,
            _ => pep479(py, exc),
        };
        if let State::Awaiting(future) = &old {
            RustFuture::abandon(future.bind(py));
        }
        drop(old);
        converted
    }

    fn close_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut state = lock(&this.state);
        match &*state {
            State::Running => return Err(PyValueError::new_err("coroutine already executing")),
            State::Handed => return Ok(()),
            _ => {}
        }
        let old = this.close_state(&mut state);
        drop(state);
        if let State::Awaiting(future) = &old {
            RustFuture::abandon(future.bind(py));
        }
        drop(old);
        Ok(())
    }
}

/// `loop.create_task(coroutine, **kwargs)` by the bridge's task factory: a
/// [`RustTask`](crate::task::RustTask) running the call, or, for a coroutine already
/// started, an `asyncio.Task` (which reports that as asyncio does).
pub(crate) fn make_task(
    event_loop: &Bound<'_, PyAny>,
    coroutine: &Bound<'_, RustCoroutine>,
    kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<Py<PyAny>> {
    match coroutine.get().hand_over() {
        Some(call) => crate::task::create(event_loop, coroutine.as_any(), call, kwargs),
        None => crate::task::asyncio_task(event_loop, coroutine.as_any(), kwargs),
    }
}

/// What a coroutine's first step (`begin`) gives: the future it is
/// now suspended on, or its result when the future finished in an inline poll.
enum FirstStep {
    Suspended(Py<RustFuture>),
    Done(PyResult<Py<PyAny>>),
}

impl SendSlot for RustCoroutine {
    fn send_slot<'py>(slf: &Bound<'py, Self>) -> PyResult<SendResult<'py>> {
        guarded(slf.py(), || RustCoroutine::step(slf, None))
    }
}

/// Runs a step, turning a panic in the bridge's own code into `RustPanic` (the
/// cell's own code is caught where it runs).
fn guarded<'py>(
    py: Python<'py>,
    f: impl FnOnce() -> PyResult<SendResult<'py>>,
) -> PyResult<SendResult<'py>> {
    crate::panics::guard(py, f)
}

/// PEP 479: a `StopIteration` raised out of a coroutine becomes
/// `RuntimeError("coroutine raised StopIteration")`.
fn pep479(py: Python<'_>, exc: PyErr) -> PyErr {
    if !exc.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) {
        return exc;
    }
    let wrapped = PyRuntimeError::new_err("coroutine raised StopIteration");
    wrapped.set_cause(py, Some(exc));
    wrapped
}

#[pymethods]
impl RustCoroutine {
    /// Not a future: what `asyncio.isfuture` reads. Declared (as `None`, which
    /// asyncio reads as "not a future") so that asking does not build an
    /// `AttributeError` at every `gather`, `ensure_future` and `wait_for`.
    #[classattr]
    fn _asyncio_future_blocking() -> Option<bool> {
        None
    }

    fn send<'py>(slf: &Bound<'py, Self>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        next_result(
            slf.py(),
            guarded(slf.py(), || RustCoroutine::step(slf, Some(value))),
        )
    }

    #[pyo3(signature = (typ, *rest))]
    fn throw(
        slf: &Bound<'_, Self>,
        typ: Bound<'_, PyAny>,
        rest: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let exc = thrown(slf.py(), &typ, rest)?;
        Err(chained(slf.py(), RustCoroutine::throw_in(slf, exc)))
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        RustCoroutine::close_now(slf)
    }

    /// The iterator `await` drives (a coroutine is not iterable itself).
    fn __await__(slf: &Bound<'_, Self>) -> PyResult<CoroutineWrapper> {
        let this = slf.get();
        let state = lock(&this.state);
        if matches!(*state, State::Awaiting(_) | State::Running) || this.in_pending_task(&state) {
            return Err(PyRuntimeError::new_err(
                "coroutine is being awaited already",
            ));
        }
        drop(state);
        Ok(CoroutineWrapper {
            coroutine: slf.clone().unbind(),
        })
    }

    #[getter]
    fn __name__(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        self.name
    }

    /// The future it is suspended on, if any.
    #[getter]
    fn cr_await(&self, py: Python<'_>) -> Option<Py<RustFuture>> {
        match &*lock(&self.state) {
            State::Awaiting(future) => Some(future.clone_ref(py)),
            _ => None,
        }
    }

    #[getter]
    fn cr_running(&self) -> bool {
        matches!(*lock(&self.state), State::Running)
    }

    #[getter]
    fn cr_suspended(&self) -> bool {
        let state = lock(&self.state);
        matches!(*state, State::Awaiting(_)) || self.in_pending_task(&state)
    }

    /// What `inspect.getcoroutinestate` reads from 3.15 on: `CORO_CREATED`,
    /// `CORO_RUNNING`, `CORO_SUSPENDED` or `CORO_CLOSED`. Before 3.15 a coroutine
    /// has no such attribute (inspect derives the state from `cr_frame`), and
    /// neither has this one: a run-time gate, like the interpreter's own.
    #[getter]
    fn cr_state(&self) -> PyResult<&'static str> {
        if !crate::capi::version_at_least(3, 15) {
            return Err(PyAttributeError::new_err(
                "'ipy_rustasync.RustCoroutine' object has no attribute 'cr_state'",
            ));
        }
        // The same answers as `cr_running` and `cr_suspended` (one rule for each).
        Ok(if self.cr_running() {
            "CORO_RUNNING"
        } else if self.cr_suspended() {
            "CORO_SUSPENDED"
        } else if matches!(*lock(&self.state), State::Fresh(_)) {
            "CORO_CREATED"
        } else {
            "CORO_CLOSED"
        })
    }

    /// A Rust coroutine has no Python frame or code object.
    #[getter]
    fn cr_frame(&self) -> Option<Py<PyAny>> {
        None
    }

    #[getter]
    fn cr_code(&self) -> Option<Py<PyAny>> {
        None
    }

    /// Rust coroutines do not record where they were created
    /// (`sys.set_coroutine_origin_tracking_depth` is for Python frames).
    #[getter]
    fn cr_origin(&self) -> Option<Py<PyAny>> {
        None
    }

    /// Runs it to the end from synchronous code, blocking this thread (what
    /// `ipy_rustasync.run` does with a Rust coroutine).
    #[pyo3(signature = (timeout=None))]
    fn _run_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = match timeout {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds, not {t}"
                )))
            }
            Some(t) => Some(Duration::from_secs_f64(t)),
            None => None,
        };
        let call = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Closed) {
                State::Fresh(call) => {
                    self.fresh.store(false, Ordering::Relaxed);
                    call
                }
                other => {
                    // Put back as it was (the placeholder `Closed` holds nothing).
                    *state = other;
                    return Err(PyRuntimeError::new_err(format!(
                        "{}() is already being awaited (or has finished); ipy_rustasync.run needs a fresh call",
                        self.name
                    )));
                }
            }
        };
        crate::blocking::run(py, call, timeout)
    }

    /// Makes the task for `asyncio.create_task(this)` on a loop whose task factory
    /// belongs to another cell library (each cell has its own coroutine type).
    #[pyo3(signature = (event_loop, **kwargs))]
    fn __ira_task__(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        make_task(event_loop, slf, kwargs)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!(
            "<RustCoroutine object {} at {:#x}>",
            slf.get().name,
            slf.as_ptr() as usize
        )
    }
}

impl Drop for RustCoroutine {
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.state
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            State::Closed,
        );
        match state {
            // Warned about by the finalizer, which ran first (`Finalize` below).
            State::Fresh(call) => drop(call),
            // Abandoned while suspended: closed, as Python closes a collected
            // coroutine, which drops the Rust future.
            State::Awaiting(future) => Python::attach(|py| RustFuture::abandon(future.bind(py))),
            State::Running | State::Handed | State::Closed => {}
        }
    }
}

impl crate::capi::Finalize for RustCoroutine {
    fn wants_finalizing(slf: &Bound<'_, Self>) -> bool {
        slf.get().fresh.load(Ordering::Relaxed)
    }

    /// Like Python's own coroutines: a call nobody awaited is almost always a
    /// forgotten `await`, so it warns, through the function CPython uses
    /// (`warnings._warn_unawaited_coroutine`, which names the coroutine as the
    /// warning's source); a warning made an error goes to `sys.unraisablehook` the
    /// way CPython reports it for its own coroutines
    /// ([`crate::capi::write_unraisable_finalizing`]). An exception in flight is
    /// left alone.
    fn finalize(slf: &Bound<'_, Self>) {
        let py = slf.py();
        if !matches!(*lock(&slf.get().state), State::Fresh(_)) {
            return;
        }
        static WARN: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let warned = match WARN.import(py, "warnings", "_warn_unawaited_coroutine") {
            Ok(warn) => warn.call1((slf,)).map(drop),
            Err(_) => {
                runtime_warning(
                    py,
                    &format!("coroutine '{}' was never awaited", slf.get().name),
                );
                Ok(())
            }
        };
        if let Err(err) = warned {
            crate::capi::write_unraisable_finalizing(py, err, slf.as_any());
        }
    }

    fn pyo3_dealloc() -> &'static std::sync::OnceLock<pyo3::ffi::destructor> {
        static DEALLOC: std::sync::OnceLock<pyo3::ffi::destructor> = std::sync::OnceLock::new();
        &DEALLOC
    }
}

/// What `await coroutine` drives: `coroutine.__await__()`, an iterator that steps
/// the coroutine (Python's `coroutine_wrapper`).
#[pyclass(frozen, name = "RustCoroutineWrapper", module = "ipy_rustasync")]
pub struct CoroutineWrapper {
    coroutine: Py<RustCoroutine>,
}

impl SendSlot for CoroutineWrapper {
    fn send_slot<'py>(slf: &Bound<'py, Self>) -> PyResult<SendResult<'py>> {
        let coroutine = slf.get().coroutine.bind(slf.py());
        guarded(slf.py(), || RustCoroutine::step(coroutine, None))
    }
}

#[pymethods]
impl CoroutineWrapper {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let coroutine = self.coroutine.bind(py);
        next_result(py, guarded(py, || RustCoroutine::step(coroutine, None)))
    }

    fn send<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        RustCoroutine::send(self.coroutine.bind(py), value)
    }

    #[pyo3(signature = (typ, *rest))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        rest: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        RustCoroutine::throw(self.coroutine.bind(py), typ, rest)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        RustCoroutine::close_now(self.coroutine.bind(py))
    }
}

/// Called by the module's initialisation.
/// What a task does with its coroutine object once it is done (see
/// [`RustFuture::for_task`]): the coroutine no longer reads as suspended in it.
fn task_done(coroutine: &Bound<'_, PyAny>) {
    if let Ok(coroutine) = coroutine.cast::<RustCoroutine>() {
        coroutine.get().task_done.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn init(py: Python<'_>) {
    crate::future::on_task_done(task_done);
    crate::capi::install_am_send::<RustCoroutine>(py);
    crate::capi::install_am_send::<CoroutineWrapper>(py);
    crate::capi::install_finalizer::<RustCoroutine>(py);
}
