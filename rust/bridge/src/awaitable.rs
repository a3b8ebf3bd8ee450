//! The Python object a cell's `async fn` returns: a coroutine that is also an
//! asyncio future, driven by tokio.
//!
//! Calling the exported function only creates the Rust future; nothing runs and no
//! loop is looked up (so `asyncio.run(f())`, or creating the awaitable in one cell and
//! awaiting it in the next, both work). It starts when a loop first asks for it:
//! the first `send` (a coroutine being awaited, or a Task stepping it) or the first
//! `get_loop` (asyncio taking it as a future, as `gather`, `wait_for` and `shield`
//! do). It binds to the loop running on that thread, the future is spawned on the
//! runtime, and the loop's [`Channel`](crate::channel) completes it.
//!
//! Being both is what makes it cheap: as a coroutine it yields *itself* as the
//! future to wait on (no `loop.create_future()` per call), and as a future
//! (`_asyncio_future_blocking`, `add_done_callback`, `result`, `cancel`, ...)
//! `asyncio.gather` takes it as it is instead of wrapping it in a Task. The coroutine
//! protocol (`send`, `throw`, `close`, `__await__`) makes `asyncio.iscoroutine()`
//! true, so `asyncio.run` and `create_task` accept it too. Once its result has been
//! returned through the coroutine protocol, awaiting it again raises `RuntimeError`
//! like a coroutine's would.
//!
//! Functions marked `#[rust_async(inline)]` differ in one step: starting polls the
//! future right there, on the awaiting thread, inside the runtime's context (so
//! tokio timers and `tokio::spawn` work) and holding the GIL. A future that is ready
//! at once finishes without touching the loop or another thread; one that is
//! pending moves to the runtime as above. A poll that holds the loop longer than
//! [`SLOW_INLINE_POLL`] warns once per function.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyString, PyWeakrefReference};

use crate::callback::{Caller, CALLER};
use crate::cancel::CancelToken;
use crate::channel::{channel_for, Outstanding, Started};
use crate::convert::{to_python, Output};
use crate::done::DoneCallbacks;
use crate::panics::{catching, Guarded};
use crate::running_loop::running_loop;
use crate::runtime::Active;
use crate::sync::{lock, Exclusive};
use crate::task::{Completing, Launch, Task};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Output> + Send>>;

/// How often a blocking `_run_blocking` wakes to let signals (Ctrl-C) in.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// An inline poll longer than this warns: it held the event loop that long.
pub const SLOW_INLINE_POLL: Duration = Duration::from_millis(10);

const REUSED: &str = "cannot reuse already awaited coroutine";

enum State {
    /// Created, never started: the future has not been polled.
    Created(Exclusive<BoxFuture>),
    /// Started on `event_loop`, waiting in its channel's launch list to be spawned
    /// when the loop next runs the channel's callback (see [`Channel::kick`]).
    ///
    /// [`Channel::kick`]: crate::channel::Channel
    Queued {
        event_loop: Py<PyAny>,
        future: Exclusive<BoxFuture>,
        /// Keeps the runtime up (and counts the call) from the start.
        active: Active,
        outstanding: Outstanding,
        /// Weak reference to this awaitable, for the channel to complete it by.
        me: Py<PyWeakrefReference>,
    },
    /// Running on the runtime, to be completed by `event_loop`'s channel.
    Running { event_loop: Py<PyAny>, task: Task },
    /// Finished: the value or the exception. `delivered` once the coroutine
    /// protocol has returned it (so a second `await` raises like a coroutine's).
    Finished {
        event_loop: Option<Py<PyAny>>,
        outcome: Result<Py<PyAny>, Py<PyAny>>,
        delivered: bool,
    },
    /// Cancelled (by `cancel`, `throw` or `close`) before finishing.
    Cancelled {
        event_loop: Option<Py<PyAny>>,
        message: Option<Py<PyAny>>,
        delivered: bool,
    },
}

/// What [`RustAwaitable::launch`] found.
pub(crate) enum Launching {
    /// Borrowed right now: try again later.
    Busy,
    /// Not queued any more (cancelled meanwhile): nothing to spawn.
    Nothing,
    /// To be spawned with its burst.
    Ready(Launch),
}

/// A Rust future as a Python coroutine and asyncio future.
#[pyclass(name = "RustAwaitable", module = "ipy_rustasync", weakref)]
pub struct RustAwaitable {
    name: &'static str,
    /// `#[rust_async(inline)]`: first poll on the awaiting thread.
    inline: bool,
    state: State,
    /// The flag asyncio's Task and `isfuture` read (and the Task resets) on a
    /// future it waits for; see the `_asyncio_future_blocking` getter.
    blocking: bool,
    /// `add_done_callback`s: (callback, contextvars context).
    callbacks: DoneCallbacks,
    /// For a function taking a `CancelHandle`: cancelling signals it instead of
    /// dropping the future.
    cancel_token: Option<CancelToken>,
    /// For a function taking an `AsyncCallable` or `PyAwaitable`: run the future
    /// knowing its caller's loop and context (see `callback`).
    with_caller: bool,
}

/// `contextvars.copy_context()`, through the C API (no lookup, no call).
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: `py` proves the GIL is held, which is all `PyContext_CopyCurrent`
    // needs; it returns a new reference or NULL with an exception set, and
    // `from_owned_ptr_or_err` takes exactly that.
    unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_CopyCurrent()) }
        .map(Bound::unbind)
}

/// `context.run(callback, arg)`, through the C API when `context` can be entered.
fn run_in_context<'py>(
    context: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = context.py();
    // SAFETY: the GIL is held (`py`) and `context` is a live object for the whole
    // call. `PyContext_Enter` checks the object is a `Context` (TypeError if not)
    // and that it is not already entered (RuntimeError), returning -1 with the
    // exception set; on 0 the context is entered and is exited below on every path
    // before returning, as `Context.run` does.
    if unsafe { pyo3::ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = callback.call1((arg,));
    // SAFETY: as above; exiting the context entered just before, on this thread.
    if unsafe { pyo3::ffi::PyContext_Exit(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    result
}
static CANCELLED_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static INVALID_STATE_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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
    new_cancellable_awaitable(py, name, inline, None, false, future)
}

/// [`new_awaitable`] with the options the exporter reads from a function's
/// parameters: a [`CancelHandle`](crate::CancelHandle) (`token`: cancelling calls
/// `token.cancel()` and lets the future run on) and Python async callables or
/// awaitables (`with_caller`).
pub fn new_cancellable_awaitable<F>(
    py: Python<'_>,
    name: &'static str,
    inline: bool,
    token: Option<CancelToken>,
    with_caller: bool,
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
            blocking: false,
            callbacks: DoneCallbacks::default(),
            cancel_token: token,
            with_caller,
        },
    )
}

fn cancelled_error(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyResult<PyErr> {
    let class = CANCELLED_ERROR.import(py, "asyncio", "CancelledError")?;
    let exc = match message {
        Some(message) => class.call1((message,))?,
        None => class.call0()?,
    };
    Ok(PyErr::from_value(exc))
}

fn invalid_state(py: Python<'_>, message: &str) -> PyErr {
    match INVALID_STATE_ERROR
        .import(py, "asyncio", "InvalidStateError")
        .and_then(|class| class.call1((message,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

impl RustAwaitable {
    /// The loop running on this thread, or the error saying how to call this
    /// from synchronous code.
    fn running_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        running_loop(py)?.ok_or_else(|| self.no_loop_error())
    }

    fn no_loop_error(&self) -> PyErr {
        PyRuntimeError::new_err(format!(
            "{}() must be awaited inside a running asyncio event loop; \
             from synchronous code use ipy_rustasync.run({}(...))",
            self.name, self.name
        ))
    }

    /// Binds to the running loop (`running`, if the caller already looked it up)
    /// and starts the future: inline first if asked, then queued on the loop's
    /// channel to be spawned. No-op unless still `Created`.
    ///
    /// The first start of a loop turn spawns at once; later ones wait for the
    /// channel's next loop callback, which spawns them in one go, so a burst of
    /// calls (`gather` over many) wakes a sleeping runtime worker about once rather
    /// than once per call. The callback is scheduled here, so it runs before the
    /// loop could stop.
    fn start(slf: &Bound<'_, Self>, running: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let mut this = slf.borrow_mut();
        if !matches!(this.state, State::Created(_)) {
            return Ok(());
        }
        let mut running = running;
        if this.with_caller {
            let event_loop = match running.take() {
                Some(event_loop) => event_loop,
                None => this.running_loop(py)?,
            };
            this.enter_caller(py, &event_loop)?;
            running = Some(event_loop);
        }
        if this.inline {
            // A future that is ready at once needs no loop at all (`get_loop`
            // looks for the running one later, if anyone asks).
            if let Some(outcome) = this.poll_inline(py)? {
                this.state = State::Finished {
                    event_loop: None,
                    outcome,
                    delivered: false,
                };
                return Ok(());
            }
        }
        let event_loop = match running {
            Some(event_loop) => event_loop,
            None => this.running_loop(py)?,
        };
        let channel = channel_for(py, &event_loop)?;
        let active = Active::new()?;
        let me = PyWeakrefReference::new(slf.as_any())?.unbind();
        let (outstanding, launch) = channel.kick(py, &event_loop, &me)?;
        let State::Created(future) = std::mem::replace(
            &mut this.state,
            State::Cancelled {
                event_loop: None,
                message: None,
                delivered: false,
            },
        ) else {
            return Ok(());
        };
        let event_loop = event_loop.unbind();
        this.state = match launch {
            Started::Now => State::Running {
                event_loop,
                task: crate::task::spawn(active, Completing::new(future, outstanding, me)),
            },
            Started::Queued => State::Queued {
                event_loop,
                future,
                active,
                outstanding,
                me,
            },
        };
        Ok(())
    }

    /// Takes a queued future out to be spawned with its burst (see
    /// [`crate::task::spawn_all`]); called by its channel on the loop's thread.
    /// Nothing to spawn if it was cancelled (or finished) meanwhile.
    pub(crate) fn launch(slf: &Bound<'_, Self>) -> Launching {
        // In use right now (a method of it is on this thread's stack, running
        // Python code that ran the loop): the channel tries again next turn.
        let Ok(mut this) = slf.try_borrow_mut() else {
            return Launching::Busy;
        };
        let State::Queued {
            event_loop,
            future,
            active,
            outstanding,
            me,
        } = std::mem::replace(
            &mut this.state,
            State::Cancelled {
                event_loop: None,
                message: None,
                delivered: false,
            },
        )
        else {
            return Launching::Nothing;
        };
        let (launch, task) = Launch::new(active, Completing::new(future, outstanding, me));
        this.state = State::Running { event_loop, task };
        Launching::Ready(launch)
    }

    /// Wraps the (not yet started) future so that it runs knowing its caller: the
    /// running loop, its channel and the current `contextvars` context.
    fn enter_caller(&mut self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let caller = Caller {
            channel: channel_for(py, event_loop)?,
            context: Arc::new(copy_context(py)?),
            event_loop: Arc::new(event_loop.clone().unbind()),
        };
        if let State::Created(future) = &mut self.state {
            let inner = std::mem::replace(future.get_mut(), Box::pin(std::future::pending()));
            *future.get_mut() = Box::pin(CALLER.scope(caller, inner));
        }
        Ok(())
    }

    /// The inline first poll: `Some(outcome)` if the future finished, `None` if it
    /// is pending (and stays `Created`, to be spawned).
    fn poll_inline(&mut self, py: Python<'_>) -> PyResult<Option<Result<Py<PyAny>, Py<PyAny>>>> {
        let State::Created(future) = &mut self.state else {
            return Ok(None);
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
        Ok(match polled {
            Ok(Poll::Pending) => None,
            Ok(Poll::Ready(output)) => Some(finish(py, to_python(py, output))),
            Err(report) => Some(Err(report.into_pyerr(py).into_value(py).into_any())),
        })
    }

    /// Records the outcome and runs the done callbacks, unless already done (a
    /// completion arriving after `cancel` changes nothing). Called on the loop's
    /// thread by the channel, itself a loop callback: so the done callbacks run
    /// right here rather than being scheduled for the next loop iteration.
    pub(crate) fn complete(slf: &Bound<'_, Self>, outcome: Result<Py<PyAny>, Py<PyAny>>) {
        let py = slf.py();
        let due = {
            let mut this = slf.borrow_mut();
            let State::Running { event_loop, .. } = &this.state else {
                return;
            };
            let event_loop = event_loop.clone_ref(py);
            this.state = State::Finished {
                event_loop: Some(event_loop),
                outcome,
                delivered: false,
            };
            this.due_callbacks(py)
        };
        run_now(slf.as_any(), due);
    }

    /// Drops the Rust future and marks this cancelled (false if already done);
    /// returns the callbacks now due.
    fn cancel_now(&mut self, py: Python<'_>, message: Option<Py<PyAny>>) -> (bool, Due) {
        let event_loop = match &self.state {
            State::Created(_) => None,
            State::Queued { event_loop, .. } => Some(event_loop.clone_ref(py)),
            State::Running { event_loop, task } => {
                self.stop_running(task);
                Some(event_loop.clone_ref(py))
            }
            State::Finished { .. } | State::Cancelled { .. } => return (false, None),
        };
        let before = std::mem::replace(
            &mut self.state,
            State::Cancelled {
                event_loop,
                message,
                delivered: false,
            },
        );
        // Not spawned yet: dropping it is the cancellation, unless it takes a
        // `CancelHandle`, whose promise is that the future sees the cancellation and
        // cleans up: it runs, told at once, and its outcome is ignored.
        if let (
            State::Queued {
                future,
                active,
                outstanding,
                me,
                ..
            },
            Some(token),
        ) = (before, &self.cancel_token)
        {
            token.cancel();
            crate::task::spawn(active, Completing::new(future, outstanding, me));
        }
        (true, self.due_callbacks(py))
    }

    fn event_loop(&self) -> Option<&Py<PyAny>> {
        match &self.state {
            State::Created(_) => None,
            State::Queued { event_loop, .. } | State::Running { event_loop, .. } => {
                Some(event_loop)
            }
            State::Finished { event_loop, .. } | State::Cancelled { event_loop, .. } => {
                event_loop.as_ref()
            }
        }
    }

    /// The callbacks to schedule now that this is done (taken out of `self`, so
    /// they run once), with the loop to schedule them on.
    fn due_callbacks(&mut self, py: Python<'_>) -> Due {
        if self.callbacks.is_empty() {
            return None;
        }
        let event_loop = self.event_loop()?.clone_ref(py);
        Some((event_loop, std::mem::take(&mut self.callbacks)))
    }

    /// The loop this is bound to; an inline future that finished in its first
    /// poll, before any loop asked, binds to the running loop now.
    fn bound_loop(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(event_loop) = self.event_loop() {
            return Ok(event_loop.clone_ref(py));
        }
        let running = self.running_loop(py)?.unbind();
        if let State::Finished { event_loop, .. } | State::Cancelled { event_loop, .. } =
            &mut self.state
        {
            *event_loop = Some(running.clone_ref(py));
        }
        Ok(running)
    }

    /// Cancels the running future: signals its `CancelHandle` if it took one,
    /// else drops it.
    fn stop_running(&self, task: &Task) {
        match &self.cancel_token {
            Some(token) => token.cancel(),
            None => task.abort(),
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn done(&self) -> bool {
        matches!(self.state, State::Finished { .. } | State::Cancelled { .. })
    }
}

/// Runs due callbacks now, each in its own context, reporting a failing one to the
/// loop's exception handler as a scheduled callback's would be. Only for callers
/// that are themselves loop callbacks (the channel), never for user calls such as
/// `cancel`, whose callbacks must not run inside the caller.
fn run_now(awaitable: &Bound<'_, PyAny>, due: Due) {
    let Some((event_loop, callbacks)) = due else {
        return;
    };
    let py = awaitable.py();
    for (callback, context) in callbacks {
        let ran = run_in_context(context.bind(py), callback.bind(py), awaitable);
        if let Err(err) = ran {
            let handled = (|| -> PyResult<()> {
                let report = pyo3::types::PyDict::new(py);
                report.set_item(
                    "message",
                    format!("Exception in callback {}", callback.bind(py)),
                )?;
                report.set_item("exception", err.into_value(py))?;
                report.set_item("future", awaitable)?;
                event_loop
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "call_exception_handler"), (report,))?;
                Ok(())
            })();
            if let Err(err) = handled {
                err.write_unraisable(py, Some(awaitable));
            }
        }
    }
}

/// Done callbacks and the loop to run them on.
type Due = Option<(Py<PyAny>, DoneCallbacks)>;

/// `loop.call_soon(callback, awaitable, context=ctx)` for each due callback, as
/// `asyncio.Future` does when it finishes. Runs with no borrow of the awaitable
/// held, since a callback may be called at once by an eager loop.
fn schedule(awaitable: &Bound<'_, PyAny>, due: Due) {
    let Some((event_loop, callbacks)) = due else {
        return;
    };
    let py = awaitable.py();
    let call_soon = match event_loop.bind(py).getattr(pyo3::intern!(py, "call_soon")) {
        Ok(call_soon) => call_soon,
        Err(err) => return err.write_unraisable(py, Some(awaitable)),
    };
    for (callback, context) in callbacks {
        let scheduled = [(pyo3::intern!(py, "context"), context)]
            .into_py_dict(py)
            .and_then(|kwargs| call_soon.call((callback, awaitable), Some(&kwargs)));
        if let Err(err) = scheduled {
            err.write_unraisable(py, Some(awaitable));
        }
    }
}

/// A converted output as an outcome: the value, or the exception object.
fn finish(py: Python<'_>, result: PyResult<Py<PyAny>>) -> Result<Py<PyAny>, Py<PyAny>> {
    result.map_err(|err| err.into_value(py).into_any())
}

/// What one step of the coroutine protocol gives: the future to wait on (this
/// awaitable itself) or the coroutine's return value.
enum Step<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
}

/// One step of the coroutine protocol.
fn step<'py>(slf: &Bound<'py, RustAwaitable>) -> PyResult<Step<'py>> {
    let py = slf.py();
    RustAwaitable::start(slf, None)?;
    let mut this = slf.borrow_mut();
    match &mut this.state {
        State::Created(_) => Err(PyRuntimeError::new_err(REUSED)),
        State::Queued { .. } | State::Running { .. } => {
            // Not finished: yield ourselves as the future to wait on, the way
            // `Future.__await__` does.
            this.blocking = true;
            Ok(Step::Yield(slf.clone().into_any()))
        }
        State::Finished {
            outcome, delivered, ..
        } => {
            if *delivered {
                return Err(PyRuntimeError::new_err(REUSED));
            }
            *delivered = true;
            match outcome {
                Ok(value) => Ok(Step::Return(value.bind(py).clone())),
                Err(exc) => Err(PyErr::from_value(exc.bind(py).clone())),
            }
        }
        State::Cancelled {
            message, delivered, ..
        } => {
            if *delivered {
                return Err(PyRuntimeError::new_err(REUSED));
            }
            *delivered = true;
            Err(cancelled_error(py, message.as_ref())?)
        }
    }
}

/// A step as `send` and `__next__` give it: the return value as `StopIteration`.
fn step_raising<'py>(slf: &Bound<'py, RustAwaitable>) -> PyResult<Bound<'py, PyAny>> {
    match step(slf)? {
        Step::Yield(future) => Ok(future),
        Step::Return(value) => Err(PyStopIteration::new_err((value.unbind(),))),
    }
}

/// The type's `am_send` slot: the C-level step that CPython's `await` (on 3.10 and
/// 3.11) and asyncio's C `Task` (on every version) call instead of `send` when a
/// type has one. It hands the return value back as a value, not as a raised
/// `StopIteration`, which PyO3 would build and normalize on every ready `await`
/// (about a third of its cost). PyO3 has no way to declare the slot;
/// [`install_am_send`] writes it into the type.
unsafe extern "C" fn am_send(
    slf: *mut pyo3::ffi::PyObject,
    _value: *mut pyo3::ffi::PyObject,
    result: *mut *mut pyo3::ffi::PyObject,
) -> pyo3::ffi::PySendResult {
    use pyo3::ffi::PySendResult::{PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN};
    // SAFETY: CPython calls a type's `am_send` with the GIL held, `slf` a borrowed
    // reference to an instance of the type the slot was installed on, which is
    // `RustAwaitable`'s alone (a pyclass without `subclass` cannot be subclassed),
    // and `result` a valid place for one new reference.
    let py = unsafe { Python::assume_attached() };
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<RustAwaitable>() };
    // No panic may unwind into CPython: one becomes RustPanic, as everywhere else.
    let stepped = catching(|| step(&slf)).unwrap_or_else(|report| Err(report.into_pyerr(py)));
    let (status, value) = match stepped {
        Ok(Step::Yield(future)) => (PYGEN_NEXT, future.into_ptr()),
        Ok(Step::Return(value)) => (PYGEN_RETURN, value.into_ptr()),
        Err(err) => {
            err.restore(py);
            (PYGEN_ERROR, std::ptr::null_mut())
        }
    };
    // SAFETY: see above; the caller owns the reference written here.
    unsafe { *result = value };
    status
}

/// Installs [`am_send`] on this cell library's `RustAwaitable` type; called once
/// from the module's initialisation, before any awaitable exists.
pub(crate) fn install_am_send(py: Python<'_>) {
    let tp = py.get_type::<RustAwaitable>().as_type_ptr();
    // SAFETY: `tp` is the live type object PyO3 created with `PyType_FromSpec`
    // (kept alive by PyO3's static), and the GIL is held. For such heap types
    // `tp_as_async` points into the type object itself, never into shared static
    // tables, so writing it affects this type only; it is non-null here because the
    // class defines `__await__`, and is checked anyway. Nothing caches `am_send`:
    // CPython reads the slot at each `PyIter_Send`, and with no subclasses there is
    // no inherited copy to update.
    unsafe {
        let methods = (*tp).tp_as_async;
        if !methods.is_null() {
            (*methods).am_send = Some(am_send);
        }
    }
}

#[pymethods]
impl RustAwaitable {
    fn send<'py>(
        slf: &Bound<'py, Self>,
        _value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        step_raising(slf)
    }

    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        step_raising(slf)
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
        slf: &Bound<'_, Self>,
        exc: Bound<'_, PyAny>,
        value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        RustAwaitable::close(slf);
        let exc = match value {
            Some(value) if !value.is_none() => value,
            _ if exc.is_instance_of::<pyo3::types::PyType>() => exc.call0()?,
            _ => exc,
        };
        Err(PyErr::from_value(exc))
    }

    /// Stops the coroutine: the Rust future is dropped; it cannot be awaited again.
    fn close(slf: &Bound<'_, Self>) {
        let due = {
            let mut this = slf.borrow_mut();
            let (_, due) = this.cancel_now(slf.py(), None);
            if let State::Cancelled { delivered, .. } | State::Finished { delivered, .. } =
                &mut this.state
            {
                *delivered = true;
            }
            due
        };
        schedule(slf.as_any(), due);
    }

    // --- the asyncio future protocol -------------------------------------------------

    /// What `asyncio.isfuture` reads, so the first look asyncio takes at this object.
    /// With a loop running (`gather`, `ensure_future`, `wait_for` inside a
    /// coroutine) it starts here and is a future, so `ensure_future(f())` runs `f`
    /// at once as it would a coroutine wrapped in a Task. With no loop running
    /// (`loop.run_until_complete(f())` before the loop starts) it answers `None`:
    /// not a future, so asyncio wraps it in a Task like any coroutine.
    #[getter(_asyncio_future_blocking)]
    fn get_asyncio_future_blocking(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        if matches!(slf.borrow().state, State::Created(_)) {
            let Some(event_loop) = running_loop(py)? else {
                return Ok(None);
            };
            RustAwaitable::start(slf, Some(event_loop))?;
        }
        Ok(Some(slf.borrow().blocking))
    }

    #[setter(_asyncio_future_blocking)]
    fn set_asyncio_future_blocking(&mut self, value: bool) {
        self.blocking = value;
    }

    /// The loop this is bound to; binds to the running loop (and starts) if not yet.
    fn get_loop(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        RustAwaitable::start(slf, None)?;
        slf.borrow_mut().bound_loop(py)
    }

    #[pyo3(signature = (callback, *, context=None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        RustAwaitable::start(slf, None)?;
        let context = match context {
            Some(context) if !context.is_none(py) => context,
            _ => copy_context(py)?,
        };
        let due = {
            let mut this = slf.borrow_mut();
            this.callbacks.push((callback, context));
            if this.done() {
                this.bound_loop(py)?;
                this.due_callbacks(py)
            } else {
                None
            }
        };
        schedule(slf.as_any(), due);
        Ok(())
    }

    fn remove_done_callback(&mut self, py: Python<'_>, callback: Bound<'_, PyAny>) -> usize {
        self.callbacks.remove(py, &callback)
    }

    #[pyo3(name = "done")]
    fn py_done(&self) -> bool {
        self.done()
    }

    fn cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled { .. })
    }

    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> bool {
        let (cancelled, due) = slf.borrow_mut().cancel_now(slf.py(), msg);
        schedule(slf.as_any(), due);
        cancelled
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.state {
            State::Finished { outcome, .. } => match outcome {
                Ok(value) => Ok(value.clone_ref(py)),
                Err(exc) => Err(PyErr::from_value(exc.bind(py).clone())),
            },
            State::Cancelled { message, .. } => Err(cancelled_error(py, message.as_ref())?),
            _ => Err(invalid_state(py, "Result is not set.")),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state {
            State::Finished { outcome, .. } => Ok(outcome.as_ref().err().map(|e| e.clone_ref(py))),
            State::Cancelled { message, .. } => Err(cancelled_error(py, message.as_ref())?),
            _ => Err(invalid_state(py, "Exception is not set.")),
        }
    }

    /// What `asyncio.gather` and `wait_for` call on a cancelled future.
    fn _make_cancelled_error(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let message = match &self.state {
            State::Cancelled { message, .. } => message.as_ref(),
            _ => None,
        };
        Ok(cancelled_error(py, message)?.into_value(py).into_any())
    }

    #[getter]
    fn _cancel_message(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match &self.state {
            State::Cancelled { message, .. } => message.as_ref().map(|m| m.clone_ref(py)),
            _ => None,
        }
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
                return Err(PyValueError::new_err(format!(
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
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(PyRuntimeError::new_err(format!(
                "ipy_rustasync.run({}(...)) was called on one of the Rust runtime's own threads, \
                 where blocking would stall it; await the call instead",
                self.name
            )));
        }
        let State::Created(future) = std::mem::replace(
            &mut self.state,
            State::Cancelled {
                event_loop: None,
                message: None,
                delivered: true,
            },
        ) else {
            return Err(PyRuntimeError::new_err(REUSED));
        };
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
            let outcome = match waited {
                Ok(Ok(Ok(output))) => Some(finish(py, to_python(py, output))),
                Ok(Ok(Err(report))) => Some(Err(report.into_pyerr(py).into_value(py).into_any())),
                Ok(Err(join)) => {
                    return Err(PyRuntimeError::new_err(format!(
                        "{}() stopped without a result: {join}",
                        self.name
                    )))
                }
                Err(_elapsed) => None,
            };
            if let Some(outcome) = outcome {
                let returned = match &outcome {
                    Ok(value) => Ok(value.clone_ref(py)),
                    Err(exc) => Err(PyErr::from_value(exc.bind(py).clone())),
                };
                self.state = State::Finished {
                    event_loop: None,
                    outcome,
                    delivered: true,
                };
                return returned;
            }
            if let Err(interrupt) = py.check_signals() {
                self.stop_running(&Task::Spawned(handle.abort_handle()));
                return Err(interrupt);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.stop_running(&Task::Spawned(handle.abort_handle()));
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
            State::Queued { .. } | State::Running { .. } => "running",
            State::Finished { .. } => "finished",
            State::Cancelled { .. } => "cancelled",
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
            State::Running { task, .. } => self.stop_running(task),
            // Never spawned: the future drops with this; with a `CancelHandle`, it
            // runs told it is cancelled, as `cancel` would.
            State::Queued { .. } => {
                if self.cancel_token.is_some() {
                    Python::attach(|py| {
                        self.cancel_now(py, None);
                    });
                }
            }
            State::Finished { .. } | State::Cancelled { .. } => {}
        }
    }
}
