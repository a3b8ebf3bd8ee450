//! `RustAsyncFunction`: how a cell's `pub async fn` appears in Python.
//!
//! PyO3 makes each exported function a builtin, which `inspect` and asyncio cannot
//! tell from a plain function: `inspect.iscoroutinefunction(f)` and
//! `asyncio.iscoroutinefunction(f)` would say False, and frameworks that dispatch on
//! them (pytest-asyncio, FastAPI, anyio, IPython) would call it as a sync function.
//! This wrapper calls the builtin and carries what those checks read: a
//! `__code__` flagged `CO_COROUTINE` with the function's parameters (the duck typing
//! `inspect` documents for compiled functions, as Cython's use; it also gives
//! `inspect.signature`), asyncio's `_is_coroutine` marker (3.11) and `inspect`'s
//! `_is_coroutine_marker` (3.12 and later).

use pyo3::exceptions::PyAttributeError;

use crate::capi::{forward_call, install_vectorcall, Forward};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyTuple};

/// A cell's `async fn` as a Python coroutine function.
#[pyclass(frozen, dict, name = "RustAsyncFunction", module = "ipy_rustasync")]
pub struct RustAsyncFunction {
    /// Calls go straight to `function` (see `capi::Forward`).
    vectorcall: pyo3::ffi::vectorcallfunc,
    function: Py<PyAny>,
    code: Py<PyAny>,
}

impl Forward for RustAsyncFunction {
    fn target(&self) -> &Py<PyAny> {
        &self.function
    }

    fn slot(&self) -> &pyo3::ffi::vectorcallfunc {
        &self.vectorcall
    }
}

#[pymethods]
impl RustAsyncFunction {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self.function.bind(py).call(args, kwargs)?.unbind())
    }

    /// The builtin PyO3 made, which this wraps.
    #[getter]
    fn __func__(&self, py: Python<'_>) -> Py<PyAny> {
        self.function.clone_ref(py)
    }

    #[getter]
    fn __code__(&self, py: Python<'_>) -> Py<PyAny> {
        self.code.clone_ref(py)
    }

    #[getter]
    fn __defaults__(&self) -> Option<Py<PyAny>> {
        None
    }

    #[getter]
    fn __kwdefaults__(&self) -> Option<Py<PyAny>> {
        None
    }

    #[getter]
    fn __annotations__<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        PyDict::new(py)
    }

    /// asyncio's own marker (`asyncio.iscoroutinefunction` on 3.11).
    #[getter]
    fn _is_coroutine(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        marker(py, &IS_COROUTINE, "asyncio.coroutines", "_is_coroutine")
    }

    /// `inspect.markcoroutinefunction`'s marker (3.12 and later).
    #[getter]
    fn _is_coroutine_marker(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        marker(py, &COROUTINE_MARK, "inspect", "_is_coroutine_mark")
    }

    /// Pickled by reference, as the builtin would be.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(slf.getattr("__qualname__")?.unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<Rust async function {}>",
            self.function.bind(py).getattr("__name__")?
        ))
    }
}

static IS_COROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COROUTINE_MARK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn marker(
    py: Python<'_>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Py<PyAny>> {
    match cell.import(py, module, name) {
        Ok(found) => Ok(found.clone().unbind()),
        Err(_) => Err(PyAttributeError::new_err(name.to_owned())),
    }
}

/// A code object flagged `CO_COROUTINE` whose positional parameters are `params`:
/// what `inspect` reads from a function-like object's `__code__` to decide it is a
/// coroutine function and to build its signature. It is never run. Made by
/// compiling `async def _f(_0, _1, ...): pass` and renaming (parameter names may be
/// Python keywords, which a `def` could not spell); built here rather than in the
/// Python package so an exported module works without it.
fn coroutine_code<'py>(
    name: &Bound<'py, PyAny>,
    params: &[&str],
    module: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = name.py();
    let placeholders: Vec<String> = (0..params.len()).map(|i| format!("_{i}")).collect();
    let source = format!("async def _f({}): pass\n", placeholders.join(", "));
    let compiled =
        py.import("builtins")?
            .getattr("compile")?
            .call1((source, "<rust cell>", "exec"))?;
    let code_type = compiled.get_type();
    let function_code = compiled
        .getattr("co_consts")?
        .try_iter()?
        .find(|constant| {
            constant
                .as_ref()
                .is_ok_and(|c| c.is_instance(&code_type).unwrap_or(false))
        })
        .ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("compile() made no function code")
        })??;
    let changes = PyDict::new(py);
    changes.set_item("co_name", name)?;
    changes.set_item("co_qualname", name)?;
    changes.set_item("co_varnames", PyTuple::new(py, params)?)?;
    changes.set_item("co_filename", format!("<rust cell {module}>"))?;
    function_code.call_method("replace", (), Some(&changes))
}

/// Adds `function` (the PyO3 builtin of an exported `async fn` whose Python
/// parameters are `params`) to the module `m`, wrapped.
pub fn add_async_function(
    m: &Bound<'_, PyModule>,
    function: Bound<'_, PyAny>,
    params: &[&str],
) -> PyResult<()> {
    let py = m.py();
    let name = function.getattr("__name__")?;
    let code = coroutine_code(&name, params, &m.name()?.to_string())?;
    let wrapped = Bound::new(
        py,
        RustAsyncFunction {
            vectorcall: forward_call::<RustAsyncFunction>,
            function: function.unbind(),
            code: code.unbind(),
        },
    )?;
    install_vectorcall(&wrapped);
    // Writable attributes, as a function's are (`functools.wraps` copies and sets
    // them), kept in the instance's `__dict__`.
    for attribute in [
        "__name__",
        "__qualname__",
        "__doc__",
        "__module__",
        "__text_signature__",
    ] {
        wrapped.setattr(
            attribute,
            wrapped.get().function.bind(py).getattr(attribute)?,
        )?;
    }
    m.add(name.cast_into::<pyo3::types::PyString>()?, wrapped)
}
