//! Running a Rust coroutine to the end from synchronous code: what
//! `ipy_rustasync.run(f(...))` does, inside or outside a running loop.
//!
//! The future is spawned on the runtime and the calling thread waits for it on a
//! plain channel with the GIL released, waking every [`SIGNAL_CHECK`] to let Ctrl-C
//! (or a kernel interrupt) in. Neither the wait nor the timeout needs the runtime:
//! they fire on time even when every worker is busy (a worker blocked in
//! `std::thread::sleep`, a future spinning), where a tokio timer would wait for a
//! free worker to notice it.

use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError};
use pyo3::prelude::*;

use crate::call::{Call, Started};
use crate::convert::settle;
use crate::panics::PanicCatcher;
use crate::runtime::Active;

/// How often a blocked caller wakes to let signals (Ctrl-C) in.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// Runs `call` to its end, or until `timeout` (then `TimeoutError`) or a signal
/// handler raises (then that exception); either way the Rust future is dropped (or
/// its `CancelHandle` signalled).
pub(crate) fn run(py: Python<'_>, call: Call, timeout: Option<Duration>) -> PyResult<Py<PyAny>> {
    let Started {
        name,
        future,
        cancel_token,
        ..
    } = call.start(py);
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(format!(
            "ipy_rustasync.run({name}(...)) was called on one of the Rust runtime's own threads, \
             where blocking would stall it; await the call instead"
        )));
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let (tx, mut rx) = sync_channel(1);
    let active = Active::new()?;
    let guarded = PanicCatcher::new(future);
    let handle = active.spawn(async move {
        let _ = tx.send(guarded.await);
    });
    let stop = || match &cancel_token {
        Some(token) => token.cancel(),
        None => handle.abort(),
    };
    loop {
        let slice = deadline.map_or(SIGNAL_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
                .min(SIGNAL_CHECK)
        });
        // The detached closure must be `Send`; the receiver is `Send` but not `Sync`,
        // so it gets the receiver by `&mut` (`Send` for a `Send` type), not by `&`
        // (which is all a `sync_wrapper::SyncWrapper` would buy, as a dependency).
        let receiver = &mut rx;
        let received = py.detach(move || receiver.recv_timeout(slice));
        // What the future printed comes before its result (or the exception).
        crate::output::drain(py);
        match received {
            Ok(outcome) => return settle(py, outcome),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(format!(
                    "{name}() stopped without a result"
                )))
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Err(interrupt) = py.check_signals() {
            stop();
            return Err(interrupt);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop();
            let seconds = timeout.unwrap_or_default().as_secs_f64();
            return Err(PyTimeoutError::new_err(format!(
                "{name}() did not finish within {seconds} s"
            )));
        }
    }
}
