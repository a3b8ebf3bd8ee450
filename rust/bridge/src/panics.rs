//! Panics become `ipy_rustasync.RustPanic`, located on the line of the user's cell.
//!
//! Every exported call (each poll of an awaited future, each sync call) runs inside
//! [`catching`]. A panic hook, installed once per cell library, records where the
//! panic happened; inside `catching` it stays quiet (the user gets the exception),
//! elsewhere (a task the cell spawned itself and never awaited) it prints one line
//! instead of Rust's default message and backtrace.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::task::{Context, Poll};

use pyo3::prelude::*;

use crate::exceptions::rust_panic;

/// Line of `src/lib.rs` just before the cell's first line (set at module init).
static CELL_LINE_OFFSET: AtomicU32 = AtomicU32::new(0);
static INSTALL_HOOK: Once = Once::new();

thread_local! {
    /// How many `catching` scopes are active on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// What the hook saw of the last panic on this thread, for `catching` to pick up.
    static LAST_PANIC: Cell<Option<PanicReport>> = const { Cell::new(None) };
}

/// A panic, reduced to what the user needs: the message and the cell line.
#[derive(Clone, Debug)]
pub(crate) struct PanicReport {
    message: String,
    cell_line: Option<u32>,
    column: Option<u32>,
    elsewhere: Option<String>,
}

impl PanicReport {
    fn from_payload(payload: &(dyn Any + Send)) -> Self {
        PanicReport {
            message: payload_message(payload),
            cell_line: None,
            column: None,
            elsewhere: None,
        }
    }

    fn from_hook(info: &PanicHookInfo<'_>) -> Self {
        let mut report = Self::from_payload(info.payload());
        if let Some(location) = info.location() {
            let offset = CELL_LINE_OFFSET.load(Ordering::Relaxed);
            if location.file().ends_with("lib.rs") && location.line() > offset && offset > 0 {
                report.cell_line = Some(location.line() - offset);
                report.column = Some(location.column());
            } else {
                report.elsewhere = Some(format!("{}:{}", location.file(), location.line()));
            }
        }
        report
    }

    /// One sentence for the exception: where, then Rust's own message.
    pub(crate) fn describe(&self) -> String {
        match (self.cell_line, self.column, &self.elsewhere) {
            (Some(line), Some(col), _) => {
                format!(
                    "Rust panicked at cell line {line}, column {col}: {}",
                    self.message
                )
            }
            (_, _, Some(place)) => format!("Rust panicked at {place}: {}", self.message),
            _ => format!("Rust panicked: {}", self.message),
        }
    }

    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        rust_panic(py, self.describe(), &self.message, self.cell_line)
    }
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic with a non-string payload)".to_owned()
    }
}

fn install_hook() {
    INSTALL_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let report = PanicReport::from_hook(info);
            if CATCHING.with(Cell::get) > 0 {
                LAST_PANIC.with(|last| last.replace(Some(report)));
            } else {
                let thread = std::thread::current();
                let name = thread.name().unwrap_or("unnamed");
                eprintln!(
                    "ipy-rustasync: {} (thread '{name}', outside any awaited call)",
                    report.describe()
                );
            }
        }));
    });
}

/// Runs `f`, turning a panic into a [`PanicReport`].
pub(crate) fn catching<R>(f: impl FnOnce() -> R) -> Result<R, PanicReport> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| {
        LAST_PANIC
            .with(|last| last.take())
            .unwrap_or_else(|| PanicReport::from_payload(payload.as_ref()))
    })
}

/// Runs the bridge's own code called from Python: a panic (a bug of ours) raises
/// `RustPanic` rather than unwinding into CPython. Unlike [`catching`] it lets the
/// hook print the panic, which is what a bug report needs.
pub(crate) fn guard<R>(py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(PanicReport::from_payload(payload.as_ref()).into_pyerr(py)))
}

/// Holds a future and runs each of its polls inside [`catching`], so that a panic
/// ends it with the panic's report instead of unwinding through the runtime.
pub(crate) struct PanicCatcher<F: ?Sized> {
    inner: Pin<Box<F>>,
}

impl<F: Future + ?Sized> PanicCatcher<F> {
    pub(crate) fn new(inner: Pin<Box<F>>) -> Self {
        PanicCatcher { inner }
    }
}

impl<F: Future + ?Sized> Future for PanicCatcher<F> {
    type Output = Result<F::Output, PanicReport>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catching(|| inner.poll(cx)) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(report) => Poll::Ready(Err(report)),
        }
    }
}

/// Calls a cell's sync function; a panic raises `RustPanic` instead of PyO3's
/// `PanicException` (a `BaseException` that `except Exception` would not catch).
///
/// Not generic, so that it is compiled once, here, optimized: a cell's wrapper
/// passes its call as a `&mut dyn FnMut` (which it calls once), where a generic
/// closure parameter would instantiate this, the runtime's entry and the panic
/// catching again, unoptimized, for each function of the cell (most of what a
/// `pub fn` cost to compile; see `benchmarks/glue_cost.py`).
pub fn call_sync(
    py: Python<'_>,
    f: &mut dyn FnMut() -> PyResult<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    // Inside the runtime's context, so `tokio::spawn` and tokio's timers work in a
    // plain `pub fn` as they do in an async one.
    crate::runtime::in_runtime(|| catching(f)).unwrap_or_else(|report| Err(report.into_pyerr(py)))
}

/// Records where the cell starts in `src/lib.rs` (for panic locations) and installs
/// the panic hook; called once from the module's initialisation.
pub(crate) fn init(cell_line_offset: u32) {
    CELL_LINE_OFFSET.store(cell_line_offset, Ordering::Relaxed);
    install_hook();
}
