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
use std::sync::Once;
use std::task::{Context, Poll};

use pyo3::prelude::*;

use crate::exceptions::rust_panic;

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
            match cell_file_offset(location.file()) {
                Some(offset) if location.line() > offset => {
                    report.cell_line = Some(location.line() - offset);
                    report.column = Some(location.column());
                }
                _ => report.elsewhere = Some(format!("{}:{}", location.file(), location.line())),
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

/// A cell crate's root file, by how many lines it holds above the cell's first line
/// beyond the editor's (`crate.CELL_FILES` on the Python side, which names the file so):
/// `src/lib.rs` numbers lines as the editor does (a `%%rust_async` cell), and
/// `src/rust_module.rs` holds `rust_module` source one line down. One copy of the bridge
/// serves every cell of a process (the shared runtime), so the offset is read from the
/// panic's own location, not kept per module. `None` for any other file (a dependency's
/// path is absolute, or under the registry).
fn cell_file_offset(file: &str) -> Option<u32> {
    match file {
        "src/lib.rs" | "src\\lib.rs" => Some(0),
        "src/rust_module.rs" | "src\\rust_module.rs" => Some(1),
        _ => None,
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

/// Installs the hook, once per copy of this crate. The hook belongs to libstd, and
/// when cells link the shared runtime library libstd is one shared library, so
/// another copy of this crate (a second runtime library: a release build beside a
/// debug one, a cell with extra crates) may have installed one already. Each copy's
/// hook therefore handles a panic caught by its own [`catching`] and hands any other
/// to the hook it replaced; the first copy's hook, whose predecessor is Rust's
/// default, prints the one-line message instead.
fn install_hook(py: Python<'_>) {
    INSTALL_HOOK.call_once(|| {
        let first = first_hook_of_this_libstd(py);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) > 0 {
                let report = PanicReport::from_hook(info);
                LAST_PANIC.with(|last| last.replace(Some(report)));
            } else if !first {
                previous(info);
            } else {
                let report = PanicReport::from_hook(info);
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

/// Whether no copy of this crate has installed a panic hook into this libstd in this
/// process yet, marking that one has. The mark is a set on the Python package's
/// errors module (state every copy shares, under the GIL; a forked child inherits
/// it with the hook) holding the address of one of this libstd's functions, so a
/// cell that links its own libstd starts unmarked.
fn first_hook_of_this_libstd(py: Python<'_>) -> bool {
    use pyo3::types::PySet;
    const HOLDER: &str = "ipy_rustasync._base.errors";
    const MARKS: &str = "_panic_hooks_installed";
    let this = std::panic::take_hook as fn() -> _ as usize;
    let marked = || -> PyResult<bool> {
        let module = py.import(HOLDER)?;
        let marks = match module.getattr(MARKS) {
            Ok(marks) => marks.cast_into::<PySet>()?,
            Err(_) => {
                let marks = PySet::empty(py)?;
                module.setattr(MARKS, &marks)?;
                marks
            }
        };
        let seen = marks.contains(this)?;
        marks.add(this)?;
        Ok(seen)
    };
    !marked().unwrap_or(false)
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
/// What threads it waited on printed is written before it returns (`output.rs`).
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
    let result = crate::runtime::in_runtime(|| catching(f))
        .unwrap_or_else(|report| Err(report.into_pyerr(py)));
    crate::output::drain(py);
    result
}

/// A panic in the body of one of PyO3's own sync functions or methods in a cell.
pub struct Panicked(PanicReport);

/// Runs a PyO3 sync body (`#[pyfunction] fn`, a `#[pymethods]` `fn`) in the runtime's
/// context, catching a panic: the generated code then raises `RustPanic` where the body
/// returns a `PyResult` ([`PanicAsErr`]) and lets PyO3 make its `PanicException`
/// otherwise ([`PanicResume`], with our message and cell line).
///
/// Not generic, as [`call_sync`]: the generated code passes the body as a
/// `&mut dyn FnMut` that runs it once and keeps its value, so the runtime's entry and
/// the panic catching are compiled once here rather than once per function of a cell.
pub fn pyo3_body(body: &mut dyn FnMut()) -> Result<(), Panicked> {
    let result = crate::runtime::in_runtime(|| catching(body)).map_err(Panicked);
    if crate::output::pending() {
        Python::attach(crate::output::drain);
    }
    result
}

/// What a PyO3 body returns, for picking what its panic becomes (autoref
/// specialization, as `convert::probe`): `(&&PanicTarget::of(&value)).on_panic(p)`.
pub struct PanicTarget<R>(std::marker::PhantomData<R>);

impl<R> PanicTarget<R> {
    pub fn of(_value: &Option<R>) -> Self {
        PanicTarget(std::marker::PhantomData)
    }
}

/// A body returning `PyResult<T>`: the panic is raised as `RustPanic`.
pub trait PanicAsErr<T> {
    fn on_panic(&self, panicked: Panicked) -> PyResult<T>;
}

impl<T> PanicAsErr<T> for &PanicTarget<PyResult<T>> {
    fn on_panic(&self, panicked: Panicked) -> PyResult<T> {
        Err(Python::attach(|py| panicked.0.into_pyerr(py)))
    }
}

/// Any other body: the panic goes on to PyO3, which raises `PanicException` with its
/// message (what the body's type leaves no other way to report).
pub trait PanicResume<R> {
    fn on_panic(&self, panicked: Panicked) -> R;
}

impl<R> PanicResume<R> for PanicTarget<R> {
    fn on_panic(&self, panicked: Panicked) -> R {
        std::panic::resume_unwind(Box::new(panicked.0.describe()))
    }
}

/// Installs the panic hook; called from each module's initialisation.
pub(crate) fn init(py: Python<'_>) {
    install_hook(py);
}

#[cfg(test)]
mod tests {
    use super::cell_file_offset;

    #[test]
    fn only_the_cell_crates_own_file_holds_cell_lines() {
        assert_eq!(cell_file_offset("src/lib.rs"), Some(0));
        assert_eq!(cell_file_offset("src\\lib.rs"), Some(0));
        assert_eq!(cell_file_offset("src/rust_module.rs"), Some(1));
        assert_eq!(cell_file_offset("src\\rust_module.rs"), Some(1));
        for other in [
            "/home/u/.cargo/registry/src/index.crates.io-1/tokio-1.54.1/src/lib.rs",
            "/opt/ipy_rustasync/_rust/bridge/src/lib.rs",
            "src/main.rs",
            "lib.rs",
        ] {
            assert_eq!(cell_file_offset(other), None, "{other}");
        }
    }
}
