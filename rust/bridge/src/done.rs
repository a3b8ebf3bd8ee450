//! An awaitable's done callbacks, as `add_done_callback` collects them.
//!
//! There is almost always exactly one (the awaiting Task's wake-up, or `gather`'s
//! bookkeeping), so the first is kept inline and only further ones go into a
//! vector: a plain `Vec` would allocate and free once per call, which in a burst
//! of thousands (a `gather`) shows up in the profile.

use pyo3::prelude::*;

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

    /// Removes every entry whose callback equals `callback`; returns how many.
    pub(crate) fn remove(&mut self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> usize {
        let all: Vec<Callback> = std::mem::take(self).into_iter().collect();
        let before = all.len();
        for entry in all {
            if !entry.0.bind(py).eq(callback).unwrap_or(false) {
                self.push(entry);
            }
        }
        before - self.len()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

impl IntoIterator for DoneCallbacks {
    type Item = Callback;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Callback>, std::vec::IntoIter<Callback>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}
