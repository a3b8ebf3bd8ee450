//! The tokio runtime a cell's futures run on.

use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Worker count: `IPY_RUSTASYNC_WORKER_THREADS` if set to a positive number, else one
/// per core, so CPU-heavy futures gathered together use the cores in parallel.
fn worker_threads() -> usize {
    std::env::var("IPY_RUSTASYNC_WORKER_THREADS")
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
}

/// The multi-thread tokio runtime of this cell library, started on first use.
///
/// It is started lazily so that loading a cell that is never awaited costs no
/// threads. It lives until the process exits: futures handed to Python may be
/// awaited at any later time, and a static runtime is never dropped at exit, which
/// avoids tearing down worker threads while the interpreter finalises.
pub fn runtime() -> PyResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(worker_threads())
                .thread_name("ipy-rustasync-worker")
                .enable_all()
                .build()
                .map_err(|err| format!("could not start the tokio runtime: {err}"))
        })
        .as_ref()
        .map_err(|msg| PyRuntimeError::new_err(msg.clone()))
}
