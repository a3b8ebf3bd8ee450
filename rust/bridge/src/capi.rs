//! Every `unsafe` call into CPython the bridge makes, and every reliance on how
//! CPython works inside, in one place.
//!
//! PyO3 covers almost everything the bridge needs; these are the few things it does
//! not: entering a `contextvars` context without a Python call, the `am_send` slot
//! (the C-level "send" that `await` on 3.11 and asyncio's C `Task` use), `tp_finalize`
//! (what lets an object be handed to Python code as it is being destroyed, the way
//! `asyncio.Future.__del__` reports an exception nobody retrieved), and the 3.11
//! running-loop holder. Each function says what it relies on; version-specific
//! behaviour is gated on the interpreter's version at run time ([`version_at_least`]).

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;
use pyo3::types::{PyDict, PyString};
use pyo3::PyClass;

/// Whether the running interpreter is at least `major.minor` (asked once: PyO3's
/// `version_info` formats the version string at every call).
pub(crate) fn version_at_least(major: u8, minor: u8) -> bool {
    let (have_major, have_minor, _) = version();
    (have_major, have_minor) >= (major, minor)
}

/// The running interpreter's (major, minor, patch), asked once.
pub(crate) fn version() -> (u8, u8, u8) {
    static VERSION: OnceLock<(u8, u8, u8)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        Python::attach(|py| {
            let info = py.version_info();
            (info.major, info.minor, info.patch)
        })
    })
}

/// Whether this thread holds the GIL (is attached to the interpreter) now, asked
/// without waiting for it: a thread that has released it (`py.detach`) or never
/// had it (a tokio worker) does not. The thread state holding the GIL is this
/// thread's own. (On 3.11 the "current" thread state is one process-wide variable,
/// the GIL holder's, whichever thread asks; from 3.12 it is per thread.
/// `PyGILState_Check` would answer yes on every thread once sub-interpreters have
/// been used; PyO3's own count is per cell library and private.) A thread attached
/// through a thread state not registered as its own (sub-interpreters) gets "no",
/// which only costs its text a trip through the queue.
pub(crate) fn holds_gil() -> bool {
    // SAFETY: both may be called from any thread at any time, with or without the
    // GIL, and never fail: `PyThreadState_GetUnchecked` (`_PyThreadState_UncheckedGet`
    // before 3.13, which PyO3's compat shim calls there) reads the current thread
    // state, `PyGILState_GetThisThreadState` this thread's registered one (NULL if
    // it has none). Only the pointers are compared; nothing is dereferenced.
    unsafe {
        let current = ffi::compat::PyThreadState_GetUnchecked();
        !current.is_null() && current == ffi::PyGILState_GetThisThreadState()
    }
}

/// `err`, raised the way the interpreter raises an exception (`PyErr_SetObject`):
/// its `__context__` becomes the exception being handled where it is raised, as
/// for an exception raised in an `async def` awaited inside an `except` block.
/// PyO3 hands errors back with `PyErr_Restore`, which does not chain.
pub(crate) fn chained(py: Python<'_>, err: PyErr) -> PyErr {
    let value = err.into_value(py);
    // SAFETY: the GIL is held; `value` is a live exception instance, and its type
    // (a borrowed reference kept alive by the instance) is what `PyErr_SetObject`
    // takes with it. It sets the error indicator, which `PyErr::fetch` then takes.
    unsafe {
        ffi::PyErr_SetObject(ffi::Py_TYPE(value.as_ptr()).cast(), value.as_ptr());
    }
    PyErr::fetch(py)
}

/// `contextvars.copy_context()`, through the C API (no lookup, no call).
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: `py` proves the GIL is held, which is all `PyContext_CopyCurrent`
    // needs; it returns a new reference or NULL with an exception set, and
    // `from_owned_ptr_or_err` takes exactly that.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// What [`run_in_context`] did.
pub(crate) enum RanIn<'py> {
    /// The callback ran, with this outcome.
    Ran(PyResult<Bound<'py, PyAny>>),
    /// The context could not be entered (it is entered further up this thread's
    /// stack, which happens when a loop is run nested, or it is not a context): the
    /// callback did not run.
    NotEntered,
}

/// `context.run(callback, arg)`, through the C API.
pub(crate) fn run_in_context<'py>(
    context: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> RanIn<'py> {
    let py = context.py();
    // SAFETY: the GIL is held (`py`) and `context` is a live object for the whole
    // call. `PyContext_Enter` checks the object is a `Context` (TypeError if not)
    // and that it is not already entered (RuntimeError), returning -1 with the
    // exception set; on 0 the context is entered and is exited below on every path
    // before returning, as `Context.run` does.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        drop(PyErr::fetch(py));
        return RanIn::NotEntered;
    }
    let result = callback.call1((arg,));
    // SAFETY: as above; exiting the context entered just before, on this thread.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } != 0 {
        return RanIn::Ran(Err(PyErr::fetch(py)));
    }
    RanIn::Ran(result)
}

/// A step as `send` and `__next__` give it: the return value as `StopIteration`
/// (`StopIteration()` for `None`, as the interpreter raises it), an exception
/// chained to the one being handled where it is raised.
pub(crate) fn next_result<'py>(
    py: Python<'py>,
    sent: PyResult<SendResult<'py>>,
) -> PyResult<Bound<'py, PyAny>> {
    match sent {
        Ok(SendResult::Yield(value)) => Ok(value),
        Ok(SendResult::Return(value)) if value.is_none() => {
            Err(pyo3::exceptions::PyStopIteration::new_err(()))
        }
        Ok(SendResult::Return(value)) => Err(pyo3::exceptions::PyStopIteration::new_err((
            value.unbind(),
        ))),
        Err(err) => Err(chained(py, err)),
    }
}

/// The result of one C-level send step (CPython's `PySendResult`): a value to yield
/// (the coroutine is suspended) or the value it returns.
pub(crate) enum SendResult<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
}

/// A pyclass whose type gets an `am_send` slot.
pub(crate) trait SendSlot: PyClass + PyTypeInfo {
    /// One step, as `send(None)` would take it (exceptions as `Err`). Must not panic.
    fn send_slot<'py>(slf: &Bound<'py, Self>) -> PyResult<SendResult<'py>>;
}

/// The `am_send` slot: the C-level step that `await` (on 3.10 and 3.11; 3.12 and
/// later call `__next__`) and asyncio's C `Task` (every version) use when a type
/// has one. It hands the return value back as a value, where a Python-level
/// `send` must raise `StopIteration(value)` (building and normalizing an exception
/// at every ready `await`).
unsafe extern "C" fn am_send<T: SendSlot>(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    use ffi::PySendResult::{PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN};
    // SAFETY: CPython calls a type's `am_send` with the GIL held (so attaching
    // succeeds), `slf` a borrowed reference to an instance of the type the slot was
    // installed on (or of a subclass, which has the same layout), and `result` a
    // valid place for one new reference.
    unsafe {
        attached(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>();
            let (status, value) = match T::send_slot(&slf) {
                Ok(SendResult::Yield(value)) => (PYGEN_NEXT, value.into_ptr()),
                Ok(SendResult::Return(value)) => (PYGEN_RETURN, value.into_ptr()),
                Err(err) => {
                    chained(py, err).restore(py);
                    (PYGEN_ERROR, std::ptr::null_mut())
                }
            };
            *result = value;
            status
        })
    }
}

/// Runs `f` attached to the interpreter the way PyO3's own slot wrappers are: a raw
/// slot called by CPython holds the GIL, but PyO3 does not know it until told, and
/// would otherwise defer every reference dropped inside to its global pool (whose
/// existence then costs a lock at every later call into PyO3).
///
/// # Safety
/// The calling thread must hold the GIL (as CPython guarantees for slot calls).
unsafe fn attached<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    // SAFETY: the caller holds the GIL, so `Python::attach` would succeed, which is
    // `attach_unchecked`'s whole contract.
    unsafe { Python::attach_unchecked(f) }
}

/// Writes [`am_send`] into `T`'s type; called once, from the module's
/// initialisation, before any instance exists.
pub(crate) fn install_am_send<T: SendSlot>(py: Python<'_>) {
    let tp = T::type_object(py).as_type_ptr();
    // SAFETY: `tp` is the live heap type PyO3 created with `PyType_FromSpec`
    // (`PyType_FromSlots` on 3.15 and later; either allocates a `PyHeapTypeObject`),
    // kept alive by PyO3's static, and the GIL is held. For heap types `tp_as_async`
    // points into the type object itself (`PyHeapTypeObject::as_async`, set for
    // every heap type), never into shared static tables, so writing it affects this
    // type only; it is checked for null anyway. Nothing caches `am_send`: CPython
    // reads the slot at each `PyIter_Send`.
    unsafe {
        let methods = (*tp).tp_as_async;
        if !methods.is_null() {
            (*methods).am_send = Some(am_send::<T>);
        }
    }
}

/// A pyclass with a finalizer: Python code run as an instance is destroyed, with
/// the instance still whole, the way `__del__` runs (PyO3 has no `__del__`).
pub(crate) trait Finalize: PyClass + PyTypeInfo {
    /// Whether there is anything to do (most instances go without: the check is
    /// made before anything else, so they cost nothing more to free). Must not call
    /// Python code or drop Python references.
    fn wants_finalizing(slf: &Bound<'_, Self>) -> bool;

    /// The finalizer. Runs with the GIL held; may call Python code and pass `slf`
    /// to it (a reference kept beyond the call resurrects the object, which is
    /// allowed). Must not panic.
    fn finalize(slf: &Bound<'_, Self>);

    /// Where [`install_finalizer`] keeps PyO3's own `tp_dealloc` for this type.
    fn pyo3_dealloc() -> &'static OnceLock<ffi::destructor>;
}

unsafe extern "C" fn tp_finalize<T: Finalize>(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls `tp_finalize` with the GIL held and `obj` a live
    // instance of the type it was installed on (temporarily resurrected when called
    // from `tp_dealloc`, so a borrowed reference is valid for the call).
    unsafe {
        if !wants_finalizing::<T>(obj) {
            return;
        }
        attached(|py| {
            let slf = Bound::from_borrowed_ptr(py, obj).cast_into_unchecked::<T>();
            // A finalizer must leave the exception state as it found it (an
            // exception may be propagating while this object is dropped).
            let pending = PyErr::take(py);
            T::finalize(&slf);
            if let Some(pending) = pending {
                pending.restore(py);
            }
        })
    }
}

/// [`Finalize::wants_finalizing`] of `obj`, asked without attaching to PyO3
/// (nothing is created or dropped).
///
/// # Safety
/// The GIL is held and `obj` is a live instance of `T` (refcount zero allowed: only
/// its Rust fields are read).
unsafe fn wants_finalizing<T: Finalize>(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: as the function's contract says; a borrowed reference that is never
    // turned into an owned one creates and drops nothing.
    unsafe {
        let py = Python::assume_attached();
        T::wants_finalizing(&Borrowed::from_ptr(py, obj).cast_unchecked::<T>())
    }
}

unsafe extern "C" fn dealloc_finalizing<T: Finalize>(obj: *mut ffi::PyObject) {
    // SAFETY: called by CPython as `tp_dealloc`, with the GIL held and the refcount
    // at zero, which is what `PyObject_CallFinalizerFromDealloc` requires. It runs
    // `tp_finalize` once (GC types record that it ran, so a finalizer the collector
    // already ran is not repeated) and returns -1 if the finalizer resurrected the
    // object, in which case it must not be freed. Every pyclass is a GC type (PyO3
    // 0.30 gives each `Py_TPFLAGS_HAVE_GC` and a `tp_traverse`), and the object is
    // still GC-tracked here (PyO3's deallocator untracks it first thing, next), as
    // CPython requires of an object a finalizer resurrects. PyO3's deallocator also
    // drops the instance's reference to its heap type: it runs exactly once per
    // freed object and never for a resurrected one, which keeps that reference.
    unsafe {
        if wants_finalizing::<T>(obj) && ffi::PyObject_CallFinalizerFromDealloc(obj) < 0 {
            return;
        }
        if let Some(dealloc) = T::pyo3_dealloc().get() {
            dealloc(obj);
        }
    }
}

/// Gives `T` a `tp_finalize` running [`Finalize::finalize`], and a `tp_dealloc`
/// that runs it before PyO3's own. Called once, from the module's initialisation,
/// before any instance exists.
pub(crate) fn install_finalizer<T: Finalize>(py: Python<'_>) {
    let tp = T::type_object(py).as_type_ptr();
    // SAFETY: as in `install_am_send`: a live heap type, the GIL held, no instance
    // yet. `tp_finalize` and `tp_dealloc` are fields of the type object itself. The
    // original `tp_dealloc` (PyO3's, always set for a pyclass) is kept before it is
    // replaced, and only replaced once (`set` fails on a second call, which then
    // leaves the type alone), so `dealloc_finalizing` always finds it.
    unsafe {
        let Some(original) = (*tp).tp_dealloc else {
            return;
        };
        if T::pyo3_dealloc().set(original).is_ok() {
            (*tp).tp_finalize = Some(tp_finalize::<T>);
            (*tp).tp_dealloc = Some(dealloc_finalizing::<T>);
        }
    }
}

/// A pyclass whose instances forward every call to another callable: given the
/// vectorcall protocol, so a call costs one C-level forward (PyO3's `__call__` would
/// build an argument tuple and parse it first).
pub(crate) trait Forward:
    PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + PyTypeInfo + Sync
{
    /// What a call is forwarded to.
    fn target(&self) -> &Py<PyAny>;
    /// The instance's vectorcall slot (a field holding [`forward_call::<Self>`]).
    fn slot(&self) -> &ffi::vectorcallfunc;
}

/// The vectorcall function of a [`Forward`] type.
pub(crate) unsafe extern "C" fn forward_call<T: Forward>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls an instance's vectorcall function with the GIL held,
    // `callable` a borrowed reference to that instance (of type `T`, the only type
    // `install_vectorcall::<T>` gave this function), and `args`/`nargsf`/`kwnames`
    // as the vectorcall protocol defines, which are passed on unchanged to
    // `PyObject_Vectorcall` on the target (kept alive by the instance). No
    // reference is created or dropped here.
    unsafe {
        let py = Python::assume_attached();
        let this = Borrowed::from_ptr(py, callable).cast_unchecked::<T>();
        ffi::PyObject_Vectorcall(this.get().target().as_ptr(), args, nargsf, kwnames)
    }
}

/// Turns on the vectorcall protocol for `T`, given an instance (every instance of a
/// pyclass has the same layout, so the slot's offset found in one holds for all).
/// Called when the first instance is made, before it is returned to Python.
pub(crate) fn install_vectorcall<T: Forward>(instance: &Bound<'_, T>) {
    let tp = T::type_object(instance.py()).as_type_ptr();
    let offset = (instance.get().slot() as *const ffi::vectorcallfunc as isize)
        - (instance.as_ptr() as isize);
    // SAFETY: `tp` is the live heap type of `T` (PyO3's, immutable from Python, so
    // no `__call__` assignment can make it inconsistent) and the GIL is held.
    // CPython reads `tp_vectorcall_offset` and the flag at every call
    // (`_PyVectorcall_Function`), so setting them takes effect at once; every
    // instance holds `forward_call::<T>` at that offset from its start (the field
    // `slot()` returns, set by its constructor). `tp_call` stays PyO3's `__call__`,
    // the same call without the protocol.
    unsafe {
        if (*tp).tp_vectorcall_offset == 0 && offset > 0 {
            (*tp).tp_vectorcall_offset = offset;
            (*tp).tp_flags |= ffi::Py_TPFLAGS_HAVE_VECTORCALL;
        }
    }
}

/// Registers `task` with asyncio, as `asyncio.tasks._register_task(task)` does (so
/// `asyncio.all_tasks()` includes it and `asyncio.run` cancels it at shutdown), but
/// without the two Python-level calls: that function adds the task to a
/// `weakref.WeakSet` (`_all_tasks` on 3.11, `_scheduled_tasks` on 3.12 and later),
/// which `WeakSet.add` does by putting `weakref.ref(task, the_set._remove)` into
/// `the_set.data`; so does this. (`WeakSet.add` first commits removals deferred while
/// the set was being iterated; skipping that only delays them to its next `add`.)
/// Where the set is not found as expected, it calls `_register_task`.
///
/// From 3.14 the C `_register_task` keeps tasks that are not `asyncio.Task`s in a
/// WeakSet of its own module state (which its C `all_tasks` reads), no longer
/// `asyncio.tasks._scheduled_tasks`: there the fast path would hide the task from
/// `all_tasks()` and from `asyncio.run`'s shutdown, so 3.14 and later always call it.
pub(crate) fn register_task(task: &Bound<'_, PyAny>) -> PyResult<()> {
    static WEAK_SET: pyo3::sync::PyOnceLock<Option<(Py<PyAny>, Py<PyAny>)>> =
        pyo3::sync::PyOnceLock::new();
    static REGISTER: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    let py = task.py();
    let parts = WEAK_SET.get_or_init(py, || {
        if version_at_least(3, 14) {
            return None;
        }
        let found = || -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
            let tasks = py.import("asyncio.tasks")?;
            let weak_set_type = py.import("weakref")?.getattr("WeakSet")?;
            for name in ["_scheduled_tasks", "_all_tasks"] {
                let Ok(set) = tasks.getattr(name) else {
                    continue;
                };
                if !set.get_type().is(&weak_set_type) {
                    continue;
                }
                let data = set.getattr("data")?;
                if data.is_exact_instance_of::<pyo3::types::PySet>() {
                    return Ok(Some((data.unbind(), set.getattr("_remove")?.unbind())));
                }
            }
            Ok(None)
        };
        found().ok().flatten()
    });
    match parts {
        Some((data, remove)) => {
            // SAFETY: the GIL is held; `task` and `remove` are live objects.
            // `PyWeakref_NewRef` returns a new reference or NULL with an exception
            // set (TypeError if `task` cannot be weakly referenced), which
            // `from_owned_ptr_or_err` takes exactly.
            let weak = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyWeakref_NewRef(task.as_ptr(), remove.as_ptr()),
                )?
            };
            data.bind(py).cast::<pyo3::types::PySet>()?.add(weak)
        }
        None => {
            REGISTER
                .import(py, "asyncio.tasks", "_register_task")?
                .call1((task,))?;
            Ok(())
        }
    }
}

/// On Python 3.11, the object holding this thread's running loop: the value of
/// `__asyncio_running_event_loop__` in the thread state's dict, which
/// `asyncio._set_running_loop` replaces with a *new* holder whenever a loop starts
/// or stops running on the thread (so the same holder means the same running loop).
/// `None` on 3.12 and later, which dropped the holder, or where it is not found.
pub(crate) fn running_loop_holder(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    static KEY: pyo3::sync::PyOnceLock<Py<PyString>> = pyo3::sync::PyOnceLock::new();
    if version_at_least(3, 12) {
        return Ok(None);
    }
    let key = KEY.get_or_init(py, || {
        PyString::intern(py, "__asyncio_running_event_loop__").unbind()
    });
    // SAFETY: the GIL is held (`py`). `PyThreadState_GetDict` returns a borrowed
    // reference to this thread's state dict, or NULL without an exception when
    // there is none; the dict is owned by the thread state, which outlives this
    // call, and is only read here through a new reference.
    let dict = unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyThreadState_GetDict()) };
    let Some(dict) = dict else {
        return Ok(None);
    };
    dict.cast_into::<PyDict>()?.get_item(key.bind(py))
}

/// Reports `err`, raised while finalizing the coroutine `coro`, to
/// `sys.unraisablehook` as CPython reports one from its own coroutines' finalizers:
/// from 3.14 with no object and the message "Exception ignored while finalizing
/// coroutine <repr>" (`PyErr_FormatUnraisable`), before that with the coroutine as
/// the object. Gated at build time (`Py_3_14`, from build.rs): the function is not
/// in the C API of the interpreters before 3.13, so it cannot even be linked there.
pub(crate) fn write_unraisable_finalizing(py: Python<'_>, err: PyErr, coro: &Bound<'_, PyAny>) {
    #[cfg(Py_3_14)]
    {
        extern "C" {
            fn PyErr_FormatUnraisable(format: *const std::os::raw::c_char, ...);
        }
        err.restore(py);
        // SAFETY: the GIL is held and `err` was just restored as the current
        // exception, which `PyErr_FormatUnraisable` (public C API since 3.13, here
        // 3.14 or later by the cfg) takes and clears. The format is a NUL-terminated
        // static string whose one `%R` matches the one argument, a live object
        // (`coro` is borrowed for the whole call); the function returns nothing.
        unsafe {
            PyErr_FormatUnraisable(
                c"Exception ignored while finalizing coroutine %R".as_ptr(),
                coro.as_ptr(),
            );
        }
    }
    #[cfg(not(Py_3_14))]
    err.write_unraisable(py, Some(coro));
}
