//! A cell function's call before anything awaits it.

use crate::cancel::CancelToken;
use crate::spawn::BoxFuture;

/// A cell function's call, not started yet: what its coroutine holds until something
/// awaits it.
pub struct Call {
    pub(crate) name: &'static str,
    pub(crate) future: BoxFuture,
    /// `#[rust_async(inline)]`: the first poll happens on the starting thread.
    pub(crate) inline: bool,
    /// For a function taking a `CancelHandle`: cancelling signals it instead of
    /// dropping the future.
    pub(crate) cancel_token: Option<CancelToken>,
    /// For a function taking an `AsyncCallable` or `PyAwaitable`: the future runs
    /// knowing its caller's loop and context (see `callback.rs`).
    pub(crate) with_caller: bool,
}
