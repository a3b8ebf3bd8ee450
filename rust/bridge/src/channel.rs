//! How finished futures reach the asyncio loop that awaits them.
//!
//! One [`Channel`] per (cell library, event loop): a queue of finished futures and a
//! socket pair whose read end the loop watches with `loop.add_reader`. A tokio worker
//! that finishes a future pushes its result on the queue and, only if the queue was
//! empty, writes one byte. The loop then runs [`Drain`], which takes the whole queue
//! at once: many futures finishing together cost one wake-up of the loop, and the
//! worker never takes the GIL (results are converted to Python in `Drain`, on the loop
//! thread, which holds the GIL anyway).
//!
//! Channels are found per loop, never cached globally: a `WeakKeyDictionary` maps each
//! loop to its `Drain` (so a closed, collected loop takes its channel with it), with
//! a per-thread memo of the last loop in front of it for the common case.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use pyo3::types::PyWeakrefReference;

use crate::awaitable::RustAwaitable;
use crate::convert::Output;
use crate::panics::PanicReport;
use crate::sync::lock;

/// What a spawned future ends with: its output, or the panic that ended it.
pub(crate) type Outcome = Result<Output, PanicReport>;

struct Finished {
    /// A weak reference to the `RustAwaitable`: one collected while running was
    /// aborted, and nobody waits for its result.
    awaitable: Py<PyWeakrefReference>,
    outcome: Outcome,
}

pub(crate) struct Channel {
    queue: Mutex<Vec<Finished>>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// A weak reference to the loop, to tell a reused address from the same loop.
    loop_ref: Py<PyAny>,
}

impl Channel {
    fn new(loop_ref: Py<PyAny>) -> std::io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Channel {
            queue: Mutex::new(Vec::new()),
            wake_tx,
            wake_rx,
            loop_ref,
        })
    }

    /// Hands a finished future's outcome to the loop. Called on tokio workers,
    /// without the GIL.
    pub(crate) fn push(&self, awaitable: Py<PyWeakrefReference>, outcome: Outcome) {
        let was_empty = {
            let mut queue = lock(&self.queue);
            let was_empty = queue.is_empty();
            queue.push(Finished { awaitable, outcome });
            was_empty
        };
        if was_empty {
            // A full socket buffer (WouldBlock) means a wake-up is already pending;
            // a closed one means the loop is gone and nobody is waiting.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    fn drain(&self, py: Python<'_>) {
        // Consume the wake-up bytes before taking the queue: a push that lands after
        // the take writes a new byte, so no finished future is ever left unseen.
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake_rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let finished = std::mem::take(&mut *lock(&self.queue));
        for item in finished {
            deliver(py, item);
        }
    }

    fn is_for(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> bool {
        self.loop_ref
            .bind(py)
            .call0()
            .map(|target| target.is(event_loop))
            .unwrap_or(false)
    }
}

/// Completes the awaitable with the outcome, converted to Python here on the loop
/// thread, unless it was cancelled or collected meanwhile: a wake-up that arrives
/// after cancellation raises nothing anywhere.
fn deliver(py: Python<'_>, item: Finished) {
    let Some(awaitable) = item.awaitable.bind(py).upgrade() else {
        return;
    };
    let Ok(awaitable) = awaitable.cast_into::<RustAwaitable>() else {
        return;
    };
    if !awaitable.borrow().is_running() {
        return;
    }
    let outcome = match item.outcome {
        Ok(output) => output(py),
        Err(report) => Err(report.into_pyerr(py)),
    };
    RustAwaitable::complete(
        &awaitable,
        outcome.map_err(|err| err.into_value(py).into_any()),
    );
}

/// The callable the loop runs when the channel's socket is readable.
#[pyclass(frozen, name = "_ChannelDrain", module = "ipy_rustasync")]
pub(crate) struct Drain {
    channel: Arc<Channel>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        self.channel.drain(py);
    }
}

static LOOPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    /// The last (loop address, channel) used on this thread.
    static LAST: RefCell<Option<(usize, Arc<Channel>)>> = const { RefCell::new(None) };
}

/// The channel of `event_loop` in this cell library, created and registered with the
/// loop on first use.
pub(crate) fn channel_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Channel>> {
    let address = event_loop.as_ptr() as usize;
    let memo = LAST.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(addr, channel)| *addr == address && channel.is_for(py, event_loop))
            .map(|(_, channel)| channel.clone())
    });
    if let Some(channel) = memo {
        return Ok(channel);
    }
    let loops = LOOPS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("weakref")?
            .getattr("WeakKeyDictionary")?
            .call0()?
            .unbind())
    })?;
    let loops = loops.bind(py);
    let channel = match loops
        .call_method1("get", (event_loop,))?
        .cast_into::<Drain>()
    {
        Ok(drain) => drain.get().channel.clone(),
        Err(_) => {
            let weak = py.import("weakref")?.getattr("ref")?.call1((event_loop,))?;
            let channel = Arc::new(Channel::new(weak.unbind()).map_err(|err| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "could not create the wake-up socket: {err}"
                ))
            })?);
            let drain = Bound::new(
                py,
                Drain {
                    channel: channel.clone(),
                },
            )?;
            event_loop.call_method1("add_reader", (channel.wake_rx.as_raw_fd(), &drain))?;
            loops.set_item(event_loop, drain)?;
            channel
        }
    };
    LAST.with(|last| *last.borrow_mut() = Some((address, channel.clone())));
    Ok(channel)
}
