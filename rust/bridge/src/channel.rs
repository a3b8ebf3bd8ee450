//! How finished futures reach the asyncio loop that awaits them, and how started
//! ones reach the runtime.
//!
//! One [`Channel`] per (cell library, event loop): a queue of finished futures and a
//! socket pair whose read end the loop watches with `loop.add_reader`. A tokio worker
//! that finishes a future pushes its result on the queue and, only if the queue was
//! empty, writes one byte. The loop then runs [`Drain`], which takes the whole queue
//! at once: many futures finishing together cost one wake-up of the loop, and the
//! worker never takes the GIL (results are converted to Python in `Drain`, on the loop
//! thread, which holds the GIL anyway).
//!
//! The other direction is batched too. The first coroutine started in a loop turn is
//! spawned at once (a lone `await` loses no time); later starts wait in the
//! channel's launch list for [`Spin`], a loop callback that hands them to the
//! runtime together (see `spawn.rs`) and then polls for completions for a moment, so
//! a quick future needs no socket wake-up either. A long burst of started coroutines
//! goes out in chunks of [`LAUNCH_CHUNK`] as it builds up, so its first futures run
//! while the loop is still starting the rest. Tasks wait too, and exactly as long as
//! asyncio's: a task starts in a loop callback scheduled after it was created (an
//! `asyncio.Task` runs its first step from a `call_soon` made in its constructor), so
//! one cancelled in the callback that created it never runs. Each spin scheduled
//! gets a number; a task remembers the number current when it was queued and waits
//! for a later spin.
//!
//! The channel knows nothing of the objects it completes or launches: each entry
//! carries the function that does it (see [`Finished`] and [`Queued`]).
//!
//! Channels are found per loop, never cached globally: a `WeakKeyDictionary` maps each
//! loop to its `Drain` (so a closed, collected loop takes its channel with it), with
//! a per-thread memo of the last loop in front of it. A channel whose cell library's
//! runtime has shut down for idleness is retired: the next time its loop runs it
//! stops watching the socket pair, which is then closed ([`retire_all`]).

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::running_loop::running_loop;
use crate::spawn::{spawn_all, Finished, Launch, Sink};
use crate::sync::lock;

/// Work for the loop thread.
enum Item {
    /// A future finished: complete its Python object.
    Finished(Finished),
    /// Something Rust code asked to run on the loop (a Python callback).
    Job(Job),
}

/// A closure to run on the loop's thread, holding the GIL.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Takes a started object's future out to be spawned with its burst; `None` if there
/// is nothing to spawn (it was cancelled meanwhile, or finished in an inline poll).
pub(crate) type LaunchFn = fn(&Bound<'_, PyAny>) -> Option<Launch>;

/// A started object waiting in the launch list.
pub(crate) struct Queued {
    pub(crate) target: Py<PyAny>,
    pub(crate) launch: LaunchFn,
}

/// What [`Channel::start`] says to do with a started future.
pub(crate) enum Started {
    /// Spawn it now.
    Now,
    /// Leave it: it is queued for the next [`Spin`].
    Queued,
}

pub(crate) struct Channel {
    queue: Mutex<Vec<Item>>,
    /// Started coroutines not yet handed to the runtime (strongly held: asyncio keeps
    /// what is scheduled alive the same way). Only the loop's thread touches it.
    launch: Mutex<Vec<Queued>>,
    /// Tasks not yet handed to the runtime, each with the number of the last spin
    /// scheduled before it was queued: only a later spin launches it.
    tasks: Mutex<Vec<(Queued, u64)>>,
    /// How many spins have been scheduled (the number of the current one).
    spins: AtomicU64,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// Whether a [`Spin`] is scheduled (in the loop's ready queue, so it will look at
    /// the queue soon): then workers skip the socket write. Not while one runs: a
    /// spin's callbacks may run a nested loop (`nest_asyncio`, a blocking
    /// `run_until_complete`), which must be woken and get spins of its own.
    scheduled: AtomicBool,
    /// Whether a coroutine was spawned at its start since one of this channel's
    /// loop callbacks last ran: only the first of a turn is (see [`Channel::start`]).
    spawned_this_turn: AtomicBool,
    /// Futures started on this loop and not yet finished or dropped.
    outstanding: AtomicUsize,
    /// Set when the cell library's runtime shut down for idleness: the loop drops the
    /// channel the next time it runs with nothing outstanding.
    retired: AtomicBool,
    /// The loop callback that spins, made once. It refers back to the channel
    /// weakly: a strong reference would be a cycle no collector sees.
    spin: OnceLock<Py<Spin>>,
}

/// How long the loop polls for completions after a spawn before it goes back to
/// sleeping on the wake-up socket. A future that finishes within it is picked up
/// without a wake-up: a tokio worker wakes and finishes a ready future in ~10 µs,
/// while a socket wake-up of a sleeping loop costs about as much again.
const SPIN_WINDOW: Duration = Duration::from_micros(60);

/// The most started futures a burst holds back before handing them to a launcher.
const LAUNCH_CHUNK: usize = 128;

/// Every channel of this cell library, for [`retire_all`].
static CHANNELS: Mutex<Vec<Weak<Channel>>> = Mutex::new(Vec::new());

impl Sink for Channel {
    fn push(&self, finished: Finished) {
        self.enqueue(Item::Finished(finished));
    }

    fn ended(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
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
            tasks: Mutex::new(Vec::new()),
            spins: AtomicU64::new(0),
            wake_tx,
            wake_rx,
            scheduled: AtomicBool::new(false),
            spawned_this_turn: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            spin: OnceLock::new(),
        })
    }

    /// Counts one started future as outstanding until the returned sink's
    /// [`Sink::ended`] (the future's `Completion` being dropped).
    pub(crate) fn sink(self: &Arc<Self>) -> Arc<dyn Sink> {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        self.clone()
    }

    /// Called on the loop thread as something starts on this channel's loop. A
    /// started coroutine (`eager`) first in its loop turn is spawned at once
    /// ([`Started::Now`]); a later one is queued for the next [`Spin`]; a task is
    /// queued for a spin scheduled after now (see the module docs). Makes sure a spin
    /// is scheduled.
    pub(crate) fn start(
        self: &Arc<Self>,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        queued: Queued,
        eager: bool,
    ) -> PyResult<Started> {
        let started = if !eager {
            let spin = self.spins.load(Ordering::SeqCst);
            lock(&self.tasks).push((queued, spin));
            Started::Queued
        } else if !self.spawned_this_turn.swap(true, Ordering::SeqCst) {
            drop(queued);
            Started::Now
        } else {
            // A long burst goes out in chunks as it builds up, so its first futures
            // start running (a timer, say) while the loop is still busy starting
            // the rest, rather than all of them once the burst is over.
            if lock(&self.launch).len() >= LAUNCH_CHUNK {
                self.launch_queued(py, None);
            }
            lock(&self.launch).push(queued);
            Started::Queued
        };
        let spin = self.spin(py)?;
        if matches!(started, Started::Now) {
            // A spawn now: poll for its completion for a moment from now (a queued
            // one gets its window when the spin launches it).
            *lock(&spin.get().until) = Instant::now() + SPIN_WINDOW;
        }
        if !self.scheduled.swap(true, Ordering::SeqCst) {
            self.spins.fetch_add(1, Ordering::SeqCst);
            if let Err(err) =
                event_loop.call_method1(pyo3::intern!(py, "call_soon"), (spin.bind(py),))
            {
                self.scheduled.store(false, Ordering::SeqCst);
                return Err(err);
            }
        }
        Ok(started)
    }

    /// Schedules a [`Spin`] unless one is scheduled already.
    fn schedule_spin(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let scheduled = self.spin(py).and_then(|spin| {
            let event_loop =
                running_loop(py)?.ok_or_else(|| PyRuntimeError::new_err("the loop stopped"))?;
            self.spins.fetch_add(1, Ordering::SeqCst);
            event_loop.call_method1(pyo3::intern!(py, "call_soon"), (spin.bind(py),))
        });
        if let Err(err) = scheduled {
            self.scheduled.store(false, Ordering::SeqCst);
            return Err(err);
        }
        Ok(())
    }

    /// The channel's spin callback, made on first use.
    fn spin(self: &Arc<Self>, py: Python<'_>) -> PyResult<&Py<Spin>> {
        if let Some(spin) = self.spin.get() {
            return Ok(spin);
        }
        let spin = Py::new(
            py,
            Spin {
                channel: Arc::downgrade(self),
                until: Mutex::new(Instant::now()),
            },
        )?;
        Ok(self.spin.get_or_init(|| spin))
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
        // A scheduled spin finds the item itself. Otherwise: a full socket buffer
        // (WouldBlock) means a wake-up is already pending; a closed one means the
        // loop is gone and nobody is waiting.
        if was_empty && !self.scheduled.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Consumes the wake-up bytes. Called before taking the queue: a push that lands
    /// after the take writes a new byte, so no finished future is ever left unseen.
    fn consume_wake_ups(&self) {
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake_rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }

    /// Spawns the coroutines queued since the last call and, in a spin (`spin`: its
    /// number), the tasks queued before it was scheduled, together; true if there
    /// were any.
    fn launch_queued(&self, py: Python<'_>, spin: Option<u64>) -> bool {
        let mut queued = std::mem::take(&mut *lock(&self.launch));
        if let Some(spin) = spin {
            let mut tasks = lock(&self.tasks);
            if !tasks.is_empty() {
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut *tasks)
                    .into_iter()
                    .partition(|(_, seen)| *seen < spin);
                *tasks = later;
                drop(tasks);
                queued.extend(due.into_iter().map(|(entry, _)| entry));
            }
        }
        let launched = !queued.is_empty();
        let mut burst = Vec::with_capacity(queued.len());
        for Queued { target, launch } in queued {
            if let Some(launch) = launch(target.bind(py)) {
                burst.push(launch);
            }
        }
        spawn_all(burst);
        launched
    }

    /// Delivers what the queue holds. An error is one the loop must raise
    /// (`KeyboardInterrupt`, `SystemExit` from a done callback or a result): what is
    /// left goes back to the front of the queue and a wake-up is written, so it is
    /// delivered when the loop runs again.
    fn deliver_queued(&self, py: Python<'_>) -> PyResult<()> {
        let items = std::mem::take(&mut *lock(&self.queue));
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            let delivered = match item {
                Item::Finished(Finished {
                    target,
                    deliver,
                    outcome,
                }) => deliver(py, target, outcome),
                Item::Job(job) => {
                    job(py);
                    Ok(())
                }
            };
            if let Err(err) = delivered {
                let rest: Vec<Item> = items.collect();
                if !rest.is_empty() {
                    let mut queue = lock(&self.queue);
                    let later = std::mem::replace(&mut *queue, rest);
                    queue.extend(later);
                    drop(queue);
                    self.wake();
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// Whether nothing is in flight, queued or waiting to launch.
    fn idle(&self) -> bool {
        self.outstanding.load(Ordering::SeqCst) == 0
            && lock(&self.queue).is_empty()
            && lock(&self.launch).is_empty()
            && lock(&self.tasks).is_empty()
    }
}

/// Retires every channel of this cell library: each loop drops its channel (and
/// closes its sockets) the next time it runs with nothing outstanding. Called when
/// the library's runtime shuts down for idleness, from any thread, without the GIL.
pub(crate) fn retire_all() {
    let channels: Vec<Arc<Channel>> = {
        let mut all = lock(&CHANNELS);
        all.retain(|weak| weak.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for channel in channels {
        channel.retired.store(true, Ordering::SeqCst);
        channel.wake();
    }
}

/// A loop callback that launches queued futures, delivers finished ones and
/// reschedules itself while futures are outstanding and the spin window lasts.
#[pyclass(frozen, name = "_ChannelSpin", module = "ipy_rustasync")]
pub(crate) struct Spin {
    /// Weak: the channel owns this callback (see [`Channel::spin`]).
    channel: Weak<Channel>,
    until: Mutex<Instant>,
}

#[pymethods]
impl Spin {
    #[pyo3(signature = (event_loop=None))]
    fn __call__(slf: &Bound<'_, Self>, event_loop: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        // Gone: its loop was closed and collected, and nothing is left to deliver.
        let Some(channel) = slf.get().channel.upgrade() else {
            return Ok(());
        };
        // Running, no longer scheduled: from here workers write wake-up bytes again
        // (an item pushed before this line is taken below; one pushed after it
        // wakes the loop), and a start meanwhile schedules a new spin.
        channel.scheduled.store(false, Ordering::SeqCst);
        channel.spawned_this_turn.store(false, Ordering::SeqCst);
        let this_spin = channel.spins.load(Ordering::SeqCst);
        if channel.launch_queued(py, Some(this_spin)) {
            // The window counts from the spawn, not from the start (a long burst of
            // starts may have outlasted it).
            *lock(&slf.get().until) = Instant::now() + SPIN_WINDOW;
        }
        channel.deliver_queued(py)?;
        // Delivering runs done callbacks, which can step tasks that start more
        // futures: those must launch on a later turn whatever the window says.
        let go_on = !lock(&channel.launch).is_empty()
            || !lock(&channel.tasks).is_empty()
            || (channel.outstanding.load(Ordering::SeqCst) > 0
                && Instant::now() < *lock(&slf.get().until));
        if go_on && !channel.scheduled.swap(true, Ordering::SeqCst) {
            let again = match event_loop {
                Some(event_loop) => Ok(event_loop),
                None => running_loop(py).and_then(|found| {
                    found.ok_or_else(|| PyRuntimeError::new_err("the loop stopped"))
                }),
            }
            .and_then(|event_loop| {
                channel.spins.fetch_add(1, Ordering::SeqCst);
                event_loop.call_method1(pyo3::intern!(py, "call_soon"), (slf, &event_loop))
            });
            if let Err(err) = again {
                // Could not reschedule (a closing loop): workers go back to waking
                // the loop through the socket.
                channel.scheduled.store(false, Ordering::SeqCst);
                err.write_unraisable(py, Some(slf.as_any()));
            }
        }
        close_if_retired(py, &channel)
    }
}

/// The callable the loop runs when the channel's socket is readable.
#[pyclass(frozen, name = "_ChannelDrain", module = "ipy_rustasync")]
pub(crate) struct Drain {
    channel: Arc<Channel>,
}

#[pymethods]
impl Drain {
    /// Consumes the wake-up bytes and schedules a spin to deliver what is queued.
    /// Delivering here instead would run done callbacks inside this reader
    /// callback, whose handle (and `contextvars` context) the loop reuses for every
    /// wake-up: a callback that runs a loop nested (`nest_asyncio`, a blocking
    /// `run_until_complete`) would then find it already entered when the socket is
    /// readable again. A spin is a new handle each time.
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let channel = &self.channel;
        // A loop turn of its own: the next start may spawn at once again.
        channel.spawned_this_turn.store(false, Ordering::SeqCst);
        channel.consume_wake_ups();
        if !lock(&channel.queue).is_empty() {
            channel.schedule_spin(py)?;
        }
        close_if_retired(py, channel)
    }
}

/// Stops the running loop watching `channel`'s socket and forgets the channel; its
/// sockets close once the last reference to it goes.
fn close(py: Python<'_>, channel: &Arc<Channel>) -> PyResult<()> {
    let Some(event_loop) = running_loop(py)? else {
        return Ok(());
    };
    event_loop.call_method1("remove_reader", (channel.wake_rx.as_raw_fd(),))?;
    if let Some(loops) = LOOPS.get(py) {
        let loops = loops.bind(py);
        let registered = loops.call_method1("get", (&event_loop,))?;
        // Only if the loop's entry is this channel's: a newer channel may have
        // replaced it already.
        if registered
            .cast::<Drain>()
            .is_ok_and(|drain| Arc::ptr_eq(&drain.get().channel, channel))
        {
            loops.del_item(&event_loop)?;
        }
    }
    let memo = LAST.with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if last
            .as_ref()
            .is_some_and(|(_, memo)| Arc::ptr_eq(memo, channel))
        {
            last.take()
        } else {
            None
        }
    });
    drop(memo);
    Ok(())
}

/// Closes `channel` if it is retired and nothing is left in it.
fn close_if_retired(py: Python<'_>, channel: &Arc<Channel>) -> PyResult<()> {
    if channel.retired.load(Ordering::SeqCst) && channel.idle() {
        close(py, channel)?;
    }
    Ok(())
}

static LOOPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What to do with a loop the first time this cell library runs something on it
/// (set by the module's initialisation: the task factory's installation).
static ON_NEW_LOOP: OnceLock<LoopHook> = OnceLock::new();

/// A function run on a loop.
pub(crate) type LoopHook = fn(&Bound<'_, PyAny>) -> PyResult<()>;

/// Sets [`ON_NEW_LOOP`].
pub(crate) fn on_new_loop(hook: LoopHook) {
    let _ = ON_NEW_LOOP.set(hook);
}

thread_local! {
    /// The last (loop, channel) used on this thread. Holding the loop itself (one
    /// per thread) makes the check an identity test rather than a weakref call.
    static LAST: RefCell<Option<(Py<PyAny>, Arc<Channel>)>> = const { RefCell::new(None) };
}

/// The channel of `event_loop` in this cell library, created and registered with the
/// loop on first use (`created` says so).
pub(crate) fn channel_for(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
) -> PyResult<(Arc<Channel>, bool)> {
    let memo = LAST.with(|last| {
        last.try_borrow().ok().and_then(|last| {
            last.as_ref()
                .filter(|(memo_loop, channel)| {
                    memo_loop.bind(py).is(event_loop) && !channel.retired.load(Ordering::Relaxed)
                })
                .map(|(_, channel)| channel.clone())
        })
    });
    if let Some(channel) = memo {
        return Ok((channel, false));
    }
    let loops = LOOPS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("weakref")?
            .getattr("WeakKeyDictionary")?
            .call0()?
            .unbind())
    })?;
    let loops = loops.bind(py);
    let found = loops
        .call_method1("get", (event_loop,))?
        .cast_into::<Drain>()
        .ok()
        .map(|drain| drain.get().channel.clone())
        .filter(|channel| !channel.retired.load(Ordering::SeqCst));
    let (channel, created) = match found {
        Some(channel) => (channel, false),
        None => {
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
            lock(&CHANNELS).push(Arc::downgrade(&channel));
            if let Some(hook) = ON_NEW_LOOP.get() {
                hook(event_loop)?;
            }
            (channel, true)
        }
    };
    let entry = Some((event_loop.clone().unbind(), channel.clone()));
    let previous = LAST.with(|last| {
        last.try_borrow_mut()
            .ok()
            .map(|mut last| std::mem::replace(&mut *last, entry))
    });
    drop(previous);
    Ok((channel, created))
}
