//! A future's done callbacks: kept as `add_done_callback` collects them, run when it
//! finishes.
//!
//! There is almost always exactly one (the awaiting Task's wake-up, or `gather`'s
//! bookkeeping), so the first is kept inline and only further ones go into a
//! vector: a plain `Vec` would allocate and free once per call, which in a burst
//! of thousands (a `gather`) shows up in the profile.
//!
//! Nothing here holds a lock while Python code runs: the owner takes the callbacks
//! out of its state, releases it, then runs or schedules them.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};

use crate::capi::{run_in_context, RanIn};

/// A callback and the `contextvars` context to run it in.
pub(crate) type Callback = (Py<PyAny>, Py<PyAny>);

/// In the order they were added. `first` is empty only when `rest` is too.
#[derive(Default)]
pub(crate) struct DoneCallbacks {
    first: Option<Callback>,
    rest: Vec<Callback>,
}

impl DoneCallbacks {
    pub(crate) fn push(&mut self, callback: Callback) {
        if self.first.is_none() {
            self.first = Some(callback);
        } else {
            self.rest.push(callback);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Callback> {
        self.first.iter().chain(self.rest.iter())
    }

    /// New references to every entry, for comparing outside the owner's lock.
    pub(crate) fn snapshot(&self, py: Python<'_>) -> Vec<Callback> {
        self.iter()
            .map(|(callback, context)| (callback.clone_ref(py), context.clone_ref(py)))
            .collect()
    }

    /// Drops the entries that are (by identity) among `matched`; returns how many,
    /// and what was dropped, for the caller to release outside its lock.
    pub(crate) fn remove_matched(&mut self, matched: &[Callback]) -> (usize, Vec<Callback>) {
        let is_matched = |(callback, context): &Callback| {
            matched
                .iter()
                .any(|(c, x)| c.as_ptr() == callback.as_ptr() && x.as_ptr() == context.as_ptr())
        };
        let all: Vec<Callback> = std::mem::take(self).into_iter().collect();
        let mut removed = Vec::new();
        for entry in all {
            if is_matched(&entry) {
                removed.push(entry);
            } else {
                self.push(entry);
            }
        }
        (removed.len(), removed)
    }
}

impl IntoIterator for DoneCallbacks {
    type Item = Callback;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Callback>, std::vec::IntoIter<Callback>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// A batch of done callbacks taken out of a finished future's state, with the loop
/// to run them on; `None` when there is nothing to run.
pub(crate) type CallbackBatch = Option<(Py<PyAny>, DoneCallbacks)>;

/// `loop.call_soon(callback, future, context=ctx)` for each, as `asyncio.Future`
/// does when it finishes. For everything a user calls (`cancel`, adding a callback
/// to a finished future): their callbacks must not run inside the caller.
pub(crate) fn schedule(future: &Bound<'_, PyAny>, batch: CallbackBatch) {
    let Some((event_loop, callbacks)) = batch else {
        return;
    };
    schedule_each(future, event_loop.bind(future.py()), callbacks.into_iter());
}

fn schedule_each(
    future: &Bound<'_, PyAny>,
    event_loop: &Bound<'_, PyAny>,
    callbacks: impl Iterator<Item = Callback>,
) {
    let py = future.py();
    let call_soon = match event_loop.getattr(pyo3::intern!(py, "call_soon")) {
        Ok(call_soon) => call_soon,
        Err(err) => return err.write_unraisable(py, Some(future)),
    };
    for (callback, context) in callbacks {
        let scheduled = [(pyo3::intern!(py, "context"), context)]
            .into_py_dict(py)
            .and_then(|kwargs| call_soon.call((callback, future), Some(&kwargs)));
        if let Err(err) = scheduled {
            err.write_unraisable(py, Some(future));
        }
    }
}

/// Runs a batch of done callbacks now, each in its own context, as the loop would have run
/// them had they been scheduled: an exception goes to the loop's exception handler,
/// except `KeyboardInterrupt` and `SystemExit`, which stop the loop (the callbacks
/// not run yet are scheduled, so none is lost, and the error is returned for the
/// caller, itself a loop callback, to raise). Only for the channel's callbacks,
/// which deliver results: there, running the callbacks in place saves a loop turn
/// and a handle per callback.
pub(crate) fn run_now(future: &Bound<'_, PyAny>, batch: CallbackBatch) -> PyResult<()> {
    let Some((event_loop, callbacks)) = batch else {
        return Ok(());
    };
    let py = future.py();
    let event_loop = event_loop.bind(py);
    let mut callbacks = callbacks.into_iter();
    while let Some((callback, context)) = callbacks.next() {
        let err = match run_in_context(context.bind(py), callback.bind(py), future) {
            RanIn::Ran(Ok(_)) => continue,
            RanIn::Ran(Err(err)) => err,
            // Its context is in use up the stack (a loop run nested inside a
            // callback of the same context): left to the loop, as a handle of its
            // own, which is what asyncio would have made of it anyway.
            RanIn::NotEntered => {
                let mut one = DoneCallbacks::default();
                one.push((callback, context));
                schedule_each(future, event_loop, one.into_iter());
                continue;
            }
        };
        if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
            schedule_each(future, event_loop, callbacks);
            return Err(err);
        }
        report(
            event_loop,
            &format!("Exception in callback {}", callback.bind(py)),
            err,
            future,
        );
    }
    Ok(())
}

/// `loop.call_exception_handler({"message": ..., "exception": ..., "future": ...})`;
/// if even that fails, the error is written as unraisable.
pub(crate) fn report(
    event_loop: &Bound<'_, PyAny>,
    message: &str,
    err: PyErr,
    future: &Bound<'_, PyAny>,
) {
    let py = future.py();
    let handled = (|| -> PyResult<()> {
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("future", future)?;
        event_loop.call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    })();
    if let Err(err) = handled {
        err.write_unraisable(py, Some(future));
    }
}
