//! The runtime every `%%rust_async` cell links.
//!
//! A cell is compiled into its own Python extension module. The exporter macro
//! ([`cell`]) turns each `pub async fn` into a Python function returning a
//! [`RustAwaitable`] and each `pub fn` into a plain Python function. This crate is
//! what those generated wrappers call:
//!
//! * [`runtime`]: the lazily started tokio runtime the futures run on;
//! * `awaitable`: the Python coroutine object handed to asyncio;
//! * [`CancelHandle`]: an opt-in way for a function to notice cancellation;
//! * [`AsyncCallable`], [`PyAwaitable`]: Python async code awaited from Rust;
//! * `channel`: how finished futures reach the asyncio loop that awaits them;
//! * `task`: how a started future runs on the runtime (spawned alone or in a burst);
//! * `running_loop`: the asyncio loop running on this thread, looked up cheaply;
//! * [`convert`]: return values and `Result`s to Python objects or exceptions;
//! * `panics`: panics to `ipy_rustasync.RustPanic`, located in the user's cell;
//! * `stream`: a `Stream` returned by a cell function, as a Python async iterator.
//!
//! The crate also re-exports the versions of `pyo3`, `tokio` and `futures` the cells
//! are built against.

pub use futures;
pub use ipy_rustasync_macros::cell;
pub use pyo3;
pub use tokio;

mod awaitable;
mod callback;
mod cancel;
mod channel;
pub mod convert;
mod done;
mod exceptions;
mod panics;
mod running_loop;
mod runtime;
mod stream;
mod sync;
mod task;

pub use awaitable::RustAwaitable;
pub use callback::{AsyncCallable, PyAwaitable};
pub use cancel::CancelHandle;
pub use runtime::runtime;
pub use stream::RustStream;

/// What the generated glue uses; not a stable API for cell authors.
#[doc(hidden)]
pub mod __private {
    pub use crate::awaitable::{new_awaitable, new_cancellable_awaitable};
    pub use crate::convert::{probe, DisplayErrKind, NoneValue, Output, PlainKind, PyErrKind};
    pub use crate::panics::{call_sync, init_module};
    pub use crate::stream::new_stream;
}
