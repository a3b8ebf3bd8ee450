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
