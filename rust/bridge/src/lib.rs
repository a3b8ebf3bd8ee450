//! The runtime every `%%rust_async` cell links.
//!
//! A cell is compiled into its own Python extension module. The exporter macro
//! ([`cell`]) turns each `pub async fn` into a Python coroutine function and each
//! `pub fn` into a plain Python function. This crate is what those generated
//! wrappers call. Its modules, from Python's side inwards:
//!
//! * `function`: the coroutine function a `pub async fn` becomes;
//! * `coroutine`: the coroutine calling it returns;
//! * `task`, `factory`: a coroutine as an asyncio task, and the loop's task factory
//!   that makes one;
//! * `future`: a started Rust future as an asyncio future (what a coroutine waits on,
//!   and a task's base);
//! * `call`: a call of a cell function before anything awaits it;
//! * `blocking`: running a coroutine from synchronous code;
//! * `channel`: how started futures reach the runtime and finished ones the loop;
//! * `spawn`: how a started future runs (inline poll, spawned alone or in a burst);
//! * `callbacks`: a future's done callbacks;
//! * `running_loop`: the asyncio loop running on this thread, looked up cheaply;
//! * [`runtime`]: the lazily started tokio runtime the futures run on;
//! * [`convert`]: return values and `Result`s to Python objects or exceptions;
//! * `panics`: panics to `ipy_rustasync.RustPanic`, located in the user's cell;
//! * `output`: what the cell's `print!`, `println!`, `eprint!`, `eprintln!` and
//!   `dbg!` write, to `sys.stdout` / `sys.stderr` in the order it was written;
//! * `callback`: Python async code awaited from Rust ([`AsyncCallable`],
//!   [`PyAwaitable`]); [`CancelHandle`]: an opt-in way to notice cancellation;
//! * `stream`: a `Stream` returned by a cell function, as a Python async iterator;
//! * `capi`: every `unsafe` call into CPython, and every reliance on its internals;
//! * `platform`: the calls into the operating system (stack size, a cheap clock).
//!
//! The crate also re-exports the versions of `pyo3`, `tokio` and `futures` the cells
//! are built against.
//!
//! The examples in these docs are cell functions, and `cargo test --doc` (run by
//! `make lint`) compiles each against this crate. They are `no_run`: PyO3's
//! `extension-module` feature leaves libpython unlinked (the interpreter that loads
//! a cell provides it), so a doctest executable could not link, and `no_run` stops
//! before linking.

pub use futures;
pub use ipy_rustasync_macros::cell;
pub use pyo3;
pub use tokio;

mod blocking;
mod call;
mod callback;
mod callbacks;
mod cancel;
mod capi;
mod channel;
pub mod convert;
mod coroutine;
mod exceptions;
mod factory;
mod function;
mod future;
mod output;
mod panics;
mod platform;
mod receiver;
mod running_loop;
mod runtime;
mod spawn;
mod stream;
mod sync;
mod task;

pub use callback::{AsyncCallable, PyAwaitable};
pub use cancel::CancelHandle;
pub use coroutine::RustCoroutine;
pub use function::RustAsyncFunction;
pub use future::RustFuture;
pub use runtime::runtime;
pub use stream::RustStream;
pub use task::RustTask;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Called from the generated `#[pymodule]` before anything else. (A panic's cell line
/// needs no setting here: the cell's file name says how its lines relate to the
/// editor's, `panics::cell_file_offset`.)
pub fn init_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    panics::init(py);
    output::init(py)?;
    coroutine::init(py);
    future::init(py);
    task::init(py);
    channel::on_new_loop(factory::install);
    runtime::on_idle_shutdown(channel::retire_all);
    runtime::register_fork_hooks(py)?;
    Ok(())
}

/// What the generated glue uses; not a stable API for cell authors.
#[doc(hidden)]
pub mod __private {
    pub use crate::convert::{
        probe, probe_output, DisplayErrKind, IntoOutput, NoneTag, NoneValue, Output, PlainKind,
        PyErrKind, UnitOk,
    };
    pub use crate::coroutine::{new_coroutine, new_deferred_coroutine};
    pub use crate::function::add_async_function;
    pub use crate::init_module;
    pub use crate::output::{print, Stream};
    pub use crate::panics::{call_sync, pyo3_body, PanicAsErr, PanicResume, PanicTarget, Panicked};
    pub use crate::receiver::{exclusive, shared, Exclusive, Shared};
    pub use crate::stream::new_stream;
}
