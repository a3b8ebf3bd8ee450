//! Reference bridges for `benchmarks/bridge.py`.
//!
//! * `par_*`: pyo3-async-runtimes' `tokio::future_into_py`, which spawns the future on
//!   its global tokio runtime and returns an `asyncio.Future` bound to the running loop
//!   (so these must be called inside a running loop).
//! * `coro_*`: PyO3's experimental `#[pyfunction] async fn`, a `Coroutine` polled on the
//!   loop thread with no tokio context; the sleeping one spawns its timer on a static
//!   multi-thread runtime and awaits the `JoinHandle`.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// pyo3-async-runtimes: a future ready at once.
#[pyfunction]
fn par_ready(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async { Ok(1u64) })
}

/// pyo3-async-runtimes: a tokio sleep of `ms` milliseconds (its runtime has the reactor).
#[pyfunction]
fn par_sleep(py: Python<'_>, ms: u64) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(1u64)
    })
}

/// PyO3 coroutine: a future ready at once.
#[pyfunction]
async fn coro_ready() -> u64 {
    1
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// PyO3 coroutine: a tokio sleep of `ms` milliseconds, spawned on a runtime because
/// the coroutine itself is polled without a tokio context.
#[pyfunction]
async fn coro_sleep(ms: u64) -> PyResult<u64> {
    runtime()
        .spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            1u64
        })
        .await
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

#[pymodule]
fn ira_bench_refs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(par_ready, m)?)?;
    m.add_function(wrap_pyfunction!(par_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(coro_ready, m)?)?;
    m.add_function(wrap_pyfunction!(coro_sleep, m)?)?;
    Ok(())
}
