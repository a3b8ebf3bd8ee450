//! How a started Rust future runs: polled once in place (`#[rust_async(inline)]`),
//! spawned as its own tokio task (the first start of a loop turn), or spawned with
//! the rest of a burst by one launcher task on a worker, so that the loop's thread
//! never pays for a burst of spawns (task allocation, the runtime's task list,
//! waking workers: about a seventh of a gathered call when the loop thread did it).
//!
//! A spawned future ends by handing its outcome to a [`Sink`] (the loop's channel)
//! together with the Python object to complete and the function that completes it:
//! the channel only passes them on, so it depends on nothing here but these types.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures::future::{AbortHandle as BatchAbort, Abortable};
use pyo3::exceptions::PyRuntimeWarning;
use pyo3::prelude::*;
use tokio::task::AbortHandle;

use crate::convert::{Outcome, Output};
use crate::panics::{catching, PanicCatcher};
use crate::runtime::Active;
use crate::sync::lock;

/// A cell function's future, ending in its output (converted to Python later).
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Output> + Send>>;

/// Completes `target` with `outcome`, on the loop's thread, holding the GIL. An
/// error is one the loop must raise (`KeyboardInterrupt`, `SystemExit`).
pub(crate) type Deliver = fn(Python<'_>, Py<PyAny>, Outcome) -> PyResult<()>;

/// Where a started future's Python object is kept while it runs (its loop's
/// channel holds it; the future itself holds only this number).
pub(crate) type Slot = usize;

/// A finished future's delivery on its way to the loop: its outcome, the slot of
/// the object to complete and the function that completes it.
pub(crate) struct Delivery {
    pub(crate) slot: Slot,
    pub(crate) deliver: Deliver,
    pub(crate) outcome: Outcome,
}

/// Where finished futures go: the channel of the loop that awaits them. Called from
/// any thread, without the GIL.
pub(crate) trait Sink: Send + Sync {
    fn push(&self, delivery: Delivery);
    /// A future was dropped before finishing: its object may go.
    fn release(&self, slot: Slot);
    /// One future counted as outstanding on this sink has ended (finished or dropped).
    fn ended(&self);
}

/// A started future's way back: counts as outstanding on its sink until dropped,
/// and releases its object's slot if it never finishes.
pub(crate) struct Completion {
    sink: Arc<dyn Sink>,
    slot: Option<Slot>,
    deliver: Deliver,
}

impl Completion {
    /// `sink` must already count this future as outstanding and hold its object in
    /// `slot` (see `channel::Port::hold`).
    pub(crate) fn new(sink: Arc<dyn Sink>, slot: Slot, deliver: Deliver) -> Self {
        Completion {
            sink,
            slot: Some(slot),
            deliver,
        }
    }

    /// The same, delivering to `deliver` instead.
    pub(crate) fn redirected(mut self, deliver: Deliver) -> Self {
        self.deliver = deliver;
        self
    }

    /// Hands `outcome` on (once).
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finish_in_place(outcome);
    }

    fn finish_in_place(&mut self, outcome: Outcome) {
        if let Some(slot) = self.slot.take() {
            self.sink.push(Delivery {
                slot,
                deliver: self.deliver,
                outcome,
            });
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.sink.release(slot);
        }
        self.sink.ended();
    }
}

/// The body of a started future's tokio task: the cell's future (panics caught),
/// then its outcome handed to its completion.
pub(crate) struct TaskBody {
    future: PanicCatcher<dyn Future<Output = Output> + Send>,
    completion: Completion,
}

impl TaskBody {
    pub(crate) fn new(future: BoxFuture, completion: Completion) -> Self {
        TaskBody {
            future: PanicCatcher::new(future),
            completion,
        }
    }
}

impl Future for TaskBody {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let outcome = ready!(Pin::new(&mut self.future).poll(cx));
        self.completion.finish_in_place(outcome);
        Poll::Ready(())
    }
}

/// What stops a running future (dropping it where it stands).
pub(crate) enum Abort {
    /// Spawned at its start: tokio's own handle.
    Spawned(AbortHandle),
    /// Spawned with a burst by a launcher: a switch wrapped around the future,
    /// since the tokio handle does not exist yet when the loop needs one.
    Batched(BatchAbort),
}

impl Abort {
    pub(crate) fn abort(&self) {
        match self {
            Abort::Spawned(handle) => handle.abort(),
            Abort::Batched(handle) => handle.abort(),
        }
    }
}

/// Spawns it now, from the calling thread.
pub(crate) fn spawn(active: Active, task: TaskBody) -> Abort {
    Abort::Spawned(active.spawn(task).abort_handle())
}

/// A started future ready to be spawned with a burst.
pub(crate) struct Launch {
    active: Active,
    task: Abortable<TaskBody>,
}

impl Launch {
    /// The launch and the switch that stops the future whenever it runs.
    pub(crate) fn new(active: Active, task: TaskBody) -> (Launch, Abort) {
        let (abort, registration) = BatchAbort::new_pair();
        let launch = Launch {
            active,
            task: Abortable::new(task, registration),
        };
        (launch, Abort::Batched(abort))
    }

    fn spawn(self) {
        let task = self.task;
        // Aborted: `Err(Aborted)`, and the future was dropped where it stood.
        self.active.spawn(async move {
            let _ = task.await;
        });
    }
}

/// Spawns a burst: one launcher task on a worker spawns the rest there (onto
/// that worker's own queue, where idle workers steal from), so the loop's thread
/// makes one spawn however long the burst. A burst of one is spawned directly.
pub(crate) fn spawn_all(mut burst: Vec<Launch>) {
    if burst.len() <= 1 {
        if let Some(launch) = burst.pop() {
            launch.spawn();
        }
        return;
    }
    let runtime = burst[0].active.handle().clone();
    runtime.spawn(async move {
        for launch in burst {
            launch.spawn();
        }
    });
}

/// An inline poll longer than this warns: it held the event loop that long.
pub const SLOW_INLINE_POLL: Duration = Duration::from_millis(10);

/// The `#[rust_async(inline)]` first poll: on the calling (loop) thread, holding
/// the GIL, inside the runtime's context (so tokio timers and `tokio::spawn`
/// work). A future left pending is spawned next, and the runtime polls it again at
/// once with its own waker, so any waker does here.
pub(crate) fn poll_inline(
    py: Python<'_>,
    name: &'static str,
    active: &Active,
    future: &mut BoxFuture,
) -> Poll<Outcome> {
    let _context = active.handle().enter();
    poll_here(py, name, future)
}

/// A first inline poll of a call that has no [`Active`] yet (a coroutine's first
/// step): `Ready`, or `Pending` with the `Active` its run goes on under.
pub(crate) fn poll_first(
    py: Python<'_>,
    name: &'static str,
    future: &mut BoxFuture,
) -> PyResult<Result<Outcome, Active>> {
    let (polled, active) =
        crate::runtime::entered(|| poll_here(py, name, future), |polled| polled.is_pending())?;
    match (polled, active) {
        (Poll::Ready(outcome), _) => Ok(Ok(outcome)),
        (Poll::Pending, Some(active)) => Ok(Err(active)),
        (Poll::Pending, None) => Active::new().map(Err),
    }
}

/// One poll on this thread, in whatever runtime context is entered.
fn poll_here(py: Python<'_>, name: &'static str, future: &mut BoxFuture) -> Poll<Outcome> {
    let mut cx = Context::from_waker(Waker::noop());
    let started = crate::platform::coarse_now();
    let polled = catching(|| future.as_mut().poll(&mut cx));
    let held = crate::platform::coarse_now().saturating_sub(started);
    if held > SLOW_INLINE_POLL {
        warn_slow_inline(py, name, held);
    }
    match polled {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Err(report) => Poll::Ready(Err(report)),
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
    runtime_warning(py, &msg);
}

/// Issues a `RuntimeWarning`, leaving any exception already set untouched (a
/// warning may come while one propagates, as Python's own "never awaited" does).
/// One that a warnings filter turns into an error is reported as unraisable: it
/// cannot propagate from a drop or a poll.
pub(crate) fn runtime_warning(py: Python<'_>, msg: &str) {
    let pending = PyErr::take(py);
    let category = py.get_type::<PyRuntimeWarning>();
    let msg = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    if let Err(err) = PyErr::warn(py, &category, &msg, 1) {
        err.write_unraisable(py, None);
    }
    if let Some(pending) = pending {
        pending.restore(py);
    }
}
