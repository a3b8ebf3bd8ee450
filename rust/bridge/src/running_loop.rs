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
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static HOLDER_KEY: PyOnceLock<Py<PyString>> = PyOnceLock::new();

thread_local! {
    /// (holder, the loop running while it was current), on 3.11.
    static LAST: RefCell<Option<(Py<PyAny>, Py<PyAny>)>> = const { RefCell::new(None) };
}

/// The loop running on this thread, or `None`.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    // `version_info` formats the version string on every call: ask once.
    static HOLDER_IN_DICT: OnceLock<bool> = OnceLock::new();
    let holder = if *HOLDER_IN_DICT.get_or_init(|| py.version_info() < (3, 12)) {
        current_holder(py)?
    } else {
        None
    };
    if let Some(holder) = &holder {
        let memo = LAST.with(|last| {
            last.borrow()
                .as_ref()
                .filter(|(seen, _)| seen.is(holder))
                .map(|(_, event_loop)| event_loop.clone_ref(py))
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
        LAST.with(|last| *last.borrow_mut() = Some((holder.unbind(), found.clone().unbind())));
    }
    Ok(Some(found))
}

/// The running-loop holder in this thread's state dict (3.11), if there is one.
fn current_holder(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let key = HOLDER_KEY.get_or_init(py, || {
        PyString::intern(py, "__asyncio_running_event_loop__").unbind()
    });
    // SAFETY: the GIL is held (`py`). `PyThreadState_GetDict` returns a borrowed
    // reference to this thread's state dict, or NULL without an exception when
    // there is none; the reference is owned by the thread state, which outlives
    // this call, and is only read here through a new reference taken by
    // `from_borrowed_ptr_or_opt`.
    let dict = unsafe { Bound::from_borrowed_ptr_or_opt(py, pyo3::ffi::PyThreadState_GetDict()) };
    let Some(dict) = dict else {
        return Ok(None);
    };
    let dict = dict.cast_into::<pyo3::types::PyDict>()?;
    dict.get_item(key.bind(py))
}
