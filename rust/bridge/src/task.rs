//! `RustTask`: a Rust coroutine scheduled as a task, what `asyncio.create_task`,
//! `ensure_future`, `gather`, `wait_for`, `shield`, `as_completed` and `TaskGroup`
//! get for a Rust coroutine on a loop whose task factory is the bridge's (see
//! `factory.rs`).
//!
//! An `asyncio.Task` would step the coroutine, which would spawn the Rust future
//! and wait on a [`RustFuture`]; a `RustTask` *is* that future, so it costs no
//! Python-level stepping at all. Everything else is a Task's: it starts on the
//! loop's next turn (one cancelled before then never runs), it may be awaited any
//! number of times, `cancel()` takes effect on a later turn (`cancelling()`,
//! `uncancel()` count requests), it has a name, a context and a coroutine, it is in
//! `asyncio.all_tasks()`, an exception nobody retrieved is reported as "Task
//! exception was never retrieved" when it is collected, and one collected while
//! pending as "Task was destroyed but it is pending!". A running task is held by
//! its loop's channel until it finishes, as asyncio's loop holds whatever a task
//! waits on: a task nobody keeps a reference to still runs to its end.
//!
//! It is not an instance of `asyncio.Task` (a C type that cannot be extended with a
//! different engine); code that checks `isinstance(t, asyncio.Task)` rather than
//! using the task's methods sees the difference.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString};

use crate::call::Call;
use crate::capi::{copy_context, Finalize};
use crate::future::RustFuture;
use crate::sync::lock;

/// A Rust coroutine run as an asyncio task.
///
/// Its own fields need no garbage-collector support (its coroutine is not tracked
/// once handed over, its name is a string); its context is kept in the base, which
/// the collector does see.
#[pyclass(frozen, extends = RustFuture, name = "RustTask", module = "ipy_rustasync")]
pub struct RustTask {
    name: Mutex<Option<Py<PyAny>>>,
    number: u64,
    cancels_requested: AtomicUsize,
    log_destroy_pending: AtomicBool,
}

static TASK_NUMBERS: AtomicU64 = AtomicU64::new(1);

/// The task factory's work for a Rust coroutine: `loop.create_task(coroutine,
/// **kwargs)`, given the coroutine's unstarted `call` (one that was already started
/// cannot be run by a task of ours: it gets an [`asyncio_task`], which reports that
/// as asyncio does).
pub(crate) fn create(
    event_loop: &Bound<'_, PyAny>,
    coroutine: &Bound<'_, PyAny>,
    call: Call,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let py = event_loop.py();
    let option = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(match kwargs {
            Some(kwargs) => kwargs.get_item(key)?.filter(|v| !v.is_none()),
            None => None,
        })
    };
    let context = match option("context")? {
        Some(context) => context.unbind(),
        None => copy_context(py)?,
    };
    let name = option("name")?
        .map(|name| name.str().map(|s| s.into_any().unbind()))
        .transpose()?;
    let eager = option("eager_start")?
        .map(|e| e.is_truthy())
        .transpose()?
        .unwrap_or(false);
    let call = call.start(py);
    let inline = call.inline;
    let with_caller = call.with_caller;
    let future = RustFuture::new(call.name, event_loop.clone().unbind(), call.cancel_token)
        .for_task(context.clone_ref(py), coroutine.clone().unbind())
        .traced(py)?;
    let task = Bound::new(
        py,
        pyo3::PyClassInitializer::from(future).add_subclass(RustTask {
            name: Mutex::new(name),
            number: TASK_NUMBERS.fetch_add(1, Ordering::Relaxed),
            cancels_requested: AtomicUsize::new(0),
            log_destroy_pending: AtomicBool::new(true),
        }),
    )?;
    crate::capi::register_task(task.as_any())?;
    let base = task.as_super();
    RustFuture::start(
        base,
        call.future,
        inline,
        with_caller,
        Some(context),
        eager,
        None,
    )?;
    Ok(task.into_any().unbind())
}

/// An ordinary `asyncio.Task` for `coroutine`, made as `loop.create_task` would
/// without a factory.
pub(crate) fn asyncio_task(
    event_loop: &Bound<'_, PyAny>,
    coroutine: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = event_loop.py();
    let all = PyDict::new(py);
    if let Some(kwargs) = kwargs {
        all.update(kwargs.as_mapping())?;
    }
    all.set_item("loop", event_loop)?;
    let class = if names_none_bug() {
        keep_name_task(py)?
    } else {
        TASK.import(py, "asyncio.tasks", "Task")?
    };
    Ok(class.call((coroutine,), Some(&all))?.unbind())
}

/// Whether this is CPython 3.13.0 to 3.13.2, whose `loop.create_task` calls
/// `set_name(None)` on every task a factory made without a name (gh-130033): the
/// tasks of the bridge's factory ignore that call there, so they keep their
/// generated names (an explicit `set_name(None)` is then ignored too).
pub(crate) fn names_none_bug() -> bool {
    matches!(crate::capi::version(), (3, 13, patch) if patch <= 2)
}

/// `asyncio.Task` with `set_name(None)` ignored (see [`names_none_bug`]).
fn keep_name_task(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static KEEP_NAME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let class = KEEP_NAME.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        // (Indentation written as `\x20`s: a string continuation line drops the
        // leading whitespace.)
        let code = c"import asyncio\n\
            class Task(asyncio.Task):\n\
            \x20   def set_name(self, value):\n\
            \x20       if value is not None:\n\
            \x20           super().set_name(value)\n";
        let module = PyModule::from_code(py, code, c"<ipy_rustasync>", c"ipy_rustasync_task")?;
        Ok(module.getattr("Task")?.unbind())
    })?;
    Ok(class.bind(py))
}

impl RustTask {
    fn display_name(&self, py: Python<'_>) -> String {
        match &*lock(&self.name) {
            Some(name) => name
                .bind(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            None => self.default_name(),
        }
    }

    /// The name of a task made without one. asyncio's `Task-N` counter is private
    /// to asyncio, so a RustTask numbers its own, with a prefix of its own: names
    /// stay unique among all tasks.
    fn default_name(&self) -> String {
        format!("RustTask-{}", self.number)
    }
}

#[pymethods]
impl RustTask {
    /// Requests cancellation: the Rust future is dropped now (or its
    /// `CancelHandle` signalled), and the task ends cancelled on the loop's next
    /// turn, its callbacks after that, as a Task's do once its coroutine has taken
    /// the `CancelledError`; a task not started yet never starts. Returns False if
    /// it is already done.
    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let base = slf.as_super();
        base.get().forget_exception();
        if base.get().is_done() {
            return Ok(false);
        }
        slf.get().cancels_requested.fetch_add(1, Ordering::SeqCst);
        if base.get().request_cancel(msg) {
            let finish = slf.getattr(pyo3::intern!(py, "_finish_cancelling"))?;
            base.get()
                .event_loop()
                .bind(py)
                .call_method1(pyo3::intern!(py, "call_soon"), (finish,))?;
        }
        Ok(true)
    }

    fn _finish_cancelling(slf: &Bound<'_, Self>) -> PyResult<()> {
        RustFuture::finish_cancelling(slf.as_super())
    }

    fn cancelling(&self) -> usize {
        self.cancels_requested.load(Ordering::SeqCst)
    }

    /// One request fewer; from 3.13, the last one withdrawn also withdraws a
    /// cancellation not yet taken by a task that has not started (as asyncio's
    /// clears `_must_cancel`).
    fn uncancel(slf: &Bound<'_, Self>) -> usize {
        let decremented =
            slf.get()
                .cancels_requested
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let left = decremented.map_or(0, |n| n - 1);
        if decremented.is_ok() && left == 0 && crate::capi::version_at_least(3, 13) {
            slf.as_super().get().cancel_withdrawn();
        }
        left
    }

    fn get_coro(slf: &Bound<'_, Self>) -> Option<Py<PyAny>> {
        slf.as_super().get().coroutine(slf.py())
    }

    fn get_context(slf: &Bound<'_, Self>) -> Option<Py<PyAny>> {
        slf.as_super().get().context(slf.py())
    }

    fn get_name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(name) = &*lock(&self.name) {
            return Ok(name.bind(py).clone());
        }
        Ok(PyString::new(py, &self.default_name()).into_any())
    }

    fn set_name(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if value.is_none() && names_none_bug() {
            return Ok(());
        }
        let name = value.str()?.into_any().unbind();
        let old = lock(&self.name).replace(name);
        drop(old);
        Ok(())
    }

    /// A Rust task has no Python frames; like asyncio's, the stack of a failed
    /// task is its exception's traceback.
    #[pyo3(signature = (*, limit=None))]
    fn get_stack<'py>(
        slf: &Bound<'py, Self>,
        limit: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let frames = PyList::empty(py);
        let Some(exc) = slf.as_super().get().stored_exception(py) else {
            return Ok(frames);
        };
        let mut tb = exc.bind(py).getattr("__traceback__")?;
        let limit = limit.map(|l| l.extract::<isize>()).transpose()?;
        while !tb.is_none() {
            if limit.is_some_and(|l| l >= 0 && frames.len() as isize >= l) {
                break;
            }
            frames.append(tb.getattr("tb_frame")?)?;
            tb = tb.getattr("tb_next")?;
        }
        Ok(frames)
    }

    #[pyo3(signature = (*, limit=None, file=None))]
    fn print_stack(
        slf: &Bound<'_, Self>,
        limit: Option<Bound<'_, PyAny>>,
        file: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        py.import("asyncio.base_tasks")?
            .getattr("_task_print_stack")?
            .call1((slf, limit, file))?;
        Ok(())
    }

    #[pyo3(signature = (_result))]
    fn set_result(&self, _result: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "Task does not support set_result operation",
        ))
    }

    #[pyo3(signature = (_exception))]
    fn set_exception(&self, _exception: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "Task does not support set_exception operation",
        ))
    }

    #[getter(_log_destroy_pending)]
    fn get_log_destroy_pending(&self) -> bool {
        self.log_destroy_pending.load(Ordering::Relaxed)
    }

    #[setter(_log_destroy_pending)]
    fn set_log_destroy_pending(&self, value: bool) {
        self.log_destroy_pending.store(value, Ordering::Relaxed);
    }

    #[getter]
    fn _coro(slf: &Bound<'_, Self>) -> Option<Py<PyAny>> {
        Self::get_coro(slf)
    }

    #[getter]
    fn _must_cancel(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().must_cancel()
    }

    #[getter]
    fn _fut_waiter(&self) -> Option<Py<PyAny>> {
        None
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let py = slf.py();
        let this = slf.get();
        let base = slf.as_super().get();
        let mut state = base.describe(py);
        // asyncio shows a task whose cancellation is requested but not yet taken as
        // 'cancelling' (3.11: only one not started yet, `_must_cancel`).
        let cancelling = if crate::capi::version_at_least(3, 12) {
            this.cancels_requested.load(Ordering::SeqCst) > 0 && !base.is_done()
        } else {
            base.must_cancel()
        };
        if cancelling {
            if let Some(rest) = state.strip_prefix("pending") {
                state = format!("cancelling{rest}");
            }
        }
        format!(
            "<RustTask {} name='{}' coro=<{}()>>",
            state,
            this.display_name(py),
            base.name()
        )
    }
}

impl Finalize for RustTask {
    fn wants_finalizing(slf: &Bound<'_, Self>) -> bool {
        let pending_too = slf.get().log_destroy_pending.load(Ordering::Relaxed);
        slf.as_super().get().has_news(pending_too)
    }

    /// What asyncio's Task does in `__del__`: report a task collected while
    /// pending, and an exception nobody retrieved, to the loop's handler.
    fn finalize(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let base = slf.as_super().get();
        if base.is_pending() && slf.get().log_destroy_pending.load(Ordering::Relaxed) {
            base.report(
                slf.as_any(),
                "Task was destroyed but it is pending!",
                &[("task", slf.as_any())],
            );
        }
        if let Some(exc) = base.unretrieved(py) {
            base.report(
                slf.as_any(),
                "Task exception was never retrieved",
                &[("exception", exc.bind(py)), ("future", slf.as_any())],
            );
        }
    }

    fn pyo3_dealloc() -> &'static OnceLock<pyo3::ffi::destructor> {
        static DEALLOC: OnceLock<pyo3::ffi::destructor> = OnceLock::new();
        &DEALLOC
    }
}

/// Called by the module's initialisation.
pub(crate) fn init(py: Python<'_>) {
    crate::capi::install_finalizer::<RustTask>(py);
}
