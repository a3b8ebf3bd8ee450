//! A cell function's call before anything awaits it.

use pyo3::prelude::*;

use crate::cancel::CancelToken;
use crate::convert::Output;
use crate::spawn::BoxFuture;

/// What a call runs: its future, or (for an async `#[pymethods]` method) the
/// function that makes it when the call starts, on the starting thread, where it
/// can borrow the object (see `receiver.rs`).
pub(crate) enum Body {
    Ready(BoxFuture),
    Deferred(Box<dyn FnOnce(Python<'_>) -> PyResult<BoxFuture> + Send>),
}

/// A cell function's call, not started yet: what its coroutine holds until something
/// awaits it.
pub struct Call {
    pub(crate) name: &'static str,
    pub(crate) body: Body,
    /// `#[rust_async(inline)]`: the first poll happens on the starting thread.
    pub(crate) inline: bool,
    /// For a function taking a `CancelHandle`: cancelling signals it instead of
    /// dropping the future.
    pub(crate) cancel_token: Option<CancelToken>,
    /// For a function taking an `AsyncCallable` or `PyAwaitable`: the future runs
    /// knowing its caller's loop and context (see `callback.rs`).
    pub(crate) with_caller: bool,
}

/// A call being started: its future made.
pub(crate) struct Started {
    pub(crate) name: &'static str,
    pub(crate) future: BoxFuture,
    pub(crate) inline: bool,
    pub(crate) cancel_token: Option<CancelToken>,
    pub(crate) with_caller: bool,
}

impl Call {
    /// The call with its future made. A deferred body that fails (the object is
    /// borrowed elsewhere) gives a future that fails at once with its error, so the
    /// error is raised where the call is awaited, or kept by its task, as asyncio
    /// does with an exception raised by a coroutine's first step.
    pub(crate) fn start(self, py: Python<'_>) -> Started {
        let future = match self.body {
            Body::Ready(future) => future,
            Body::Deferred(make) => make(py).unwrap_or_else(|err| {
                Box::pin(async move {
                    let output: Output = Box::new(move |_: Python<'_>| Err(err));
                    output
                })
            }),
        };
        Started {
            name: self.name,
            future,
            inline: self.inline,
            cancel_token: self.cancel_token,
            with_caller: self.with_caller,
        }
    }
}
