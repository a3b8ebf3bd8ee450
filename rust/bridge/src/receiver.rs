//! A `#[pyclass]` method's receiver, borrowed for as long as its async call lives.
//!
//! `async fn bump(&self)` in a cell's `#[pymethods]` runs through the bridge like a
//! `pub async fn`: its future may run on a tokio worker and live across many loop
//! turns, holding `&self` all along. PyO3's borrow flag must say so meanwhile (or a
//! `&mut self` call could alias it), which a `PyRef` cannot do off the thread that
//! holds the interpreter. [`Shared`] and [`Exclusive`] hold PyO3's own
//! `PyClassGuard`/`PyClassGuardMut` (whose flag is atomic and whose release needs no
//! interpreter) together with a strong reference to the object, so the borrow is
//! taken when the method is called, on the caller's thread, and released when the
//! call's future is dropped, wherever that is.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::PyClass;

/// `&self` for the life of an async method's call.
pub struct Shared<T: PyClass> {
    guard: ManuallyDrop<PyClassGuard<'static, T>>,
    _object: Py<T>,
}

/// `&mut self` for the life of an async method's call.
pub struct Exclusive<T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False>> {
    guard: ManuallyDrop<PyClassGuardMut<'static, T>>,
    _object: Py<T>,
}

/// Borrows `slf` shared for a call of `method` ("Counter.bump"); a clear error if a
/// call running with `&mut self` has it.
pub fn shared<T: PyClass>(slf: &Bound<'_, T>, method: &str) -> PyResult<Shared<T>> {
    let object = slf.clone().unbind();
    let guard = PyClassGuard::try_from(slf).map_err(|_| busy::<T>(method, false))?;
    // SAFETY: only the lifetime changes (`transmute` between one type's lifetimes;
    // the layout is the same). The guard's `'a` says "the object outlives me"; the
    // object it points to is kept alive by `_object`, a strong reference this struct
    // owns, and `Drop` below drops the guard before `_object`. `Deref` hands out
    // `&T` only for as long as `&self`, so nothing borrowed outlives the struct.
    let guard: PyClassGuard<'static, T> = unsafe { std::mem::transmute(guard) };
    Ok(Shared {
        guard: ManuallyDrop::new(guard),
        _object: object,
    })
}

/// Borrows `slf` exclusively for a call of `method`; a clear error if another call
/// still running has it.
pub fn exclusive<T>(slf: &Bound<'_, T>, method: &str) -> PyResult<Exclusive<T>>
where
    T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False>,
{
    let object = slf.clone().unbind();
    let guard = PyClassGuardMut::try_from(slf).map_err(|_| busy::<T>(method, true))?;
    // SAFETY: as in `shared`: the same type with a longer lifetime, the object kept
    // alive by `_object` until after the guard is dropped, `&mut T` lent only for as
    // long as `&mut self`.
    let guard: PyClassGuardMut<'static, T> = unsafe { std::mem::transmute(guard) };
    Ok(Exclusive {
        guard: ManuallyDrop::new(guard),
        _object: object,
    })
}

/// The sentence for a borrow that failed: which object, which method, and what to do.
fn busy<T: PyClass>(method: &str, exclusive: bool) -> PyErr {
    let class = T::NAME;
    let why = if exclusive {
        format!("{method}() takes `&mut self`, and another call on this {class} is still running")
    } else {
        format!("{method}() takes `&self`, and a call on this {class} that takes `&mut self` is still running")
    };
    PyRuntimeError::new_err(format!(
        "{why}: await that call first, or take `&self` and keep the state that changes behind a lock (e.g. tokio::sync::Mutex)"
    ))
}

impl<T: PyClass> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False>> Deref for Exclusive<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False>> DerefMut for Exclusive<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: PyClass> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again; `_object` is dropped after.
        unsafe { ManuallyDrop::drop(&mut self.guard) }
    }
}

impl<T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False>> Drop for Exclusive<T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again; `_object` is dropped after.
        unsafe { ManuallyDrop::drop(&mut self.guard) }
    }
}
