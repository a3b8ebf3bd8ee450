//! The tokio runtime a cell's futures run on, started on demand and stopped when idle.
//!
//! There is one runtime per copy of this crate. On Linux every cell links the shared
//! runtime library (this crate, PyO3, tokio and futures as one Rust `dylib`, generated
//! by `ipy_rustasync/_sources/crate.py`), so the cells of a process share one copy and
//! one runtime: 20 cells awaited once leave the runtime's workers and its idle
//! watcher. Where cells link a copy each (`IPY_RUSTASYNC_SHARED_RUNTIME=0`, other
//! platforms, an exported project), each copy has its own runtime, and a runtime
//! from one copy cannot drive futures that use another copy's timers. Either way the
//! runtime starts at its first use and shuts down after [`idle_period`] with nothing
//! to do (no bridge call in flight and no task alive, including tasks a cell spawned
//! itself); the next call starts a new one, which takes well under a millisecond.
//!
//! Work reaches the runtime only through an [`Active`] guard, and a runtime is only
//! shut down when none exists. Taking one is two atomic operations and a
//! thread-local lookup (an `await` takes one, so it must be cheap): the guard counts
//! itself in `ACTIVE` first, then checks that the runtime handle this thread cached
//! belongs to the current `GENERATION`. The watcher that shuts an idle runtime down
//! bumps `GENERATION` first and then checks `ACTIVE` is zero; with sequentially
//! consistent atomics, either it sees the new guard (and keeps the runtime) or the
//! guard sees the new generation (and takes the slow path, under the lock, which
//! starts a new runtime if needed).

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::{PyErr, PyResult};
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::sync::{hold_for_fork, lock, reclaim_in_child, release_after_fork, ForkSlot};

static SHARED: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
/// Bridge calls in flight: started futures, inline polls, blocking runs.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Bumped (under the lock) whenever the runtime may be about to be shut down, which
/// invalidates every thread's cached handle.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Bumped whenever a piece of work ends, so the watcher can tell a quiet period
/// from a busy one without a clock read per call.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Whether an idle watcher thread is running.
static WATCHING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's handle to the runtime, and the generation it was taken in.
    static CACHED: RefCell<Option<(u64, Handle)>> = const { RefCell::new(None) };
    /// The runtime's lock, held by a thread that calls `os.fork()` from just before
    /// the fork to just after it (see [`register_fork_hooks`]).
    static HELD_FOR_FORK: ForkSlot<Option<Arc<Runtime>>> = const { RefCell::new(None) };
}

/// A piece of work on the runtime; while any exists the runtime stays up.
pub struct Active {
    handle: Handle,
}

impl Active {
    /// Starts the runtime if needed and counts one piece of work on it.
    pub fn new() -> PyResult<Self> {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        let generation = GENERATION.load(Ordering::SeqCst);
        let cached = CACHED.with(|cached| {
            let cached = cached.try_borrow().ok()?;
            cached
                .as_ref()
                .filter(|(seen, _)| *seen == generation)
                .map(|(_, handle)| handle.clone())
        });
        if let Some(handle) = cached {
            return Ok(Active { handle });
        }
        match Self::slow() {
            Ok(handle) => Ok(Active { handle }),
            Err(err) => {
                ACTIVE.fetch_sub(1, Ordering::SeqCst);
                Err(err)
            }
        }
    }

    /// Under the lock: the runtime's handle, starting it if there is none, cached
    /// for this thread.
    fn slow() -> PyResult<Handle> {
        let mut shared = lock(&SHARED);
        let runtime = match &*shared {
            Some(runtime) => runtime.clone(),
            None => {
                let runtime = Arc::new(build()?);
                *shared = Some(runtime.clone());
                runtime
            }
        };
        let handle = runtime.handle().clone();
        let generation = GENERATION.load(Ordering::SeqCst);
        let entry = Some((generation, handle.clone()));
        drop(shared);
        let previous = CACHED.with(|cached| {
            cached
                .try_borrow_mut()
                .ok()
                .map(|mut c| std::mem::replace(&mut *c, entry))
        });
        drop(previous);
        Ok(handle)
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns `future`; the runtime counts as busy until it ends or is aborted.
    pub fn spawn<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.handle.clone();
        handle.spawn(async move {
            let _busy = self;
            future.await
        })
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        EPOCH.fetch_add(1, Ordering::Relaxed);
        uncount();
    }
}

/// One piece of work fewer; the last one starts the idle watcher.
fn uncount() {
    if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 && !WATCHING.load(Ordering::Relaxed) {
        watch_idle();
    }
}

/// Runs `f` inside the runtime's context, counted as work while it runs, for work
/// that usually ends at once (a `#[rust_async(inline)]` first poll): cheaper than an
/// [`Active`], whose handle clone and end-of-work mark cost as much as the poll.
/// If `keep` says the work goes on (the poll was pending), it goes on as the
/// returned `Active`, counted without a gap, so the runtime whose timers the work
/// may have registered with cannot be shut down before it is spawned.
pub(crate) fn entered<R, F: FnOnce() -> R>(
    f: F,
    keep: fn(&R) -> bool,
) -> PyResult<(R, Option<Active>)> {
    try_entered(f, keep).map_err(|(err, _)| err)
}

/// [`entered`], giving `f` back if the runtime could not start.
fn try_entered<R, F: FnOnce() -> R>(
    f: F,
    keep: fn(&R) -> bool,
) -> Result<(R, Option<Active>), (PyErr, F)> {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let generation = GENERATION.load(Ordering::SeqCst);
    // The cached handle is entered where it lies (no clone) unless the work goes on.
    let fast = CACHED.with(move |cached| -> Result<(R, Option<Active>), F> {
        let Ok(cached) = cached.try_borrow() else {
            return Err(f);
        };
        match cached.as_ref() {
            Some((seen, handle)) if *seen == generation => {
                let out = {
                    let _context = handle.enter();
                    f()
                };
                let active = keep(&out).then(|| Active {
                    handle: handle.clone(),
                });
                Ok((out, active))
            }
            _ => Err(f),
        }
    });
    let (out, active) = match fast {
        Ok(done) => done,
        Err(f) => {
            let handle = match Active::slow() {
                Ok(handle) => handle,
                Err(err) => {
                    uncount();
                    return Err((err, f));
                }
            };
            let out = {
                let _context = handle.enter();
                f()
            };
            // `then`, not `then_some`: an `Active` made and dropped here would uncount
            // the work a second time (below), wrapping the count so the runtime
            // never went idle.
            let active = keep(&out).then(|| Active { handle });
            (out, active)
        }
    };
    if active.is_none() {
        uncount();
    }
    Ok((out, active))
}

/// Runs a synchronous cell function inside the runtime's context (started if
/// needed), so `tokio::spawn`, `tokio::time::sleep(..)` futures and
/// `Handle::current()` work there as in an async one; the generated glue wraps
/// every plain `pub fn`, user `#[pyfunction]` and sync `#[pymethods]` body in it.
/// If the runtime cannot start, `f` still runs, outside any context (and tokio
/// says why when it is asked for one).
pub fn in_runtime<R>(f: impl FnOnce() -> R) -> R {
    match try_entered(f, |_| false) {
        Ok((out, _)) => out,
        Err((_, f)) => f(),
    }
}

fn build() -> PyResult<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("ipy-rustasync-worker")
        .thread_stack_size(stack_size())
        .enable_all()
        .build()
        .map_err(|err| PyRuntimeError::new_err(format!("could not start the tokio runtime: {err}")))
}

/// What to do once the runtime has shut down for idleness (set by the module's
/// initialisation: retiring the loops' channels).
static ON_SHUTDOWN: OnceLock<fn()> = OnceLock::new();

/// Sets [`ON_SHUTDOWN`].
pub(crate) fn on_idle_shutdown(hook: fn()) {
    let _ = ON_SHUTDOWN.set(hook);
}

/// How many quiet looks in a row make an idle period (the watcher looks every
/// period / `LOOKS`, so a runtime goes within 1.25 periods of its last work).
const LOOKS: u32 = 4;

/// Starts the watcher thread that shuts the runtime down once it has been idle for
/// the idle period, unless one is already watching. The watcher exits when it has
/// shut the runtime down.
fn watch_idle() {
    let Some(period) = idle_period() else {
        return;
    };
    if WATCHING.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ipy-rustasync-idle".into())
        .spawn(move || {
            let step = period / LOOKS;
            let mut seen = EPOCH.load(Ordering::SeqCst);
            let mut quiet = 0;
            loop {
                std::thread::sleep(step);
                let mut shared = lock(&SHARED);
                let epoch = EPOCH.load(Ordering::SeqCst);
                if epoch != seen || ACTIVE.load(Ordering::SeqCst) > 0 {
                    seen = epoch;
                    quiet = 0;
                    continue;
                }
                quiet += 1;
                if quiet < LOOKS {
                    continue;
                }
                // Invalidate every cached handle before the final check (see the
                // module docs for why this order makes the check safe).
                GENERATION.fetch_add(1, Ordering::SeqCst);
                let idle = ACTIVE.load(Ordering::SeqCst) == 0
                    && shared.as_ref().is_none_or(|rt| {
                        // Only our own reference (a caller of `runtime()` may still
                        // hold one) and no task alive, including tasks the cell
                        // spawned itself.
                        Arc::strong_count(rt) == 1 && rt.metrics().num_alive_tasks() == 0
                    });
                if !idle {
                    quiet = 0;
                    continue;
                }
                if let Some(runtime) = shared.take().and_then(Arc::into_inner) {
                    runtime.shutdown_background();
                }
                WATCHING.store(false, Ordering::SeqCst);
                drop(shared);
                // The loops' wake-up sockets go with the runtime: an edited
                // cell's library is never used again, and would keep them open.
                if let Some(hook) = ON_SHUTDOWN.get() {
                    hook();
                }
                return;
            }
        });
    if spawned.is_err() {
        WATCHING.store(false, Ordering::SeqCst);
    }
}

/// The runtime (the one every cell on the shared runtime library uses), for cell code that wants it directly
/// (`ipy_rustasync::runtime()?.spawn(...)`); started if needed. While the returned
/// `Arc` is held, the runtime is not shut down when idle.
pub fn runtime() -> PyResult<Arc<Runtime>> {
    let active = Active::new()?;
    let runtime = lock(&SHARED).clone();
    drop(active);
    runtime.ok_or_else(|| PyRuntimeError::new_err("the tokio runtime stopped"))
}

/// Stack size for the runtime's threads (workers and `spawn_blocking`'s): the
/// main thread's, so code that recurses deeply behaves the same in a future as in
/// a plain function (tokio's default is 2 MiB; the main thread's is the process's
/// stack limit, 8 MiB on most Linux systems). `IPY_RUSTASYNC_STACK_MB` overrides it.
fn stack_size() -> usize {
    const MIB: usize = 1024 * 1024;
    if let Some(mb) = env_number("IPY_RUSTASYNC_STACK_MB").filter(|&n| n >= 1.0) {
        return (mb as usize).saturating_mul(MIB);
    }
    crate::platform::main_thread_stack()
        .unwrap_or(8 * MIB)
        .clamp(2 * MIB, 256 * MIB)
}

/// Worker count: `IPY_RUSTASYNC_WORKER_THREADS` if set to a positive number, else one
/// per core, so CPU-heavy futures gathered together use the cores in parallel.
fn worker_threads() -> usize {
    env_number("IPY_RUSTASYNC_WORKER_THREADS")
        .filter(|&n| n >= 1.0)
        .map(|n| n as usize)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
}

/// How long a runtime stays up with nothing to do: `IPY_RUSTASYNC_IDLE_SECONDS`
/// (0 keeps it forever), default 10 s.
pub fn idle_period() -> Option<Duration> {
    static PERIOD: OnceLock<Option<Duration>> = OnceLock::new();
    *PERIOD.get_or_init(|| match env_number("IPY_RUSTASYNC_IDLE_SECONDS") {
        Some(s) if s <= 0.0 => None,
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => Some(Duration::from_secs(10)),
    })
}

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite())
}

/// Makes the runtime survive `os.fork()` (what `multiprocessing`'s fork start
/// method and `ProcessPoolExecutor` use): a child gets a copy of this library's
/// state but none of the runtime's threads, so a future spawned there would never
/// run. The child therefore forgets the runtime (leaking it: dropping it would wait
/// for threads that do not exist) and starts a fresh one at first use. The lock is
/// held across the fork by the forking thread, so no other thread is halfway
/// through changing the state when it is copied. Every copy of this crate (one per
/// cell library when cells link it statically, one per process when they share the
/// runtime library) registers its hooks once. Nothing on platforms without `fork`.
pub(crate) fn register_fork_hooks(py: pyo3::Python<'_>) -> PyResult<()> {
    use pyo3::types::{PyAnyMethods, PyCFunction, PyDict, PyDictMethods, PyTuple};
    // Once per copy of this crate: cells that share the runtime library (`dylib`)
    // call this from every module's initialisation, and a second set of hooks would
    // take the lock twice before a fork.
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if REGISTERED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let os = py.import("os")?;
    if !os.hasattr("register_at_fork")? {
        return Ok(());
    }
    let hook = |run: fn()| {
        PyCFunction::new_closure(
            py,
            None,
            None,
            move |_: &pyo3::Bound<'_, PyTuple>, _: Option<&pyo3::Bound<'_, PyDict>>| run(),
        )
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item("before", hook(before_fork)?)?;
    kwargs.set_item("after_in_parent", hook(after_fork_in_parent)?)?;
    kwargs.set_item("after_in_child", hook(after_fork_in_child)?)?;
    os.call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
}

fn before_fork() {
    hold_for_fork(&SHARED, &HELD_FOR_FORK);
}

fn after_fork_in_parent() {
    release_after_fork(&HELD_FOR_FORK);
}

fn after_fork_in_child() {
    // The forking thread is this process's only thread, and it holds the lock.
    let Some(mut shared) = reclaim_in_child(&SHARED, &HELD_FOR_FORK) else {
        return;
    };
    if let Some(runtime) = shared.take() {
        std::mem::forget(runtime);
    }
    // Every cached handle is the old runtime's; the work counted was the parent's;
    // the idle watcher stayed behind.
    GENERATION.fetch_add(1, Ordering::SeqCst);
    ACTIVE.store(0, Ordering::SeqCst);
    WATCHING.store(false, Ordering::SeqCst);
    drop(shared);
}
