//! How finished futures reach the asyncio loop that awaits them, and how started
//! ones reach the runtime.
//!
//! One channel per (cell library, event loop), in two halves:
//!
//! * [`Channel`], shared with the tokio workers: a queue of finished futures and a
//!   socket pair (`platform::WakePair`) whose read end the loop watches with
//!   `loop.add_reader`. A worker
//!   that finishes a future pushes its outcome on the queue and, only if the queue
//!   was empty and no spin is scheduled, writes one byte. It holds no Python object,
//!   so whichever thread drops it last needs no GIL.
//! * [`Registry`], the Python objects the channel keeps alive for its loop: every
//!   started future until its outcome is delivered (asyncio keeps what a task waits
//!   on alive the same way, so a task nobody holds still runs to its end), the
//!   launch lists, the spin callback. A future in flight refers to its object by its
//!   slot here, never by a Python reference. The registry belongs to the channel's
//!   [`Drain`], the reader callback the loop holds: when the loop lets go of it (it
//!   is closed, or collected), everything it kept alive is let go too, as a closed
//!   asyncio loop clears its handles.
//!
//! Delivery is batched: [`Spin`], a loop callback, takes the whole queue at once, so
//! many futures finishing together cost one loop callback; results are converted to
//! Python there, on the loop's thread, which holds the GIL anyway. The reader
//! callback ([`Drain`]) only consumes the wake-up bytes and schedules a spin (see
//! why there).
//!
//! The other direction is batched too. The first coroutine started in a loop turn is
//! spawned at once (a lone `await` loses no time); later starts wait in the launch
//! list for the spin, which hands them to the runtime together (see `spawn.rs`) and
//! then polls for completions for a moment, so a quick future needs no socket
//! wake-up either. A long burst of started coroutines goes out in chunks of
//! [`LAUNCH_CHUNK`] as it builds up, so its first futures run while the loop is still
//! starting the rest. Tasks wait too, and exactly as long as asyncio's: a task starts
//! in a loop callback scheduled after it was created (an `asyncio.Task` runs its
//! first step from a `call_soon` made in its constructor), so one cancelled in the
//! callback that created it never runs. Each spin scheduled gets a number; a task
//! remembers the number current when it was queued and waits for a later spin.
//!
//! The channel knows nothing of the objects it completes or launches: each entry
//! carries the function that does it (see [`Delivery`] and [`LaunchEntry`]).
//!
//! Channels are found per loop, never cached globally: a `WeakKeyDictionary` maps each
//! loop to a weak reference to its `Drain`, with a per-thread memo of the last loop
//! in front of it. A channel whose cell library's runtime has shut down for idleness
//! is retired: the next time its loop runs it stops watching the socket pair, which
//! is then closed ([`retire_all`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::platform::WakePair;
use crate::running_loop::running_loop;
use crate::spawn::{spawn_all, Delivery, Launch, Sink, Slot};
use crate::sync::lock;

/// Work for the loop thread.
enum Item {
    /// A future finished: complete its Python object.
    Finished(Delivery),
    /// A future was dropped before finishing: let go of its Python object.
    Released(Slot),
    /// Something Rust code asked to run on the loop (a Python callback).
    Job(Job),
}

/// A closure to run on the loop's thread, holding the GIL.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Takes a started object's future out to be spawned with its burst; `None` if there
/// is nothing to spawn (it was cancelled meanwhile, or finished in an inline poll).
pub(crate) type LaunchFn = fn(&Bound<'_, PyAny>) -> Option<Launch>;

/// An entry of a launch list: a started object's slot in the registry (which keeps
/// it alive) and the function that takes its future out to launch it.
pub(crate) struct LaunchEntry {
    pub(crate) slot: Slot,
    pub(crate) launch: LaunchFn,
}

/// [`Port::start`]'s dispatch of a started future: spawn it now, or leave it queued.
pub(crate) enum Dispatch {
    /// Spawn it now.
    SpawnNow,
    /// Leave it: it is queued for the next [`Spin`].
    Queued,
}

/// The half of a channel the workers share (see the module docs).
pub(crate) struct Channel {
    queue: Mutex<Vec<Item>>,
    /// How many spins have been scheduled (the number of the current one).
    spins: AtomicU64,
    wake: WakePair,
    /// Whether a [`Spin`] is scheduled (in the loop's ready queue, so it will look at
    /// the queue soon): then workers skip the socket write. Not while one runs: a
    /// spin's callbacks may run a nested loop (`nest_asyncio`, a blocking
    /// `run_until_complete`), which must be woken and get spins of its own.
    scheduled: AtomicBool,
    /// Whether a coroutine was spawned at its start since one of this channel's
    /// loop callbacks last ran: only the first of a turn is (see [`Port::start`]).
    spawned_this_turn: AtomicBool,
    /// Futures started on this loop and not yet finished or dropped.
    outstanding: AtomicUsize,
    /// Set when the cell library's runtime shut down for idleness: the loop drops the
    /// channel the next time it runs with nothing outstanding.
    retired: AtomicBool,
}

/// The half of a channel that holds Python objects (see the module docs). Only the
/// loop's thread touches it, holding the GIL; its last strong reference is its
/// [`Drain`]'s, so it is dropped with the GIL held.
pub(crate) struct Registry {
    /// Started objects, by slot, until their outcome is delivered.
    held: Mutex<Held>,
    /// Started coroutines not yet handed to the runtime.
    launch: Mutex<Vec<LaunchEntry>>,
    /// Tasks not yet handed to the runtime, each with the number of the last spin
    /// scheduled before it was queued: only a later spin launches it.
    tasks: Mutex<VecDeque<(LaunchEntry, u64)>>,
    /// The loop callback that spins, made once. It refers back to both halves
    /// weakly: a strong reference would be a cycle no collector sees.
    spin: OnceLock<Py<Spin>>,
}

/// A slab of Python objects: `Slot`s index it, freed slots are reused.
#[derive(Default)]
struct Held {
    objects: Vec<Option<(Py<PyAny>, Abandon)>>,
    free: Vec<Slot>,
}

/// What to do with a held object whose loop let go of it before its outcome came:
/// called with the GIL held as the registry is dropped.
pub(crate) type Abandon = fn(Python<'_>, Py<PyAny>);

impl Drop for Registry {
    /// The loop is gone (closed, or collected): nothing will deliver to what is
    /// still held. Each is abandoned (see [`Abandon`]) before it is let go, which is
    /// what lets a task waiting on it be collected as asyncio's would be.
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        let launch = std::mem::take(&mut *lock(&self.launch));
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        drop((launch, tasks));
        Python::attach(|py| {
            for (object, abandon) in held.objects.into_iter().flatten() {
                abandon(py, object);
            }
        });
    }
}

/// Both halves of a loop's channel, as [`channel_for`] finds them.
pub(crate) struct Port {
    pub(crate) channel: Arc<Channel>,
    pub(crate) registry: Arc<Registry>,
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
    fn push(&self, delivery: Delivery) {
        self.enqueue(Item::Finished(delivery));
    }

    fn release(&self, slot: Slot) {
        self.enqueue(Item::Released(slot));
    }

    fn ended(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Channel {
    fn new() -> std::io::Result<Self> {
        Ok(Channel {
            queue: Mutex::new(Vec::new()),
            spins: AtomicU64::new(0),
            wake: WakePair::new()?,
            scheduled: AtomicBool::new(false),
            spawned_this_turn: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        })
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
        let _ = self.wake.tx.write(&[1]);
    }

    /// Consumes the wake-up bytes. Called before taking the queue: a push that lands
    /// after the take writes a new byte, so no finished future is ever left unseen.
    fn consume_wake_ups(&self) {
        let mut buf = [0u8; 64];
        loop {
            match self.wake.rx.read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }
}

impl Registry {
    fn new() -> Self {
        Registry {
            held: Mutex::new(Held::default()),
            launch: Mutex::new(Vec::new()),
            tasks: Mutex::new(VecDeque::new()),
            spin: OnceLock::new(),
        }
    }

    /// Keeps `object` alive until its slot is released.
    fn hold(&self, object: Py<PyAny>, abandon: Abandon) -> Slot {
        let mut held = lock(&self.held);
        match held.free.pop() {
            Some(slot) => {
                held.objects[slot] = Some((object, abandon));
                slot
            }
            None => {
                held.objects.push(Some((object, abandon)));
                held.objects.len() - 1
            }
        }
    }

    /// Lets go of the object in `slot` and returns it (to be dropped, or completed,
    /// by the caller, outside the lock).
    fn release(&self, slot: Slot) -> Option<Py<PyAny>> {
        let mut held = lock(&self.held);
        let (object, _) = held.objects.get_mut(slot)?.take()?;
        held.free.push(slot);
        Some(object)
    }

    /// Whether nothing is held or waiting to launch.
    fn idle(&self) -> bool {
        let all_free = {
            let held = lock(&self.held);
            held.objects.len() == held.free.len()
        };
        all_free && lock(&self.launch).is_empty() && lock(&self.tasks).is_empty()
    }

    /// The channel's spin callback, made on first use.
    fn spin(&self, py: Python<'_>, port: &Port) -> PyResult<&Py<Spin>> {
        if let Some(spin) = self.spin.get() {
            return Ok(spin);
        }
        let spin = Py::new(
            py,
            Spin {
                channel: Arc::downgrade(&port.channel),
                registry: Arc::downgrade(&port.registry),
                until: Mutex::new(Instant::now()),
            },
        )?;
        Ok(self.spin.get_or_init(|| spin))
    }
}

impl Port {
    /// Keeps `object` (a started future) alive until its outcome is delivered (or,
    /// should the loop let go of the channel first, `abandon`s it), and counts it as
    /// outstanding until its `Completion` (made with the returned sink
    /// and slot) is dropped.
    pub(crate) fn hold(&self, object: Py<PyAny>, abandon: Abandon) -> (Arc<dyn Sink>, Slot) {
        self.channel.outstanding.fetch_add(1, Ordering::SeqCst);
        let slot = self.registry.hold(object, abandon);
        (self.channel.clone(), slot)
    }

    /// Called on the loop thread as something starts on this channel's loop. A
    /// started coroutine (`eager`) first in its loop turn is spawned at once
    /// ([`Dispatch::SpawnNow`]); a later one is queued for the next [`Spin`]; a task is
    /// queued for a spin scheduled after now (see the module docs). Makes sure a spin
    /// is scheduled.
    pub(crate) fn start(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        queued: LaunchEntry,
        eager: bool,
    ) -> PyResult<Dispatch> {
        let (channel, registry) = (&self.channel, &self.registry);
        let started = if !eager {
            let spin = channel.spins.load(Ordering::SeqCst);
            lock(&registry.tasks).push_back((queued, spin));
            Dispatch::Queued
        } else if !channel.spawned_this_turn.swap(true, Ordering::SeqCst) {
            Dispatch::SpawnNow
        } else {
            // A long burst goes out in chunks as it builds up, so its first futures
            // start running (a timer, say) while the loop is still busy starting
            // the rest, rather than all of them once the burst is over.
            if lock(&registry.launch).len() >= LAUNCH_CHUNK {
                launch_queued(py, registry, None);
            }
            lock(&registry.launch).push(queued);
            Dispatch::Queued
        };
        let spin = registry.spin(py, self)?;
        if matches!(started, Dispatch::SpawnNow) {
            // A spawn now: poll for its completion for a moment from now (a queued
            // one gets its window when the spin launches it).
            *lock(&spin.get().until) = Instant::now() + SPIN_WINDOW;
        }
        schedule(py, channel, spin, event_loop)?;
        Ok(started)
    }
}

/// Schedules `spin` on `event_loop` unless one is scheduled already.
fn schedule(
    py: Python<'_>,
    channel: &Channel,
    spin: &Py<Spin>,
    event_loop: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if channel.scheduled.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    channel.spins.fetch_add(1, Ordering::SeqCst);
    if let Err(err) = event_loop.call_method1(pyo3::intern!(py, "call_soon"), (spin.bind(py),)) {
        channel.scheduled.store(false, Ordering::SeqCst);
        return Err(err);
    }
    Ok(())
}

/// Spawns the coroutines queued since the last call and, in a spin (`spin`: its
/// number), the tasks queued before it was scheduled; true if there were any.
fn launch_queued(py: Python<'_>, registry: &Registry, spin: Option<u64>) -> bool {
    let queued = std::mem::take(&mut *lock(&registry.launch));
    let mut launched = !queued.is_empty();
    launch_all(py, registry, queued);
    let Some(spin) = spin else {
        return launched;
    };
    // Tasks go in shares: each is handed to a launcher of its own (so the workers
    // spawn a long burst together, its first share running while the loop hands
    // over the rest) and the loop's buffers stay small.
    loop {
        let share: Vec<LaunchEntry> = {
            let mut tasks = lock(&registry.tasks);
            // Tasks are queued in order, each with the spin number current then
            // (only the loop's thread queues them), so the due ones come first.
            let due = tasks
                .iter()
                .take(LAUNCHER_SHARE)
                .take_while(|(_, seen)| *seen < spin)
                .count();
            tasks.drain(..due).map(|(entry, _)| entry).collect()
        };
        let last = share.len() < LAUNCHER_SHARE;
        launched |= !share.is_empty();
        launch_all(py, registry, share);
        if last {
            return launched;
        }
    }
}

/// The most tasks one launcher spawns.
const LAUNCHER_SHARE: usize = 1024;

/// Launches `queued` (looked up under one lock, launched after it is released: a
/// launch may run Python code, which may start more futures) and hands what runs
/// on to the runtime.
fn launch_all(py: Python<'_>, registry: &Registry, queued: Vec<LaunchEntry>) {
    if queued.is_empty() {
        return;
    }
    let targets: Vec<(Bound<'_, PyAny>, LaunchFn)> = {
        let held = lock(&registry.held);
        queued
            .into_iter()
            .filter_map(|LaunchEntry { slot, launch }| {
                let (object, _) = held.objects.get(slot)?.as_ref()?;
                Some((object.bind(py).clone(), launch))
            })
            .collect()
    };
    let mut burst = Vec::with_capacity(targets.len());
    for (target, launch) in targets {
        if let Some(launch) = launch(&target) {
            burst.push(launch);
        }
    }
    spawn_all(burst);
}

/// Delivers what the queue holds. An error is one the loop must raise
/// (`KeyboardInterrupt`, `SystemExit` from a done callback or a result): what is
/// left goes back to the front of the queue and a wake-up is written, so it is
/// delivered when the loop runs again.
fn deliver_queued(py: Python<'_>, channel: &Channel, registry: &Registry) -> PyResult<()> {
    let items = std::mem::take(&mut *lock(&channel.queue));
    // What the workers printed before finishing these is queued by now: written
    // first, it comes before anything Python prints once they are delivered.
    if !items.is_empty() {
        crate::output::drain(py);
    }
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        let delivered = match item {
            Item::Finished(Delivery {
                slot,
                deliver,
                outcome,
            }) => match registry.release(slot) {
                Some(target) => deliver(py, target, outcome),
                None => Ok(()),
            },
            Item::Released(slot) => {
                drop(registry.release(slot));
                Ok(())
            }
            Item::Job(job) => {
                job(py);
                Ok(())
            }
        };
        if let Err(err) = delivered {
            let rest: Vec<Item> = items.collect();
            if !rest.is_empty() {
                let mut queue = lock(&channel.queue);
                let later = std::mem::replace(&mut *queue, rest);
                queue.extend(later);
                drop(queue);
                channel.wake();
            }
            return Err(err);
        }
    }
    Ok(())
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
    /// Weak: the registry owns this callback (see [`Registry::spin`]).
    channel: Weak<Channel>,
    registry: Weak<Registry>,
    until: Mutex<Instant>,
}

#[pymethods]
impl Spin {
    #[pyo3(signature = (event_loop=None))]
    fn __call__(slf: &Bound<'_, Self>, event_loop: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        // Gone: its loop let go of the channel, and nothing is left to deliver.
        let (Some(channel), Some(registry)) =
            (slf.get().channel.upgrade(), slf.get().registry.upgrade())
        else {
            return Ok(());
        };
        // Running, no longer scheduled: from here workers write wake-up bytes again
        // (an item pushed before this line is taken below; one pushed after it
        // wakes the loop), and a start meanwhile schedules a new spin.
        channel.scheduled.store(false, Ordering::SeqCst);
        channel.spawned_this_turn.store(false, Ordering::SeqCst);
        let this_spin = channel.spins.load(Ordering::SeqCst);
        if launch_queued(py, &registry, Some(this_spin)) {
            // The window counts from the spawn, not from the start (a long burst of
            // starts may have outlasted it).
            *lock(&slf.get().until) = Instant::now() + SPIN_WINDOW;
        }
        deliver_queued(py, &channel, &registry)?;
        // Delivering runs done callbacks, which can step tasks that start more
        // futures: those must launch on a later turn whatever the window says.
        let go_on = !lock(&registry.launch).is_empty()
            || !lock(&registry.tasks).is_empty()
            || (channel.outstanding.load(Ordering::SeqCst) > 0
                && Instant::now() < *lock(&slf.get().until));
        if go_on {
            let again = match event_loop {
                Some(event_loop) => Ok(event_loop),
                None => running_loop(py).and_then(|found| {
                    found.ok_or_else(|| PyRuntimeError::new_err("the loop stopped"))
                }),
            }
            .and_then(|event_loop| schedule(py, &channel, &slf.clone().unbind(), &event_loop));
            if let Err(err) = again {
                // Could not reschedule (a closing loop): workers go back to waking
                // the loop through the socket.
                err.write_unraisable(py, Some(slf.as_any()));
            }
        }
        close_if_retired(py, &channel, &registry)
    }
}

/// The callable the loop runs when the channel's socket is readable. It owns the
/// channel's [`Registry`]: the loop's reference to it is what keeps the channel's
/// Python objects alive.
#[pyclass(frozen, weakref, name = "_ChannelDrain", module = "ipy_rustasync")]
pub(crate) struct Drain {
    channel: Arc<Channel>,
    registry: Arc<Registry>,
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
            let port = Port {
                channel: channel.clone(),
                registry: self.registry.clone(),
            };
            let spin = self.registry.spin(py, &port)?;
            let event_loop =
                running_loop(py)?.ok_or_else(|| PyRuntimeError::new_err("the loop stopped"))?;
            schedule(py, channel, spin, &event_loop)?;
        }
        close_if_retired(py, channel, &self.registry)
    }
}

/// Stops the running loop watching the channel's socket and forgets the channel;
/// its sockets close once the last reference to it goes.
fn close(py: Python<'_>, channel: &Arc<Channel>) -> PyResult<()> {
    let Some(event_loop) = running_loop(py)? else {
        return Ok(());
    };
    event_loop.call_method1("remove_reader", (channel.wake.rx.handle(),))?;
    if let Some(loops) = LOOPS.get(py) {
        let loops = loops.bind(py);
        // Only if the loop's entry is this channel's: a newer channel may have
        // replaced it already.
        if found(&loops.call_method1("get", (&event_loop,))?)
            .is_some_and(|drain| Arc::ptr_eq(&drain.get().channel, channel))
        {
            loops.del_item(&event_loop)?;
        }
    }
    let memo = LAST.with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if last
            .as_ref()
            .is_some_and(|memo| Arc::ptr_eq(&memo.1, channel))
        {
            last.take()
        } else {
            None
        }
    });
    drop(memo);
    Ok(())
}

/// Closes the channel if it is retired and nothing is left in it.
fn close_if_retired(py: Python<'_>, channel: &Arc<Channel>, registry: &Registry) -> PyResult<()> {
    if channel.retired.load(Ordering::SeqCst)
        && channel.outstanding.load(Ordering::SeqCst) == 0
        && lock(&channel.queue).is_empty()
        && registry.idle()
    {
        close(py, channel)?;
    }
    Ok(())
}

/// The `Drain` a `LOOPS` entry (a weak reference) points to, if it is alive.
fn found<'py>(entry: &Bound<'py, PyAny>) -> Option<Bound<'py, Drain>> {
    if entry.is_none() {
        return None;
    }
    entry.call0().ok()?.cast_into::<Drain>().ok()
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

/// The last loop used on this thread and its channel, the registry weakly (the loop
/// owns it). Holding the loop itself (one per thread) makes the check an identity
/// test rather than a weakref call.
type Memo = (Py<PyAny>, Arc<Channel>, Weak<Registry>);

thread_local! {
    static LAST: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// The channel of `event_loop` in this cell library, created and registered with the
/// loop on first use.
pub(crate) fn channel_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Port> {
    let memo = LAST.with(|last| {
        let last = last.try_borrow().ok()?;
        let (memo_loop, channel, registry) = last.as_ref()?;
        if !memo_loop.bind(py).is(event_loop) || channel.retired.load(Ordering::Relaxed) {
            return None;
        }
        Some(Port {
            channel: channel.clone(),
            registry: registry.upgrade()?,
        })
    });
    if let Some(port) = memo {
        return Ok(port);
    }
    let loops = LOOPS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("weakref")?
            .getattr("WeakKeyDictionary")?
            .call0()?
            .unbind())
    })?;
    let loops = loops.bind(py);
    let existing = found(&loops.call_method1("get", (event_loop,))?)
        .map(|drain| Port {
            channel: drain.get().channel.clone(),
            registry: drain.get().registry.clone(),
        })
        .filter(|port| !port.channel.retired.load(Ordering::SeqCst));
    let port = match existing {
        Some(port) => port,
        None => {
            let channel = Arc::new(Channel::new().map_err(|err| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "could not create the wake-up socket: {err}"
                ))
            })?);
            let registry = Arc::new(Registry::new());
            let drain = Bound::new(
                py,
                Drain {
                    channel: channel.clone(),
                    registry: registry.clone(),
                },
            )?;
            // The loop holds the drain (and with it the registry); the table only
            // refers to it weakly.
            event_loop.call_method1("add_reader", (channel.wake.rx.handle(), &drain))?;
            loops.set_item(event_loop, pyo3::types::PyWeakrefReference::new(&drain)?)?;
            lock(&CHANNELS).push(Arc::downgrade(&channel));
            if let Some(hook) = ON_NEW_LOOP.get() {
                hook(event_loop)?;
            }
            Port { channel, registry }
        }
    };
    let entry = Some((
        event_loop.clone().unbind(),
        port.channel.clone(),
        Arc::downgrade(&port.registry),
    ));
    let previous = LAST.with(|last| {
        last.try_borrow_mut()
            .ok()
            .map(|mut last| std::mem::replace(&mut *last, entry))
    });
    drop(previous);
    Ok(port)
}
