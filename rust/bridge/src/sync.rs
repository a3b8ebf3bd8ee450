//! Small synchronisation helpers shared by the bridge's modules.

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::thread::LocalKey;

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

/// Where the thread calling `os.fork()` keeps a lock from just before the fork to
/// just after it, so the child gets the guarded state with no thread halfway through
/// changing it (the runtime's handle, the output queue).
pub(crate) type ForkSlot<T> = RefCell<Option<MutexGuard<'static, T>>>;

/// Before the fork: takes `mutex` and keeps it in this thread's `slot`.
pub(crate) fn hold_for_fork<T>(mutex: &'static Mutex<T>, slot: &'static LocalKey<ForkSlot<T>>) {
    let guard = lock(mutex);
    let previous = slot.with(|held| {
        held.try_borrow_mut()
            .ok()
            .and_then(|mut held| held.replace(guard))
    });
    drop(previous);
}

/// After the fork, in the parent: lets the lock go.
pub(crate) fn release_after_fork<T>(slot: &'static LocalKey<ForkSlot<T>>) {
    drop(take_held(slot));
}

/// After the fork, in the child (whose only thread is the forking one): the lock it
/// holds, or the lock if it is free; `None` if a thread that did not come along held
/// it, when nothing can be done safely.
pub(crate) fn reclaim_in_child<T>(
    mutex: &'static Mutex<T>,
    slot: &'static LocalKey<ForkSlot<T>>,
) -> Option<MutexGuard<'static, T>> {
    take_held(slot).or_else(|| match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    })
}

fn take_held<T>(slot: &'static LocalKey<ForkSlot<T>>) -> Option<MutexGuard<'static, T>> {
    slot.with(|held| held.try_borrow_mut().ok().and_then(|mut held| held.take()))
}
