//! Opt-in cancellation notice, like PyO3's `CancelHandle`.
//!
//! By default a cancelled call (a `task.cancel()`, a `wait_for` timeout, an
//! interrupt, a collected awaitable) drops the Rust future at once: cleanup is what
//! its destructors do. A cell function that needs to *act* on cancellation (tell a
//! server goodbye, flush a file, finish a transaction) takes a [`CancelHandle`]
//! parameter, which Python never sees:
//!
//! ```no_run
//! # async fn work(jobs: u32) -> u32 { jobs }
//! # async fn cleanup() {}
//! pub async fn worker(jobs: u32, cancel: ipy_rustasync::CancelHandle) -> u32 {
//!     tokio::select! {
//!         done = work(jobs) => done,
//!         _ = cancel.cancelled() => { cleanup().await; 0 }
//!     }
//! }
//! ```
//!
//! For such a function cancellation is a request: the Python caller gets its
//! `CancelledError` at once, the future keeps running on the runtime until it
//! returns (its result is discarded), and the handle reports the request.

// The flag and the wake-up are tokio-util's `CancellationToken`, the tokio ecosystem's
// primitive for exactly this (replacing an `AtomicBool` and a `Notify` of our own).
// It costs every cell's first build tokio-util and bytes, under a second of CPU.
use tokio_util::sync::CancellationToken;

/// What a cell function receives to notice that its caller cancelled it.
pub struct CancelHandle(CancellationToken);

/// The bridge's side of a [`CancelHandle`].
#[derive(Clone)]
pub struct CancelToken(CancellationToken);

impl CancelHandle {
    /// A connected handle (for the function) and token (for the bridge).
    pub fn new() -> (CancelHandle, CancelToken) {
        let token = CancellationToken::new();
        (CancelHandle(token.clone()), CancelToken(token))
    }

    /// Whether the caller has cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once the caller cancels (at once if it already has).
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }
}

impl CancelToken {
    /// Tells the function its caller cancelled.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn the_handle_learns_of_a_cancel_made_before_or_while_it_waits() {
        let mut cx = Context::from_waker(Waker::noop());
        let (handle, token) = CancelHandle::new();
        assert!(!handle.is_cancelled());
        let mut waiting = pin!(handle.cancelled());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        token.clone().cancel();
        assert!(handle.is_cancelled());
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(()));
        // Asked again after the fact: ready at once.
        assert_eq!(pin!(handle.cancelled()).poll(&mut cx), Poll::Ready(()));
    }
}
