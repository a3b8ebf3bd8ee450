//! Rust awaiting Python: an async callable or an awaitable passed into a cell
//! function.
//!
//! ```no_run
//! # use pyo3::PyResult;
//! pub async fn fetch_all(urls: Vec<String>, fetch: ipy_rustasync::AsyncCallable) -> PyResult<usize> {
//!     let mut total = 0;
//!     for url in urls {
//!         let body: String = fetch.call_as((url,)).await?;
//!         total += body.len();
//!     }
//!     Ok(total)
//! }
//!
//! /// Awaits a coroutine or future made in Python (`await twice(asyncio.sleep(0, 21))`).
//! pub async fn twice(value: ipy_rustasync::PyAwaitable) -> PyResult<i64> {
//!     let n: i64 = value.wait_as().await?;
//!     Ok(2 * n)
//! }
//! ```
//!
//! The Python side runs where the call came from: on the loop that awaited the cell
//! function, as a Task created with the caller's `contextvars` context. Everything
//! that touches Python (calling the callable, converting the arguments and the
//! result) happens on that loop's thread through its channel, so no tokio worker
//! ever waits for the GIL. A Python exception comes back as the `PyErr` it is (a
//! function returning `PyResult` re-raises it with its type); dropping the Rust
//! future (a cancelled call) cancels the Python task.

use std::future::Future;
use std::sync::{Arc, Mutex};

use pyo3::call::PyCallArgs;
use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::IntoPyDict;
use tokio::sync::oneshot;

use crate::channel::Channel;
use crate::sync::lock;

/// Where the current cell call came from: its loop's channel and the caller's
/// `contextvars` context. Set (as a tokio task-local) around the futures of
/// functions that take an [`AsyncCallable`] or a [`PyAwaitable`].
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) channel: Arc<Channel>,
    pub(crate) event_loop: Arc<Py<PyAny>>,
    pub(crate) context: Arc<Py<PyAny>>,
}

tokio::task_local! {
    pub(crate) static CALLER: Caller;
}

/// A Python async callable (an `async def`, or anything whose call returns an
/// awaitable), received as a cell function's argument.
pub struct AsyncCallable(Arc<Py<PyAny>>);

/// A Python awaitable (a coroutine, a Task, a future), received as a cell
/// function's argument.
pub struct PyAwaitable(Mutex<Option<Py<PyAny>>>);

impl<'a, 'py> FromPyObject<'a, 'py> for AsyncCallable {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if !obj.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected an async callable, got {}",
                obj.get_type().name()?
            )));
        }
        Ok(AsyncCallable(Arc::new(obj.to_owned().unbind())))
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyAwaitable {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if !obj.hasattr(pyo3::intern!(obj.py(), "__await__"))? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected an awaitable, got {}",
                obj.get_type().name()?
            )));
        }
        Ok(PyAwaitable(Mutex::new(Some(obj.to_owned().unbind()))))
    }
}

impl AsyncCallable {
    /// Calls it with `args` (a tuple) and awaits the result on the caller's loop.
    pub fn call<A>(&self, args: A) -> impl Future<Output = PyResult<Py<PyAny>>> + Send + 'static
    where
        A: for<'py> PyCallArgs<'py> + Send + 'static,
    {
        self.call_as::<Py<PyAny>, A>(args)
    }

    /// [`call`](Self::call), converting the result to `T` (on the loop's thread).
    pub fn call_as<T, A>(&self, args: A) -> impl Future<Output = PyResult<T>> + Send + 'static
    where
        A: for<'py> PyCallArgs<'py> + Send + 'static,
        T: for<'py> FromPyObjectOwned<'py> + Send + 'static,
    {
        // An `Arc` clone, not a Python reference: no GIL needed on this worker.
        let callable = self.0.clone();
        on_caller_loop(
            move |py| callable.bind(py).call(args, None),
            |value| value.extract::<T>().map_err(Into::into),
        )
    }
}

impl PyAwaitable {
    /// Awaits it on the caller's loop. An awaitable can be awaited once.
    pub fn wait(&self) -> impl Future<Output = PyResult<Py<PyAny>>> + Send + 'static {
        self.wait_as::<Py<PyAny>>()
    }

    /// [`wait`](Self::wait), converting the result to `T` (on the loop's thread).
    pub fn wait_as<T>(&self) -> impl Future<Output = PyResult<T>> + Send + 'static
    where
        T: for<'py> FromPyObjectOwned<'py> + Send + 'static,
    {
        let awaitable = lock(&self.0).take();
        on_caller_loop(
            move |py| match awaitable {
                Some(awaitable) => Ok(awaitable.into_bound(py)),
                None => Err(PyRuntimeError::new_err(
                    "this Python awaitable was already awaited",
                )),
            },
            |value| value.extract::<T>().map_err(Into::into),
        )
    }
}

type Convert<T> = fn(&Bound<'_, PyAny>) -> PyResult<T>;

/// The Python side of one call, shared by the Rust future (which may cancel it)
/// and the job that starts it on the loop.
#[derive(Default)]
struct Slot {
    task: Option<Py<PyAny>>,
    /// The Rust side was dropped: do not start, or cancel what was started.
    abandoned: bool,
}

/// Runs `make` (which returns an awaitable) on the caller's loop as a Task in the
/// caller's context, and resolves to its result converted by `convert`.
fn on_caller_loop<M, T>(
    make: M,
    convert: Convert<T>,
) -> impl Future<Output = PyResult<T>> + Send + 'static
where
    M: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    T: Send + 'static,
{
    let caller = CALLER.try_with(Clone::clone);
    async move {
        let caller = caller.map_err(|_| {
            PyRuntimeError::new_err(
                "a Python callable or awaitable can only be awaited inside the cell function call that received it",
            )
        })?;
        let (tx, rx) = oneshot::channel::<PyResult<T>>();
        let slot = Arc::new(Mutex::new(Slot::default()));
        let job_slot = slot.clone();
        let job_caller = caller.clone();
        caller.channel.run_on_loop(Box::new(move |py| {
            if lock(&job_slot).abandoned {
                return;
            }
            let finish: Finish = Box::new(move |result: PyResult<Bound<'_, PyAny>>| {
                let _ = tx.send(result.and_then(|value| convert(&value)));
            });
            match start(py, &job_caller, make) {
                Ok(task) => {
                    lock(&job_slot).task = Some(task.clone().unbind());
                    let done = Done {
                        finish: Mutex::new(Some(finish)),
                    };
                    let added = Bound::new(py, done).and_then(|done| {
                        task.call_method1(pyo3::intern!(py, "add_done_callback"), (done,))
                    });
                    if let Err(err) = added {
                        err.write_unraisable(py, Some(&task));
                    }
                }
                Err(err) => finish(Err(err)),
            }
        }));
        let guard = CancelOnDrop {
            slot,
            channel: caller.channel.clone(),
        };
        let result = rx.await.unwrap_or_else(|_| {
            Err(PyRuntimeError::new_err(
                "the event loop stopped before the Python call finished",
            ))
        });
        // Finished (or the loop went away): there is no task left to cancel.
        lock(&guard.slot).task = None;
        drop(guard);
        result
    }
}

/// On the loop thread: the awaitable `make` returns, as a Task of the caller's loop
/// in the caller's context (a coroutine), or as it is (a future or Task).
fn start<'py, M>(py: Python<'py>, caller: &Caller, make: M) -> PyResult<Bound<'py, PyAny>>
where
    M: FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>>,
{
    let awaitable = make(py)?;
    let event_loop = caller.event_loop.bind(py);
    let iscoroutine = ISCOROUTINE.import(py, "asyncio", "iscoroutine")?;
    if iscoroutine.call1((&awaitable,))?.is_truthy()? {
        let kwargs = [(pyo3::intern!(py, "context"), caller.context.bind(py))].into_py_dict(py)?;
        event_loop.call_method(
            pyo3::intern!(py, "create_task"),
            (awaitable,),
            Some(&kwargs),
        )
    } else {
        ENSURE_FUTURE.import(py, "asyncio", "ensure_future")?.call(
            (awaitable,),
            Some(&[(pyo3::intern!(py, "loop"), event_loop)].into_py_dict(py)?),
        )
    }
}

static ISCOROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ENSURE_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

type Finish = Box<dyn for<'py> FnOnce(PyResult<Bound<'py, PyAny>>) + Send>;

/// The done callback of the Python task: hands its outcome to the Rust future.
#[pyclass(frozen, name = "_CallbackDone", module = "ipy_rustasync")]
struct Done {
    finish: Mutex<Option<Finish>>,
}

#[pymethods]
impl Done {
    fn __call__(&self, task: &Bound<'_, PyAny>) {
        let Some(finish) = lock(&self.finish).take() else {
            return;
        };
        let result = task.call_method0(pyo3::intern!(task.py(), "result"));
        finish(result);
    }
}

/// Cancels the Python task when the Rust future awaiting it is dropped first.
struct CancelOnDrop {
    slot: Arc<Mutex<Slot>>,
    channel: Arc<Channel>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.abandoned = true;
        if let Some(task) = slot.task.take() {
            self.channel.run_on_loop(Box::new(move |py| {
                if let Err(err) = task.bind(py).call_method0(pyo3::intern!(py, "cancel")) {
                    err.write_unraisable(py, None);
                }
            }));
        }
    }
}
