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
//! The channel also holds back the awaitables started on its loop beyond the first
//! of each loop turn and hands them to the runtime in bursts (see [`Channel::kick`]
//! and `task.rs`): the other direction's batching.
//!
//! Channels are found per loop, never cached globally: a `WeakKeyDictionary` maps each
//! loop to its `Drain` (so a closed, collected loop takes its channel with it), with
//! a per-thread memo of the last loop in front of it for the common case.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use pyo3::types::PyWeakrefReference;

use pyo3::exceptions::PyRuntimeError;

use crate::awaitable::{Launching, RustAwaitable};
use crate::convert::Output;
use crate::panics::PanicReport;
use crate::running_loop::running_loop;
use crate::sync::lock;

/// What a spawned future ends with: its output, or the panic that ended it.
pub(crate) type Outcome = Result<Output, PanicReport>;

/// Work for the loop thread.
enum Item {
    /// A future finished: complete its awaitable.
    Finished {
        /// A weak reference to the `RustAwaitable`: one collected while running
        /// was aborted, and nobody waits for its result.
        awaitable: Py<PyWeakrefReference>,
        outcome: Outcome,
    },
    /// Something Rust code asked to run on the loop (a Python callback).
    Job(Job),
}

/// A closure to run on the loop's thread, holding the GIL.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// What [`Channel::kick`] says to do with a started awaitable.
pub(crate) enum Started {
    /// Spawn it now.
    Now,
    /// Leave it: it is queued for the next [`Spin`].
    Queued,
}

pub(crate) struct Channel {
    queue: Mutex<Vec<Item>>,
    /// Awaitables started on this loop and not yet handed to the runtime: a burst in
    /// chunks of [`LAUNCH_CHUNK`], the rest by the next [`Spin`] (weakly held: one
    /// collected meanwhile simply never runs). Only the loop's thread touches it.
    launch: Mutex<Vec<Py<PyWeakrefReference>>>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// Whether a [`Spin`] is polling the queue from the loop (then workers skip
    /// the socket write).
    spinning: AtomicBool,
    /// Whether an awaitable was spawned at its start since one of this channel's
    /// loop callbacks last ran: only the first of a turn is, the rest wait in
    /// `launch` (see [`Channel::kick`]).
    spawned_this_turn: AtomicBool,
    /// Futures spawned for this loop and not yet finished or dropped.
    outstanding: AtomicUsize,
    /// The loop callback that spins, made once (see [`Channel::kick`]). It refers
    /// back to the channel weakly: a strong reference would be a cycle no collector
    /// sees, keeping every loop's channel (and its two sockets) alive forever.
    spin: OnceLock<Py<Spin>>,
}

/// How long the loop polls for completions after a spawn before it goes back to
/// sleeping on the wake-up socket. A future that finishes within it is picked up
/// without a wake-up: a tokio worker wakes and finishes a ready future in ~10 µs,
/// while a socket wake-up of a sleeping loop costs about as much again.
const SPIN_WINDOW: Duration = Duration::from_micros(60);

/// The most started futures a burst holds back before handing them to a launcher.
const LAUNCH_CHUNK: usize = 128;

/// Counts one spawned future as outstanding until it is dropped (finished or
/// aborted); moved into the spawned task.
pub(crate) struct Outstanding(Arc<Channel>);

impl Outstanding {
    pub(crate) fn channel(&self) -> &Channel {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Channel {
    fn new() -> std::io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Channel {
            queue: Mutex::new(Vec::new()),
            launch: Mutex::new(Vec::new()),
            wake_tx,
            wake_rx,
            spinning: AtomicBool::new(false),
            spawned_this_turn: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            spin: OnceLock::new(),
        })
    }

    /// Called on the loop thread as an awaitable starts on this channel's loop:
    /// counts it as outstanding, says whether to spawn it now ([`Started::Now`]) or
    /// queues it ([`Started::Queued`]), and makes sure a [`Spin`] is scheduled (one
    /// at a time). The spin hands whatever is queued to the runtime, then polls for
    /// completions for a moment, so a quick future needs no socket wake-up.
    ///
    /// The first start of a loop turn spawns at once, so a lone `await` loses no
    /// time. The rest of a burst (`gather` over thousands) goes to a launcher task on
    /// a worker (`task.rs`) in chunks of [`LAUNCH_CHUNK`] as it builds up, the
    /// remainder by the spin: spawns made one by one between Python calls found the
    /// workers parked again each time and paid a wake-up apiece, on the loop thread.
    pub(crate) fn kick(
        self: &Arc<Self>,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        awaitable: &Py<PyWeakrefReference>,
    ) -> PyResult<(Outstanding, Started)> {
        let launch = if self.spawned_this_turn.swap(true, Ordering::SeqCst) {
            // A long burst goes out in chunks as it builds up, so its first futures
            // start running (a timer, say) while the loop is still busy starting
            // the rest, rather than all of them once the burst is over.
            if lock(&self.launch).len() >= LAUNCH_CHUNK {
                self.launch_queued(py);
            }
            lock(&self.launch).push(awaitable.clone_ref(py));
            Started::Queued
        } else {
            Started::Now
        };
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let outstanding = Outstanding(self.clone());
        let spin = match self.spin.get() {
            Some(spin) => spin,
            None => {
                let spin = Py::new(
                    py,
                    Spin {
                        channel: Arc::downgrade(self),
                        until: Mutex::new(Instant::now()),
                    },
                )?;
                self.spin.get_or_init(|| spin)
            }
        };
        *lock(&spin.get().until) = Instant::now() + SPIN_WINDOW;
        if !self.spinning.swap(true, Ordering::SeqCst) {
            event_loop.call_method1(pyo3::intern!(py, "call_soon"), (spin.bind(py),))?;
        }
        Ok((outstanding, launch))
    }

    /// Hands a finished future's outcome to the loop. Called on tokio workers,
    /// without the GIL.
    pub(crate) fn push(&self, awaitable: Py<PyWeakrefReference>, outcome: Outcome) {
        self.enqueue(Item::Finished { awaitable, outcome });
    }

    /// Runs `job` on the loop's thread soon. Callable from any thread, without
    /// the GIL.
    pub(crate) fn run_on_loop(&self, job: Job) {
        self.enqueue(Item::Job(job));
    }

    fn enqueue(&self, item: Item) {
        let was_empty = {
            let mut queue = lock(&self.queue);
            let was_empty = queue.is_empty();
            queue.push(item);
            was_empty
        };
        // A spinning loop finds the item itself. Otherwise: a full socket buffer
        // (WouldBlock) means a wake-up is already pending; a closed one means the
        // loop is gone and nobody is waiting.
        if was_empty && !self.spinning.load(Ordering::SeqCst) {
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
        self.deliver_queued(py);
    }

    /// Spawns the awaitables queued since the last call, together (see
    /// [`Channel::kick`]); true if there were any.
    fn launch_queued(&self, py: Python<'_>) -> bool {
        let started = std::mem::take(&mut *lock(&self.launch));
        let launched = !started.is_empty();
        let mut burst = Vec::with_capacity(started.len());
        let mut busy = Vec::new();
        for weak in started {
            let Some(awaitable) = weak.bind(py).upgrade() else {
                continue; // collected before its spawn: it never runs
            };
            let Ok(awaitable) = awaitable.cast_into::<RustAwaitable>() else {
                continue;
            };
            match RustAwaitable::launch(&awaitable) {
                Launching::Ready(launch) => burst.push(launch),
                Launching::Busy => busy.push(weak),
                Launching::Nothing => {}
            }
        }
        crate::task::spawn_all(burst);
        lock(&self.launch).extend(busy);
        launched
    }

    fn deliver_queued(&self, py: Python<'_>) {
        let items = std::mem::take(&mut *lock(&self.queue));
        for item in items {
            match item {
                Item::Finished { awaitable, outcome } => deliver(py, awaitable, outcome),
                Item::Job(job) => job(py),
            }
        }
    }
}

/// Completes the awaitable with the outcome, converted to Python here on the loop
/// thread, unless it was cancelled or collected meanwhile: a wake-up that arrives
/// after cancellation raises nothing anywhere.
fn deliver(py: Python<'_>, awaitable: Py<PyWeakrefReference>, outcome: Outcome) {
    let Some(awaitable) = awaitable.bind(py).upgrade() else {
        return;
    };
    let Ok(awaitable) = awaitable.cast_into::<RustAwaitable>() else {
        return;
    };
    if !awaitable.borrow().is_running() {
        return;
    }
    let outcome = match outcome {
        Ok(output) => crate::convert::to_python(py, output),
        Err(report) => Err(report.into_pyerr(py)),
    };
    RustAwaitable::complete(
        &awaitable,
        outcome.map_err(|err| err.into_value(py).into_any()),
    );
}

/// A loop callback that delivers finished futures and reschedules itself while
/// futures are outstanding and the spin window lasts.
#[pyclass(frozen, name = "_ChannelSpin", module = "ipy_rustasync")]
pub(crate) struct Spin {
    /// Weak: the channel owns this callback (see [`Channel::spin`]).
    channel: Weak<Channel>,
    until: Mutex<Instant>,
}

#[pymethods]
impl Spin {
    #[pyo3(signature = (event_loop=None))]
    fn __call__(slf: &Bound<'_, Self>, event_loop: Option<Bound<'_, PyAny>>) {
        let py = slf.py();
        // Gone: its loop was closed and collected, and nothing is left to deliver.
        let Some(channel) = slf.get().channel.upgrade() else {
            return;
        };
        channel.spawned_this_turn.store(false, Ordering::SeqCst);
        if channel.launch_queued(py) {
            // The window counts from the spawn, not from the start (a long burst of
            // starts may have outlasted it).
            *lock(&slf.get().until) = Instant::now() + SPIN_WINDOW;
        }
        channel.deliver_queued(py);
        // Delivering runs done callbacks, which can step tasks that start more
        // awaitables (their `kick` saw this spin still on): those must launch on
        // the next turn whatever the window says.
        let go_on = !lock(&channel.launch).is_empty()
            || (channel.outstanding.load(Ordering::SeqCst) > 0
                && Instant::now() < *lock(&slf.get().until));
        if go_on {
            let again = match event_loop {
                Some(event_loop) => Ok(event_loop),
                None => running_loop(py).and_then(|found| {
                    found.ok_or_else(|| PyRuntimeError::new_err("the loop stopped"))
                }),
            }
            .and_then(|event_loop| {
                event_loop.call_method1(pyo3::intern!(py, "call_soon"), (slf, &event_loop))
            });
            match again {
                Ok(_) => return,
                // Could not reschedule (a closing loop): stop spinning, so workers
                // go back to waking the loop through the socket.
                Err(err) => err.write_unraisable(py, Some(slf.as_any())),
            }
        }
        channel.spinning.store(false, Ordering::SeqCst);
        // A worker that saw `spinning` still set skipped its wake-up byte: look once
        // more now that it is clear, so no item is left behind. (Nothing can have
        // been started meanwhile: starting happens on this thread.)
        channel.deliver_queued(py);
    }
}

/// The callable the loop runs when the channel's socket is readable.
#[pyclass(frozen, name = "_ChannelDrain", module = "ipy_rustasync")]
pub(crate) struct Drain {
    channel: Arc<Channel>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        // A loop turn of its own: the next start may spawn at once again.
        self.channel
            .spawned_this_turn
            .store(false, Ordering::SeqCst);
        self.channel.drain(py);
    }
}

static LOOPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    /// The last (loop, channel) used on this thread. Holding the loop itself (one
    /// per thread) makes the check an identity test rather than a weakref call.
    static LAST: RefCell<Option<(Py<PyAny>, Arc<Channel>)>> = const { RefCell::new(None) };
}

/// The channel of `event_loop` in this cell library, created and registered with the
/// loop on first use.
pub(crate) fn channel_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Channel>> {
    let memo = LAST.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(memo_loop, _)| memo_loop.bind(py).is(event_loop))
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
            let channel = Arc::new(Channel::new().map_err(|err| {
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
    LAST.with(|last| *last.borrow_mut() = Some((event_loop.clone().unbind(), channel.clone())));
    Ok(channel)
}
