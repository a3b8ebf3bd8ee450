//! Small synchronisation helpers shared by the bridge's modules.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning.
///
/// The bridge's mutexes guard plain queues whose invariants hold after every
/// single statement, so a panic elsewhere while one was held leaves nothing to
/// repair; refusing the lock would only turn one failure into many.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A value that is only ever reached through `&mut self`, so it is `Sync` even when
/// `T` is not: the same idea as the standard library's unstable `Exclusive`.
pub(crate) struct Exclusive<T>(T);

impl<T> Exclusive<T> {
    pub(crate) fn new(value: T) -> Self {
        Exclusive(value)
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }

    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}

// SAFETY: `Sync` means `&Exclusive<T>` may be shared between threads. No method of
// `Exclusive` takes `&self`, so a shared reference grants no access to the `T`
// inside; every access needs `&mut Exclusive<T>` (or ownership), which the borrow
// checker guarantees is unique. Sending the owner across threads is still governed
// by `T: Send` through the auto-derived `Send` impl.
unsafe impl<T> Sync for Exclusive<T> {}
