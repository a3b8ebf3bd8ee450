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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    notify: Notify,
}

/// What a cell function receives to notice that its caller cancelled it.
pub struct CancelHandle(Arc<Shared>);

/// The bridge's side of a [`CancelHandle`].
#[derive(Clone)]
pub struct CancelToken(Arc<Shared>);

impl CancelHandle {
    /// A connected handle (for the function) and token (for the bridge).
    pub fn new() -> (CancelHandle, CancelToken) {
        let shared = Arc::new(Shared::default());
        (CancelHandle(shared.clone()), CancelToken(shared))
    }

    /// Whether the caller has cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Completes once the caller cancels (at once if it already has).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl CancelToken {
    /// Tells the function its caller cancelled.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}
