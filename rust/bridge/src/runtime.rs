//! The tokio runtime a cell's futures run on, started on demand and stopped when idle.
//!
//! Every cell is its own shared library with its own copy of tokio, so runtimes
//! cannot be shared between cells: a runtime from one copy cannot drive futures that
//! use another copy's timers. Kept running, 20 loaded cells would hold 20 × cores
//! parked worker threads. So each cell's runtime starts at its first use and shuts
//! down after [`idle_period`] with nothing to do (no bridge call in flight and no
//! task alive, including tasks the cell spawned itself); the next call starts a new
//! one, which takes well under a millisecond.
//!
//! Work reaches the runtime only through an [`Active`] guard, taken under the lock
//! the idle check takes, so a runtime is never shut down between being handed out
//! and being given work.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use crate::sync::lock;

struct Shared {
    runtime: Option<Arc<Runtime>>,
    /// When the last piece of work ended (None: never, or work is in flight).
    idle_since: Option<Instant>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    runtime: None,
    idle_since: None,
});
/// Bridge calls in flight: spawned futures, inline polls, blocking runs.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether an idle watcher thread is running.
static WATCHING: AtomicBool = AtomicBool::new(false);

/// A piece of work on the runtime; while any exists the runtime stays up.
pub struct Active {
    runtime: Arc<Runtime>,
}

impl Active {
    /// Starts the runtime if needed and counts one piece of work on it.
    pub fn new() -> PyResult<Self> {
        let mut shared = lock(&SHARED);
        let runtime = match &shared.runtime {
            Some(runtime) => runtime.clone(),
            None => {
                let runtime = Arc::new(build()?);
                shared.runtime = Some(runtime.clone());
                runtime
            }
        };
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        shared.idle_since = None;
        Ok(Active { runtime })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Spawns `future`; the runtime counts as busy until it ends or is aborted.
    pub fn spawn<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.runtime.handle().clone();
        handle.spawn(async move {
            let _busy = self;
            future.await
        })
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            lock(&SHARED).idle_since = Some(Instant::now());
            watch_idle();
        }
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

/// Starts the watcher thread that shuts the runtime down once it has been idle for
/// the idle period, unless one is already watching. The watcher exits when it has
/// shut the runtime down or when work resumes.
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
            let mut wait = period;
            loop {
                std::thread::sleep(wait);
                let mut shared = lock(&SHARED);
                let Some(since) = shared.idle_since else {
                    // Work resumed; its end starts a new watcher.
                    WATCHING.store(false, Ordering::SeqCst);
                    return;
                };
                // Work came and went since this watcher started: wake when the
                // period since its end is up, not a whole period from now.
                let idle_for = since.elapsed();
                if idle_for < period {
                    wait = period - idle_for;
                    continue;
                }
                let idle = ACTIVE.load(Ordering::SeqCst) == 0
                    && shared.runtime.as_ref().is_none_or(|rt| {
                        // Only our own reference (a guard being dropped or a caller of
                        // `runtime()` may still hold one) and no task alive, including
                        // tasks the cell spawned itself.
                        Arc::strong_count(rt) == 1 && rt.metrics().num_alive_tasks() == 0
                    });
                if idle {
                    if let Some(runtime) = shared.runtime.take().and_then(Arc::into_inner) {
                        runtime.shutdown_background();
                    }
                    WATCHING.store(false, Ordering::SeqCst);
                    drop(shared);
                    // The loops' wake-up sockets go with the runtime: an edited
                    // cell's library is never used again, and would keep them open.
                    crate::channel::retire_all();
                    return;
                }
                // Still in use: look again a period later.
                shared.idle_since = Some(Instant::now());
                wait = period;
            }
        });
    if spawned.is_err() {
        WATCHING.store(false, Ordering::SeqCst);
    }
}

/// The runtime of this cell library, for cell code that wants it directly
/// (`ipy_rustasync::runtime()?.spawn(...)`); started if needed. While the returned
/// `Arc` is held, the runtime is not shut down when idle.
pub fn runtime() -> PyResult<Arc<Runtime>> {
    Ok(Active::new()?.runtime.clone())
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
    main_thread_stack()
        .unwrap_or(8 * MIB)
        .clamp(2 * MIB, 256 * MIB)
}

/// The main thread's stack size: the soft `RLIMIT_STACK` (unlimited or unknown:
/// `None`). The one platform-specific lookup of the runtime.
#[cfg(unix)]
fn main_thread_stack() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the valid, exclusively borrowed
    // `limit` and has no other effect.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).ok())
        .flatten()
}

/// Windows gives the main thread 1 MiB unless the executable says otherwise; 8 MiB
/// is what the runtime's threads get there.
#[cfg(not(unix))]
fn main_thread_stack() -> Option<usize> {
    None
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
