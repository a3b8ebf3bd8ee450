//! `RustFuture`: a started Rust future as an asyncio future.
//!
//! It is what a Rust coroutine waits on (the object its `await` yields to the
//! driving Task, as `asyncio.Future.__await__` yields itself), and the base of
//! [`RustTask`](crate::task::RustTask), which asyncio's APIs get from the bridge's
//! task factory. It implements the asyncio future protocol the way
//! `asyncio.Future` does (`_asyncio_future_blocking`, `get_loop`,
//! `add_done_callback`, `remove_done_callback`, `result`, `exception`, `cancel`, ...,
//! and `__await__`, re-awaitable once done), with three differences in kind: its
//! result comes from Rust (`set_result` and `set_exception` raise, as a Task's do);
//! cancelling it drops the Rust future (or signals its `CancelHandle`); and the done
//! callbacks of a result delivered by the loop's channel run inside that channel's
//! loop callback rather than each in a callback of its own.
//!
//! State lives behind one mutex that is never held while Python code runs (a done
//! callback, an `__eq__`, a `__del__` reached by dropping an object): every method
//! decides under the lock, takes out what it must act on, and acts after releasing
//! it. So Python code re-entering any method from anywhere cannot deadlock or see a
//! half-made change, with or without the GIL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};

use crate::callback::{Caller, CALLER};
use crate::callbacks::{schedule, Callback, CallbackBatch, DoneCallbacks};
use crate::cancel::CancelToken;
use crate::capi::{copy_context, next_result, Finalize, SendResult, SendSlot};
use crate::channel::{channel_for, Dispatch, LaunchEntry};
use crate::convert::{settle, Outcome};
use crate::runtime::Active;
use crate::spawn::{poll_inline, spawn, BoxFuture, Completion, Launch, TaskBody};
use crate::sync::lock;

/// Where a future is in its life.
enum Stage {
    /// Started, waiting in its loop's channel to be handed to the runtime.
    Queued(QueuedFuture),
    /// Being polled inline right now.
    Polling,
    /// On the runtime.
    Running(crate::spawn::Abort),
    /// A task whose cancellation was requested: the Rust side is stopped, and the
    /// task becomes cancelled on the loop's next turn (as a Task does once its
    /// coroutine has taken the `CancelledError`).
    Cancelling,
    Finished(Result<Py<PyAny>, StoredException>),
    Cancelled,
}

/// A future queued in its loop's channel, with what it holds on to until it runs.
struct QueuedFuture {
    future: BoxFuture,
    inline: bool,
    /// Whether Python sees it as started (a coroutine was sent into). A task
    /// cancelled before it starts never runs, as a Task's coroutine never does; a
    /// started one taking a `CancelHandle` still runs, to see its cancellation.
    started: bool,
    active: Active,
    /// Its way back to the loop (its object held by the loop's channel meanwhile).
    completion: Completion,
}

/// The exception a finished future keeps, with its traceback as it was when set:
/// raising it again must not grow the traceback (asyncio keeps it the same way).
pub(crate) struct StoredException {
    exc: Py<PyAny>,
    traceback: Option<Py<PyAny>>,
}

impl StoredException {
    fn new(py: Python<'_>, err: PyErr) -> Self {
        let traceback = err.traceback(py).map(|tb| tb.into_any().unbind());
        StoredException {
            exc: err.into_value(py).into_any(),
            traceback,
        }
    }

    fn clone_ref(&self, py: Python<'_>) -> Self {
        StoredException {
            exc: self.exc.clone_ref(py),
            traceback: self.traceback.as_ref().map(|tb| tb.clone_ref(py)),
        }
    }

    fn raise(&self, py: Python<'_>) -> PyErr {
        let exc = self.exc.bind(py);
        let traceback = self
            .traceback
            .as_ref()
            .map_or_else(|| py.None(), |tb| tb.clone_ref(py));
        if let Err(err) = exc.setattr(pyo3::intern!(py, "__traceback__"), traceback) {
            return err;
        }
        PyErr::from_value(exc.clone())
    }
}

struct Inner {
    stage: Stage,
    callbacks: DoneCallbacks,
    /// An exception was set and nobody has looked at it yet (see `RustTask`'s
    /// finalizer, which reports it as asyncio does).
    log_traceback: bool,
    cancel_message: Option<Py<PyAny>>,
    /// A task whose Rust side raised `CancelledError` ends cancelled, as a Task whose
    /// coroutine did; its first `result()` raises that very exception, as asyncio's
    /// `_make_cancelled_error` does.
    cancelled_exc: Option<Py<PyAny>>,
    /// A task cancelled before it started (asyncio's `_must_cancel`): it stays
    /// queued, and is cancelled instead of launched, unless `uncancel()` withdraws
    /// the request first.
    must_cancel: bool,
    /// Whether the task's `_finish_cancelling` is scheduled.
    finishing: bool,
}

/// A started Rust future as an asyncio future.
#[pyclass(
    frozen,
    subclass,
    weakref,
    name = "RustFuture",
    module = "ipy_rustasync"
)]
pub struct RustFuture {
    name: &'static str,
    event_loop: Py<PyAny>,
    inner: Mutex<Inner>,
    /// `_asyncio_future_blocking`, which `Future.__await__` sets and the Task resets.
    blocking: AtomicBool,
    cancel_token: Option<CancelToken>,
    /// A task's `contextvars` context (`None` for what a coroutine waits on).
    context: Option<Py<PyAny>>,
    /// Whether it is a [`RustTask`](crate::task::RustTask)'s base.
    task: bool,
    /// A task's coroutine object (what `get_coro()` returns), told when the task is
    /// done: until then it reads as suspended in the task.
    coroutine: Option<Py<PyAny>>,
    /// Where it was made, in debug mode (asyncio's `_source_traceback`).
    source_traceback: Option<Py<PyAny>>,
}

static CANCELLED_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static INVALID_STATE_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn cancelled_error(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyErr {
    let made = CANCELLED_ERROR
        .import(py, "asyncio", "CancelledError")
        .and_then(|class| match message {
            Some(message) => class.call1((message,)),
            None => class.call0(),
        });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
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

/// The cleanup stopping a future leaves for after the lock is released: the Rust
/// future to drop and the callbacks to schedule.
pub(crate) struct Cleanup {
    /// The Rust future, dropped outside the lock (its destructors are user code).
    dropped: Option<QueuedFuture>,
    batch: CallbackBatch,
}

impl RustFuture {
    /// A future named `name` (the cell function's) on `event_loop`, not yet started
    /// (see [`RustFuture::start`]).
    pub(crate) fn new(
        name: &'static str,
        event_loop: Py<PyAny>,
        cancel_token: Option<CancelToken>,
    ) -> Self {
        RustFuture {
            name,
            event_loop,
            inner: Mutex::new(Inner {
                stage: Stage::Cancelled,
                callbacks: DoneCallbacks::default(),
                log_traceback: false,
                cancel_message: None,
                cancelled_exc: None,
                must_cancel: false,
                finishing: false,
            }),
            blocking: AtomicBool::new(false),
            cancel_token,
            context: None,
            task: false,
            coroutine: None,
            source_traceback: None,
        }
    }

    /// The same, as a task's base: with the task's context and coroutine object.
    pub(crate) fn for_task(self, context: Py<PyAny>, coroutine: Py<PyAny>) -> Self {
        RustFuture {
            context: Some(context),
            task: true,
            coroutine: Some(coroutine),
            ..self
        }
    }

    /// A task's coroutine object.
    pub(crate) fn coroutine(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.coroutine.as_ref().map(|c| c.clone_ref(py))
    }

    /// The same, recording where it is made if its loop is in debug mode, as an
    /// asyncio future does. The loop's `_debug` is read directly where it has one
    /// (every `BaseEventLoop`): a `get_debug()` call per future costs a tenth of a
    /// gathered call.
    pub(crate) fn traced(self, py: Python<'_>) -> PyResult<Self> {
        let event_loop = self.event_loop.bind(py);
        let debug = match event_loop.getattr(pyo3::intern!(py, "_debug")) {
            Ok(debug) => debug.is_truthy()?,
            Err(_) => event_loop
                .call_method0(pyo3::intern!(py, "get_debug"))?
                .is_truthy()?,
        };
        if !debug {
            return Ok(self);
        }
        static EXTRACT_STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let stack = EXTRACT_STACK
            .import(py, "asyncio.format_helpers", "extract_stack")?
            .call0()?;
        Ok(RustFuture {
            source_traceback: Some(stack.unbind()),
            ..self
        })
    }

    /// Tells a task's coroutine object that the task is done.
    fn became_done(&self, py: Python<'_>) {
        if let (Some(coroutine), Some(hook)) = (&self.coroutine, TASK_DONE.get()) {
            hook(coroutine.bind(py));
        }
    }

    /// The cell function's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context.as_ref().map(|c| c.clone_ref(py))
    }

    pub(crate) fn event_loop(&self) -> &Py<PyAny> {
        &self.event_loop
    }

    /// Starts the future on its loop: `eager` (a coroutine being awaited, or a task
    /// created with `eager_start`) spawns it now if it is the first start of the
    /// loop's turn; otherwise it waits for the channel to launch it on the next turn.
    /// `inline` futures are polled once in place before they are spawned (`eager`
    /// callers have done that themselves). `context` is the caller's
    /// `contextvars` context, for functions that call back into Python.
    pub(crate) fn start(
        slf: &Bound<'_, Self>,
        future: BoxFuture,
        inline: bool,
        with_caller: bool,
        context: Option<Py<PyAny>>,
        eager: bool,
        active: Option<Active>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let event_loop = this.event_loop.bind(py);
        let port = channel_for(py, event_loop)?;
        let mut future = future;
        if with_caller {
            let caller = Caller {
                channel: port.channel.clone(),
                context: Arc::new(match context {
                    Some(context) => context,
                    None => caller_context(py)?,
                }),
                event_loop: Arc::new(event_loop.clone().unbind()),
            };
            future = Box::pin(CALLER.scope(caller, future));
        }
        let (sink, slot) = port.hold(slf.clone().into_any().unbind(), abandoned);
        let pending = QueuedFuture {
            future,
            inline,
            started: eager,
            active: match active {
                Some(active) => active,
                None => Active::new()?,
            },
            completion: Completion::new(sink, slot, deliver),
        };
        lock(&this.inner).stage = Stage::Queued(pending);
        let queued = LaunchEntry {
            slot,
            launch: launch_queued,
        };
        match port.start(py, event_loop, queued, eager) {
            Ok(Dispatch::SpawnNow) => {
                if let Some(mut pending) = take_queued(this) {
                    if pending.inline {
                        if let Poll::Ready(outcome) =
                            poll_inline(py, this.name, &pending.active, &mut pending.future)
                        {
                            pending.completion.finish(outcome);
                            return Ok(());
                        }
                    }
                    let abort = spawn(
                        pending.active,
                        TaskBody::new(pending.future, pending.completion),
                    );
                    set_running(this, abort);
                }
                Ok(())
            }
            Ok(Dispatch::Queued) => Ok(()),
            Err(err) => {
                let dropped = take_queued(this);
                drop(dropped);
                Err(err)
            }
        }
    }

    /// Cancels it as `cancel()` does: what a coroutine does with the future it waits
    /// on when it is closed, thrown into or collected.
    pub(crate) fn abandon(slf: &Bound<'_, Self>) {
        // A done future stays as it is (cancelling would mark its exception seen).
        if !slf.get().is_done() {
            RustFuture::cancel(slf, None);
        }
    }

    /// Sets `_asyncio_future_blocking`, as `Future.__await__` does before it yields.
    pub(crate) fn set_blocking(&self) {
        self.blocking.store(true, Ordering::Relaxed);
    }

    /// Whether it is finished or cancelled.
    pub(crate) fn is_done(&self) -> bool {
        matches!(
            lock(&self.inner).stage,
            Stage::Finished(_) | Stage::Cancelled
        )
    }

    /// The result as `await` gives it (raising the exception), marking it retrieved.
    pub(crate) fn outcome(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        /// The stage as seen under the lock, copied out to act on after it.
        enum Snapshot {
            Value(Py<PyAny>),
            Raised(StoredException),
            Cancelled,
            Pending,
        }
        let seen = {
            let mut inner = lock(&self.inner);
            inner.log_traceback = false;
            match &inner.stage {
                Stage::Finished(Ok(value)) => Snapshot::Value(value.clone_ref(py)),
                Stage::Finished(Err(stored)) => Snapshot::Raised(stored.clone_ref(py)),
                Stage::Cancelled => Snapshot::Cancelled,
                _ => Snapshot::Pending,
            }
        };
        // Raising runs Python code (a `__traceback__` set, an exception's
        // constructor): only once the lock is released.
        match seen {
            Snapshot::Value(value) => Ok(value),
            Snapshot::Raised(stored) => Err(stored.raise(py)),
            Snapshot::Cancelled => Err(self.make_cancelled_error(py)),
            Snapshot::Pending => Err(invalid_state(py, "Result is not set.")),
        }
    }

    /// The `CancelledError` to raise for a cancelled future: the one its Rust side
    /// raised (once), else a new one with the cancel message.
    fn make_cancelled_error(&self, py: Python<'_>) -> PyErr {
        let (saved, message) = {
            let mut inner = lock(&self.inner);
            let message = inner.cancel_message.as_ref().map(|m| m.clone_ref(py));
            (inner.cancelled_exc.take(), message)
        };
        match saved {
            Some(exc) => PyErr::from_value(exc.into_bound(py)),
            None => cancelled_error(py, message.as_ref()),
        }
    }

    /// Marks an exception as seen (cancelling a task does, as asyncio's does).
    pub(crate) fn forget_exception(&self) {
        lock(&self.inner).log_traceback = false;
    }

    /// The stored exception, without marking it seen.
    pub(crate) fn stored_exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match &lock(&self.inner).stage {
            Stage::Finished(Err(stored)) => Some(stored.exc.clone_ref(py)),
            _ => None,
        }
    }

    /// Whether it holds an exception nobody looked at (what its finalizer reports).
    pub(crate) fn has_unretrieved(&self) -> bool {
        self.has_news(false)
    }

    /// Whether a finalizer has something to report: an exception nobody looked at,
    /// or, if `pending_too`, that it is still pending. One look under the lock (it
    /// is asked at every deallocation).
    pub(crate) fn has_news(&self, pending_too: bool) -> bool {
        let inner = lock(&self.inner);
        match inner.stage {
            Stage::Queued(_) | Stage::Polling | Stage::Running(_) => pending_too,
            Stage::Finished(Err(_)) => inner.log_traceback,
            _ => false,
        }
    }

    /// Where it was made, if its loop was in debug mode.
    pub(crate) fn source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|tb| tb.clone_ref(py))
    }

    /// A finalizer's report to the loop's exception handler, as asyncio's `__del__`
    /// makes it: `message`, `fields`, and where it was made in debug mode. Whatever
    /// fails is reported as unraisable (a finalizer cannot raise).
    pub(crate) fn report(
        &self,
        object: &Bound<'_, PyAny>,
        message: &str,
        fields: &[(&str, &Bound<'_, PyAny>)],
    ) {
        let py = object.py();
        let made = (|| -> PyResult<()> {
            let context = pyo3::types::PyDict::new(py);
            context.set_item("message", message)?;
            for (key, value) in fields {
                context.set_item(key, value)?;
            }
            if let Some(traceback) = self.source_traceback(py) {
                context.set_item("source_traceback", traceback)?;
            }
            self.event_loop
                .bind(py)
                .call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
            Ok(())
        })();
        if let Err(err) = made {
            err.write_unraisable(py, Some(object));
        }
    }

    /// Whether a finished exception was never looked at, and takes it (for the
    /// task's finalizer).
    pub(crate) fn unretrieved(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let inner = lock(&self.inner);
        match &inner.stage {
            Stage::Finished(Err(stored)) if inner.log_traceback => Some(stored.exc.clone_ref(py)),
            _ => None,
        }
    }

    /// Whether it is still pending (not finished, cancelled or being cancelled).
    pub(crate) fn is_pending(&self) -> bool {
        matches!(
            lock(&self.inner).stage,
            Stage::Queued(_) | Stage::Polling | Stage::Running(_)
        )
    }

    /// Stops the Rust side of a future: cancelled now. False if it was not pending.
    pub(crate) fn stop(&self, py: Python<'_>, message: Option<Py<PyAny>>) -> (bool, Cleanup) {
        let mut inner = lock(&self.inner);
        inner.log_traceback = false;
        let before = std::mem::replace(&mut inner.stage, Stage::Cancelled);
        let dropped = match before {
            Stage::Queued(pending) => self.drop_queued(pending),
            Stage::Running(abort) => {
                self.stop_running(&abort);
                None
            }
            Stage::Polling => {
                if let Some(token) = &self.cancel_token {
                    token.cancel();
                }
                None
            }
            other => {
                inner.stage = other;
                return (
                    false,
                    Cleanup {
                        dropped: None,
                        batch: None,
                    },
                );
            }
        };
        let old_message = std::mem::replace(&mut inner.cancel_message, message);
        let batch = take_callbacks(&mut inner, &self.event_loop, py);
        drop(inner);
        self.became_done(py);
        drop(old_message);
        (true, Cleanup { dropped, batch })
    }

    /// A queued future being cancelled: a started function with a `CancelHandle`
    /// runs, told it is cancelled, to clean up (its outcome is ignored); any other
    /// is returned, to be dropped outside the lock.
    fn drop_queued(&self, pending: QueuedFuture) -> Option<QueuedFuture> {
        match &self.cancel_token {
            Some(token) if pending.started => {
                token.cancel();
                let completion = pending.completion.redirected(ignore);
                let _ = spawn(pending.active, TaskBody::new(pending.future, completion));
                None
            }
            _ => Some(pending),
        }
    }

    fn stop_running(&self, abort: &crate::spawn::Abort) {
        match &self.cancel_token {
            Some(token) => token.cancel(),
            None => abort.abort(),
        }
    }

    /// A task's `cancel(msg)` once it is known not done, as asyncio's Task does it:
    /// a task not started yet is marked (`must_cancel`, the last message winning,
    /// as the coroutine has taken none yet); a started one has its Rust side stopped
    /// now and becomes cancelled on the loop's next turn (a message given again
    /// meanwhile is ignored, as the coroutine already took the first). True if the
    /// task's `_finish_cancelling` must now be scheduled.
    pub(crate) fn request_cancel(&self, message: Option<Py<PyAny>>) -> bool {
        let mut inner = lock(&self.inner);
        inner.log_traceback = false;
        let mut dropped = None;
        let old_message = match std::mem::replace(&mut inner.stage, Stage::Cancelling) {
            Stage::Queued(pending) if !(pending.started && self.cancel_token.is_some()) => {
                inner.stage = Stage::Queued(pending);
                inner.must_cancel = true;
                std::mem::replace(&mut inner.cancel_message, message)
            }
            Stage::Queued(pending) => {
                dropped = self.drop_queued(pending);
                std::mem::replace(&mut inner.cancel_message, message)
            }
            Stage::Running(abort) => {
                self.stop_running(&abort);
                std::mem::replace(&mut inner.cancel_message, message)
            }
            Stage::Polling => {
                if let Some(token) = &self.cancel_token {
                    token.cancel();
                }
                std::mem::replace(&mut inner.cancel_message, message)
            }
            Stage::Cancelling => message,
            done @ (Stage::Finished(_) | Stage::Cancelled) => {
                inner.stage = done;
                message
            }
        };
        let schedule = !std::mem::replace(&mut inner.finishing, true);
        drop(inner);
        drop((old_message, dropped));
        schedule
    }

    /// `uncancel()` brought the count of requests back to zero (3.13+): a task not
    /// started yet is not cancelled after all.
    pub(crate) fn cancel_withdrawn(&self) {
        lock(&self.inner).must_cancel = false;
    }

    /// asyncio's `_must_cancel`: cancelled before it started, not yet done.
    pub(crate) fn must_cancel(&self) -> bool {
        let inner = lock(&self.inner);
        inner.must_cancel && matches!(inner.stage, Stage::Queued(_))
    }

    /// Ends a task's cancellation: a task being cancelled, or marked before it
    /// started, is cancelled now (a queued one dropped unstarted), its callbacks
    /// scheduled. As a Task's coroutine raises the `CancelledError` made from the
    /// message and the Task keeps that exception, the message becomes the exception
    /// the first `result()` raises, and `_cancel_message` is cleared. Nothing if the
    /// task is in neither state (finished meanwhile, or the request withdrawn).
    pub(crate) fn finish_cancelling(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let ready = |inner: &Inner| {
            matches!(inner.stage, Stage::Cancelling)
                || (inner.must_cancel && matches!(inner.stage, Stage::Queued(_)))
        };
        let message = {
            let mut inner = lock(&this.inner);
            inner.finishing = false;
            if !ready(&inner) {
                return Ok(());
            }
            inner.cancel_message.as_ref().map(|m| m.clone_ref(py))
        };
        // Made outside the lock (a constructor is Python code), then checked again.
        let exc = cancelled_error(py, message.as_ref())
            .into_value(py)
            .into_any();
        let (batch, dropped, old) = {
            let mut inner = lock(&this.inner);
            if !ready(&inner) {
                return Ok(());
            }
            inner.must_cancel = false;
            let dropped = match std::mem::replace(&mut inner.stage, Stage::Cancelled) {
                Stage::Queued(pending) => this.drop_queued(pending),
                _ => None,
            };
            let old = (
                inner.cancel_message.take(),
                inner.cancelled_exc.replace(exc),
            );
            (
                take_callbacks(&mut inner, &this.event_loop, py),
                dropped,
                old,
            )
        };
        this.became_done(py);
        drop((dropped, old, message));
        schedule(slf.as_any(), batch);
        Ok(())
    }

    /// Records a delivered result unless it stopped meanwhile (a completion
    /// arriving after `cancel` changes nothing), and runs the done callbacks in place.
    fn complete(slf: &Bound<'_, Self>, result: PyResult<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let fatal = match &result {
            Err(err) if is_fatal(py, err) => Some(err.clone_ref(py)),
            _ => None,
        };
        // A task whose Rust side raised CancelledError is cancelled, as asyncio's
        // Task is when its coroutine raises it.
        let cancelled = match &result {
            Err(err) if this.task && is_cancelled_error(py, err) => {
                Some(err.clone_ref(py).into_value(py).into_any())
            }
            _ => None,
        };
        // Made before the lock is taken: normalizing an exception can run Python code.
        let result = result.map_err(|err| StoredException::new(py, err));
        let batch = {
            let mut inner = lock(&this.inner);
            if !matches!(inner.stage, Stage::Running(_) | Stage::Polling) {
                return Ok(());
            }
            if let Some(exc) = cancelled {
                inner.stage = Stage::Cancelled;
                inner.cancelled_exc = Some(exc);
                let batch = take_callbacks(&mut inner, &this.event_loop, py);
                drop(inner);
                this.became_done(py);
                drop(result);
                return crate::callbacks::run_now(slf.as_any(), batch);
            }
            inner.stage = Stage::Finished(result);
            inner.log_traceback = matches!(inner.stage, Stage::Finished(Err(_)));
            take_callbacks(&mut inner, &this.event_loop, py)
        };
        this.became_done(py);
        crate::callbacks::run_now(slf.as_any(), batch)?;
        // A task's `KeyboardInterrupt` or `SystemExit` also stops the loop, as
        // asyncio's Task re-raises it after setting it.
        match fatal {
            Some(err) if this.task => Err(err),
            _ => Ok(()),
        }
    }
}

/// The `contextvars` context a function's calls back into Python run in: the
/// current task's own context (3.12+, where tasks expose it), as the code of an
/// `async def` awaited in that task runs in it, so a variable a callback sets is
/// seen by the task afterwards; else a copy of the current one.
fn caller_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static CURRENT_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if crate::capi::version_at_least(3, 12) {
        let task = CURRENT_TASK
            .import(py, "asyncio", "current_task")?
            .call0()?;
        if !task.is_none() {
            if let Ok(context) = task.call_method0(pyo3::intern!(py, "get_context")) {
                return Ok(context.unbind());
            }
        }
    }
    copy_context(py)
}

fn is_cancelled_error(py: Python<'_>, err: &PyErr) -> bool {
    CANCELLED_ERROR
        .import(py, "asyncio", "CancelledError")
        .is_ok_and(|class| err.is_instance(py, class))
}

fn is_fatal(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
        || err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
}

fn take_callbacks(inner: &mut Inner, event_loop: &Py<PyAny>, py: Python<'_>) -> CallbackBatch {
    if inner.callbacks.is_empty() {
        return None;
    }
    Some((
        event_loop.clone_ref(py),
        std::mem::take(&mut inner.callbacks),
    ))
}

/// Takes the queued future out (leaving `Polling` in its place), if it is queued.
fn take_queued(this: &RustFuture) -> Option<QueuedFuture> {
    let mut inner = lock(&this.inner);
    if !matches!(inner.stage, Stage::Queued(_)) {
        return None;
    }
    match std::mem::replace(&mut inner.stage, Stage::Polling) {
        Stage::Queued(pending) => Some(pending),
        _ => None,
    }
}

/// Records that it runs on the runtime now; if it was cancelled while being
/// launched, stops it again.
fn set_running(this: &RustFuture, abort: crate::spawn::Abort) {
    let mut inner = lock(&this.inner);
    if matches!(inner.stage, Stage::Polling) {
        inner.stage = Stage::Running(abort);
    } else {
        drop(inner);
        match &this.cancel_token {
            Some(token) => token.cancel(),
            None => abort.abort(),
        }
    }
}

/// The channel's launch function for a queued future: inline-polls it if asked
/// (delivering a result at once through the channel), else hands it over for the
/// burst.
fn launch_queued(target: &Bound<'_, PyAny>) -> Option<Launch> {
    let py = target.py();
    let slf = target.cast::<RustFuture>().ok()?;
    let this = slf.get();
    let mut pending = {
        let mut inner = lock(&this.inner);
        match std::mem::replace(&mut inner.stage, Stage::Polling) {
            Stage::Queued(pending) if !inner.must_cancel => pending,
            other => {
                let must_cancel = inner.must_cancel && matches!(other, Stage::Queued(_));
                inner.stage = other;
                drop(inner);
                if must_cancel {
                    // Cancelled before it started: it never runs, as a Task's
                    // coroutine never does when its first step throws the
                    // `CancelledError` in.
                    if let Err(err) = RustFuture::finish_cancelling(slf) {
                        err.write_unraisable(py, Some(target));
                    }
                }
                return None;
            }
        }
    };
    if pending.inline {
        if let Poll::Ready(outcome) =
            poll_inline(py, this.name, &pending.active, &mut pending.future)
        {
            // Delivered by the channel right after this launch, like any result.
            pending.completion.finish(outcome);
            return None;
        }
    }
    let (launch, abort) = Launch::new(
        pending.active,
        TaskBody::new(pending.future, pending.completion),
    );
    set_running(this, abort);
    Some(launch)
}

/// The channel's delivery function: converts the outcome on the loop's thread and
/// completes the future.
fn deliver(py: Python<'_>, target: Py<PyAny>, outcome: Outcome) -> PyResult<()> {
    let target = target.into_bound(py);
    let Ok(slf) = target.cast::<RustFuture>() else {
        return Ok(());
    };
    // Converted even if it was cancelled meanwhile (rare, and `complete` then drops
    // it): one look at the state per result, not two.
    let result = settle(py, outcome);
    RustFuture::complete(slf, result)
}

/// What becomes of a started future whose loop let go of it (closed, or collected)
/// before its outcome came: as with an asyncio future on a closed loop, it stays
/// pending and its callbacks never run. They are dropped (so a task waiting on it can
/// be collected, reported "destroyed but pending" as asyncio's is), and the Rust
/// future is stopped, since nothing can ever take its result.
fn abandoned(py: Python<'_>, target: Py<PyAny>) {
    let Ok(slf) = target.bind(py).cast::<RustFuture>() else {
        return;
    };
    let this = slf.get();
    let callbacks = {
        let mut inner = lock(&this.inner);
        if let Stage::Running(abort) = &inner.stage {
            match &this.cancel_token {
                Some(token) => token.cancel(),
                None => abort.abort(),
            }
        }
        std::mem::take(&mut inner.callbacks)
    };
    drop(callbacks);
}

/// Where the outcome of a cancelled `CancelHandle` function goes: nowhere.
fn ignore(_py: Python<'_>, _target: Py<PyAny>, _outcome: Outcome) -> PyResult<()> {
    Ok(())
}

impl RustFuture {
    fn state_name(&self) -> &'static str {
        match lock(&self.inner).stage {
            Stage::Finished(_) => "FINISHED",
            Stage::Cancelled => "CANCELLED",
            _ => "PENDING",
        }
    }

    /// `finished result=1`, `pending`, ...: the state part of the repr, as asyncio
    /// writes it.
    pub(crate) fn describe(&self, py: Python<'_>) -> String {
        let inner = lock(&self.inner);
        let (state, detail) = match &inner.stage {
            Stage::Finished(Ok(value)) => ("finished", Some(("result", value.clone_ref(py)))),
            Stage::Finished(Err(stored)) => {
                ("finished", Some(("exception", stored.exc.clone_ref(py))))
            }
            Stage::Cancelled => ("cancelled", None),
            _ => ("pending", None),
        };
        let callbacks = inner.callbacks.len();
        drop(inner);
        let mut text = state.to_owned();
        if let Some((key, value)) = detail {
            let shown = value
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into());
            text.push_str(&format!(" {key}={}", reprlib_short(&shown)));
        }
        if callbacks > 0 && state == "pending" {
            text.push_str(&format!(" cb=[{callbacks}]"));
        }
        text
    }
}

/// asyncio shortens reprs with `reprlib` (to 20 characters of a long string);
/// this keeps a repr line readable the same way.
fn reprlib_short(text: &str) -> String {
    const LIMIT: usize = 60;
    if text.chars().count() <= LIMIT {
        return text.to_owned();
    }
    let head: String = text.chars().take(LIMIT - 3).collect();
    format!("{head}...")
}

#[pymethods]
impl RustFuture {
    // --- the asyncio future protocol -------------------------------------------------

    #[getter(_asyncio_future_blocking)]
    fn get_asyncio_future_blocking(&self) -> bool {
        self.blocking.load(Ordering::Relaxed)
    }

    #[setter(_asyncio_future_blocking)]
    fn set_asyncio_future_blocking(&self, value: bool) {
        self.blocking.store(value, Ordering::Relaxed);
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    #[getter(_loop)]
    fn loop_attribute(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    #[pyo3(signature = (fn_, *, context=None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        fn_: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let context = match context {
            Some(context) if !context.is_none(py) => context,
            _ => copy_context(py)?,
        };
        let batch = {
            let mut inner = lock(&this.inner);
            let done = matches!(inner.stage, Stage::Finished(_) | Stage::Cancelled);
            if done {
                let mut one = DoneCallbacks::default();
                one.push((fn_, context));
                Some((this.event_loop.clone_ref(py), one))
            } else {
                inner.callbacks.push((fn_, context));
                None
            }
        };
        schedule(slf.as_any(), batch);
        Ok(())
    }

    /// Removes every callback equal to `fn_`; returns how many. The comparisons run
    /// outside the lock (an `__eq__` may add or remove callbacks meanwhile: those it
    /// adds stay, as with asyncio's own futures).
    fn remove_done_callback(&self, py: Python<'_>, fn_: Bound<'_, PyAny>) -> PyResult<usize> {
        let snapshot = lock(&self.inner).callbacks.snapshot(py);
        let mut matched: Vec<Callback> = Vec::new();
        for (callback, context) in snapshot {
            if callback.bind(py).eq(&fn_)? {
                matched.push((callback, context));
            }
        }
        if matched.is_empty() {
            return Ok(0);
        }
        let (count, removed) = lock(&self.inner).callbacks.remove_matched(&matched);
        drop(removed);
        Ok(count)
    }

    fn done(&self) -> bool {
        self.is_done()
    }

    fn cancelled(&self) -> bool {
        matches!(lock(&self.inner).stage, Stage::Cancelled)
    }

    /// Drops the Rust future (or signals its `CancelHandle`) and marks this
    /// cancelled; its callbacks are scheduled. False if already done.
    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> bool {
        let (cancelled, stopped) = slf.get().stop(slf.py(), msg);
        let Cleanup { dropped, batch } = stopped;
        drop(dropped);
        schedule(slf.as_any(), batch);
        cancelled
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.outcome(py)
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut inner = lock(&self.inner);
        match &inner.stage {
            Stage::Finished(result) => {
                let exc = result.as_ref().err().map(|stored| stored.exc.clone_ref(py));
                inner.log_traceback = false;
                Ok(exc)
            }
            Stage::Cancelled => {
                drop(inner);
                Err(self.make_cancelled_error(py))
            }
            _ => Err(invalid_state(py, "Exception is not set.")),
        }
    }

    #[pyo3(signature = (_result))]
    fn set_result(&self, _result: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "RustFuture does not support set_result operation: its result comes from Rust",
        ))
    }

    #[pyo3(signature = (_exception))]
    fn set_exception(&self, _exception: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "RustFuture does not support set_exception operation: its result comes from Rust",
        ))
    }

    fn __await__(slf: Py<Self>) -> FutureIter {
        FutureIter {
            future: Mutex::new(Some(slf)),
            yielded: AtomicBool::new(false),
        }
    }

    fn __iter__(slf: Py<Self>) -> FutureIter {
        Self::__await__(slf)
    }

    /// What `asyncio.gather` and `wait_for` call on a cancelled future.
    fn _make_cancelled_error(&self, py: Python<'_>) -> Py<PyAny> {
        self.make_cancelled_error(py).into_value(py).into_any()
    }

    #[getter(_cancel_message)]
    fn get_cancel_message(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.inner)
            .cancel_message
            .as_ref()
            .map(|m| m.clone_ref(py))
    }

    #[setter(_cancel_message)]
    fn set_cancel_message(&self, value: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut lock(&self.inner).cancel_message, value);
        drop(old);
    }

    #[getter(_log_traceback)]
    fn get_log_traceback(&self) -> bool {
        lock(&self.inner).log_traceback
    }

    #[setter(_log_traceback)]
    fn set_log_traceback(&self, value: bool) -> PyResult<()> {
        if value {
            return Err(PyValueError::new_err(
                "_log_traceback can only be set to False",
            ));
        }
        lock(&self.inner).log_traceback = false;
        Ok(())
    }

    #[getter]
    fn _state(&self) -> &'static str {
        self.state_name()
    }

    /// The exception without marking it retrieved (asyncio's own stack printing
    /// reads it).
    #[getter]
    fn _exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.stored_exception(py)
    }

    #[getter]
    fn _callbacks<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let snapshot = lock(&self.inner).callbacks.snapshot(py);
        if snapshot.is_empty() {
            return Ok(None);
        }
        let items = snapshot
            .into_iter()
            .map(|(callback, context)| PyTuple::new(py, [callback, context]))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Some(PyList::new(py, items)?))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<RustFuture {} of {}()>", self.describe(py), self.name)
    }

    /// `RustFuture[int]`, as `asyncio.Future[int]` (PEP 585).
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static GENERIC_ALIAS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        GENERIC_ALIAS
            .import(cls.py(), "types", "GenericAlias")?
            .call1((cls, item))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.context)?;
        visit.call(&self.source_traceback)?;
        visit.call(&self.coroutine)?;
        // Never wait for the lock here: the collector may run while this thread
        // holds it. Visiting less only keeps objects alive longer.
        let Ok(inner) = self.inner.try_lock() else {
            return Ok(());
        };
        for (callback, context) in inner.callbacks.iter() {
            visit.call(callback)?;
            visit.call(context)?;
        }
        if let Stage::Finished(result) = &inner.stage {
            match result {
                Ok(value) => visit.call(value)?,
                Err(stored) => {
                    visit.call(&stored.exc)?;
                    visit.call(&stored.traceback)?;
                }
            }
        }
        visit.call(&inner.cancel_message)?;
        visit.call(&inner.cancelled_exc)?;
        Ok(())
    }

    fn __clear__(&self) {
        let (callbacks, stage, message) = {
            let Ok(mut inner) = self.inner.try_lock() else {
                return;
            };
            let callbacks = std::mem::take(&mut inner.callbacks);
            let stage = match &inner.stage {
                Stage::Finished(_) => Some(std::mem::replace(&mut inner.stage, Stage::Cancelled)),
                _ => None,
            };
            (
                callbacks,
                stage,
                (inner.cancel_message.take(), inner.cancelled_exc.take()),
            )
        };
        drop((callbacks, stage, message));
    }
}

/// What `await fut` iterates: yields the future once while it is pending, then
/// returns its result (as `asyncio.Future.__await__` does; a future can be awaited
/// any number of times, each with an iterator of its own).
#[pyclass(frozen, name = "RustFutureIter", module = "ipy_rustasync")]
pub struct FutureIter {
    future: Mutex<Option<Py<RustFuture>>>,
    yielded: AtomicBool,
}

impl FutureIter {
    fn step<'py>(&self, py: Python<'py>) -> PyResult<SendResult<'py>> {
        let Some(future) = lock(&self.future).as_ref().map(|f| f.clone_ref(py)) else {
            return Err(pyo3::exceptions::PyStopIteration::new_err(()));
        };
        let this = future.get();
        if !this.is_done() {
            if self.yielded.swap(true, Ordering::SeqCst) {
                return Err(PyRuntimeError::new_err("await wasn't used with future"));
            }
            this.blocking.store(true, Ordering::Relaxed);
            return Ok(SendResult::Yield(future.into_bound(py).into_any()));
        }
        let done = lock(&self.future).take();
        drop(done);
        this.outcome(py)
            .map(|value| SendResult::Return(value.into_bound(py)))
    }
}

impl SendSlot for FutureIter {
    fn send_slot<'py>(slf: &Bound<'py, Self>) -> PyResult<SendResult<'py>> {
        slf.get().step(slf.py())
    }
}

#[pymethods]
impl FutureIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        next_result(py, self.step(py))
    }

    fn send<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !value.is_none() {
            return Err(PyTypeError::new_err(
                "can't send non-None value to a FutureIter",
            ));
        }
        self.__next__(py)
    }

    #[pyo3(signature = (typ, *rest))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        rest: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let done = lock(&self.future).take();
        drop(done);
        let exc = crate::exceptions::thrown(py, &typ, rest)?;
        Err(crate::capi::chained(py, exc))
    }

    fn close(&self) {
        let done = lock(&self.future).take();
        drop(done);
    }
}

impl Finalize for RustFuture {
    fn wants_finalizing(slf: &Bound<'_, Self>) -> bool {
        slf.get().has_unretrieved()
    }

    /// What asyncio's Future does in `__del__`: an exception nobody retrieved goes
    /// to the loop's exception handler ("Future exception was never retrieved").
    fn finalize(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if let Some(exc) = this.unretrieved(py) {
            this.report(
                slf.as_any(),
                "Future exception was never retrieved",
                &[("exception", exc.bind(py)), ("future", slf.as_any())],
            );
        }
    }

    fn pyo3_dealloc() -> &'static std::sync::OnceLock<pyo3::ffi::destructor> {
        static DEALLOC: std::sync::OnceLock<pyo3::ffi::destructor> = std::sync::OnceLock::new();
        &DEALLOC
    }
}

/// What a task does to its coroutine object once done (set by the module's
/// initialisation, from `coroutine.rs`, which this module does not import).
static TASK_DONE: std::sync::OnceLock<fn(&Bound<'_, PyAny>)> = std::sync::OnceLock::new();

/// Sets [`TASK_DONE`].
pub(crate) fn on_task_done(hook: fn(&Bound<'_, PyAny>)) {
    let _ = TASK_DONE.set(hook);
}

/// Called by the module's initialisation.
pub(crate) fn init(py: Python<'_>) {
    crate::capi::install_am_send::<FutureIter>(py);
    crate::capi::install_finalizer::<RustFuture>(py);
}
