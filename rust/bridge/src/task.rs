//! How a started future runs on the runtime: as its own tokio task, spawned either
//! at once (the first start of a loop turn) or with the rest of a burst by one
//! launcher task on a worker, so that the loop's thread never pays for a burst of
//! spawns (task allocation, the runtime's task list, waking workers: about a
//! seventh of a gathered call when the loop thread did it).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::{AbortHandle as BatchAbort, Abortable};
use pyo3::types::PyWeakrefReference;
use pyo3::Py;
use tokio::task::AbortHandle;

use crate::awaitable::BoxFuture;
use crate::channel::Outstanding;
use crate::panics::Guarded;
use crate::runtime::Active;
use crate::sync::Exclusive;

/// What stops a running future (dropping it where it stands).
pub(crate) enum Task {
    /// Spawned at its start: tokio's own handle.
    Spawned(AbortHandle),
    /// Spawned with a burst by a launcher: a switch wrapped around the future,
    /// since the tokio handle does not exist yet when the loop needs one.
    Batched(BatchAbort),
}

impl Task {
    pub(crate) fn abort(&self) {
        match self {
            Task::Spawned(handle) => handle.abort(),
            Task::Batched(handle) => handle.abort(),
        }
    }
}

/// A started future as its task runs it: the cell's future (panics caught), then
/// its outcome handed to the loop's channel, which completes the awaitable (found
/// by the weak reference). Counts as outstanding on that channel until it ends or
/// is dropped.
pub(crate) struct Completing {
    future: Guarded,
    done: Option<(Outstanding, Py<PyWeakrefReference>)>,
}

impl Completing {
    pub(crate) fn new(
        future: Exclusive<BoxFuture>,
        outstanding: Outstanding,
        me: Py<PyWeakrefReference>,
    ) -> Self {
        Completing {
            future: Guarded::new(future.into_inner()),
            done: Some((outstanding, me)),
        }
    }
}

impl Future for Completing {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let outcome = ready!(Pin::new(&mut self.future).poll(cx));
        if let Some((outstanding, me)) = self.done.take() {
            outstanding.channel().push(me, outcome);
        }
        Poll::Ready(())
    }
}

/// Spawns it now, from the calling thread.
pub(crate) fn spawn(active: Active, task: Completing) -> Task {
    Task::Spawned(active.spawn(task).abort_handle())
}

/// A started future ready to be spawned with a burst.
pub(crate) struct Launch {
    active: Active,
    task: Abortable<Completing>,
}

impl Launch {
    /// The launch and the switch that stops the future whenever it runs.
    pub(crate) fn new(active: Active, task: Completing) -> (Launch, Task) {
        let (abort, registration) = BatchAbort::new_pair();
        let launch = Launch {
            active,
            task: Abortable::new(task, registration),
        };
        (launch, Task::Batched(abort))
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
    let runtime = burst[0].active.runtime().handle().clone();
    runtime.spawn(async move {
        for launch in burst {
            launch.spawn();
        }
    });
}
