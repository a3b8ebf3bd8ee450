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
mod exceptions;
mod panics;
mod runtime;
mod stream;
mod sync;

/// mimalloc, as pydantic-core does for the same reason: the bridge allocates and
/// frees a task, a boxed future and a queue entry for every call, in bursts
/// (`gather` over thousands) and across threads (allocated on the loop thread,
/// finished on a worker), which glibc's malloc serves with consolidation and
/// unlinking that cost about a fifth of a gathered call; mimalloc's thread-local
/// free lists make it a few pointer moves. Only this cell library's Rust
/// allocations use it (each cell is its own library); `local_dynamic_tls` because
/// the library is `dlopen`ed, where the initial-exec TLS model can fail.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
