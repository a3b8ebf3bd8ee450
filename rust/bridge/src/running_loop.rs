//! The asyncio loop running on this thread, looked up at every start and never
//! cached across loops.
//!
//! On Python 3.11, `asyncio.get_running_loop()` makes a `getpid` system call each
//! time (its check against a loop inherited through `fork`), about 0.2 µs here, a
//! tenth of a gathered call. 3.11 keeps the running loop in a small holder object
//! stored in the thread state's dict, and `_set_running_loop` stores a *new* holder
//! every time a loop starts or stops running on the thread. So the same holder
//! object means the same running loop: this keeps, per thread, the holder last seen
//! (a strong reference, so its address cannot be reused) with the loop
//! `get_running_loop` returned for it, and asks `get_running_loop` again only when
//! the holder changed. Python 3.12 dropped both the holder and the system call, so
//! there (and wherever the holder is not found, as with asyncio's pure-Python
//! fallback) every lookup simply calls `get_running_loop`.
//!
//! Not kept: `get_running_loop`'s answer in a child process forked while a loop ran
//! (it says no loop; this would say the parent's). The runtime's threads do not
//! survive a fork either, so the bridge is not usable in such a child anyway.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::capi::running_loop_holder;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    /// (holder, the loop running while it was current), on 3.11.
    static LAST: RefCell<Option<(Py<PyAny>, Py<PyAny>)>> = const { RefCell::new(None) };
}

/// The loop running on this thread, or `None`.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let holder = running_loop_holder(py)?;
    if let Some(holder) = &holder {
        let memo = LAST.with(|last| {
            last.try_borrow().ok().and_then(|last| {
                last.as_ref()
                    .filter(|(seen, _)| seen.is(holder))
                    .map(|(_, event_loop)| event_loop.clone_ref(py))
            })
        });
        if let Some(event_loop) = memo {
            return Ok(Some(event_loop.into_bound(py)));
        }
    }
    let get = GET_RUNNING_LOOP.import(py, "asyncio", "_get_running_loop")?;
    let found = get.call0()?;
    if found.is_none() {
        return Ok(None);
    }
    if let Some(holder) = holder {
        let entry = Some((holder.unbind(), found.clone().unbind()));
        // The previous entry is dropped after the borrow ends: dropping a Python
        // object can run Python code, which could look up the running loop again.
        let previous = LAST.with(|last| {
            last.try_borrow_mut()
                .ok()
                .map(|mut last| std::mem::replace(&mut *last, entry))
        });
        drop(previous);
    }
    Ok(Some(found))
}
