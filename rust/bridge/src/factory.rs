//! The task factory the bridge installs on a loop it runs on, so that asyncio's
//! APIs wrap a Rust coroutine in a [`RustTask`](crate::task::RustTask) instead of
//! an `asyncio.Task` stepping it: `gather` of thousands of Rust calls then costs
//! about what `gather` of finished asyncio futures does.
//!
//! `loop.set_task_factory` is asyncio's own extension point for this ("the callable
//! must return an asyncio.Task-compatible object"). The factory is installed only on
//! a loop that has none, when the first Rust coroutine starts there; a loop whose
//! owner set a factory keeps it (Rust coroutines are then wrapped in whatever it
//! makes, as any coroutine), and one set later replaces this one. Any other
//! coroutine gets exactly what `loop.create_task` would have made.
//!
//! CPython 3.13.0 to 3.13.2 call a factory without the task's name and then call
//! `task.set_name(name)` even when no name was given, which would name every task
//! 'None' (gh-130033, fixed in 3.13.3). On those versions the tasks the factory
//! makes ignore `set_name(None)` (see `task::names_none_bug`), so tasks keep their
//! generated names as without a factory.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::coroutine::{make_task, RustCoroutine};
use crate::task::asyncio_task;

/// `loop.set_task_factory(...)`'s callable: `factory(loop, coro, **kwargs)`.
#[pyclass(frozen, name = "TaskFactory", module = "ipy_rustasync")]
pub struct TaskFactory;

#[pymethods]
impl TaskFactory {
    #[pyo3(signature = (event_loop, coro, **kwargs))]
    fn __call__(
        &self,
        event_loop: &Bound<'_, PyAny>,
        coro: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = coro.py();
        if let Ok(coroutine) = coro.cast::<RustCoroutine>() {
            return make_task(event_loop, coroutine, kwargs);
        }
        // A Rust coroutine of another cell library (each has its own type).
        let hook = pyo3::intern!(py, "__ira_task__");
        if coro.get_type().hasattr(hook)? {
            return Ok(coro.call_method(hook, (event_loop,), kwargs)?.unbind());
        }
        asyncio_task(event_loop, coro, kwargs)
    }

    fn __repr__(&self) -> &'static str {
        "<ipy_rustasync task factory>"
    }
}

/// Installs the factory on `event_loop` if it has none. Called when the bridge first
/// runs something on a loop.
pub(crate) fn install(event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = event_loop.py();
    let get = pyo3::intern!(py, "get_task_factory");
    if !event_loop.hasattr(get)? || !event_loop.call_method0(get)?.is_none() {
        return Ok(());
    }
    event_loop.call_method1(pyo3::intern!(py, "set_task_factory"), (TaskFactory,))?;
    Ok(())
}
