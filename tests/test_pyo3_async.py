"""PyO3's own async items in a cell (issue 13): `async fn` methods of a `#[pyclass]`
and `#[pyfunction] async fn`, run through the bridge like a `pub async fn`; the
runtime's context around sync calls; and the small things a new user meets on the way
(trailing `Option`s, a `py` token, `#[tokio::main]`, a class's `__module__`)."""

from __future__ import annotations

import asyncio
import inspect
import pickle
from types import ModuleType

import pytest

import ipy_rustasync
from ipy_rustasync import RustCompileError, RustPanic, rust_module

from .conftest import Shell

ACCOUNT = r"""
use pyo3::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static DROPPED: AtomicUsize = AtomicUsize::new(0);
struct Tracked;
impl Drop for Tracked {
    fn drop(&mut self) { DROPPED.fetch_add(1, Ordering::SeqCst); }
}
pub fn dropped() -> usize { DROPPED.load(Ordering::SeqCst) }

#[pyclass]
pub struct Account { balance: u64, readers: AtomicUsize, most_readers: AtomicUsize }

#[pymethods]
impl Account {
    #[new]
    fn new(balance: u64) -> Self {
        Account { balance, readers: AtomicUsize::new(0), most_readers: AtomicUsize::new(0) }
    }
    /// Reads the balance after `ms` milliseconds; counts how many reads overlap.
    async fn balance(&self, ms: u64) -> u64 {
        let now = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_readers.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.readers.fetch_sub(1, Ordering::SeqCst);
        self.balance
    }
    fn most_readers(&self) -> usize { self.most_readers.load(Ordering::SeqCst) }
    async fn deposit(&mut self, amount: u64, ms: u64) -> u64 {
        let _tracked = Tracked;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.balance += amount;
        self.balance
    }
    async fn overdraw(&self) -> u64 {
        panic!("overdrawn")
    }
    async fn fails(&self) -> Result<u64, String> { Err("no funds".to_string()) }
    async fn itself(slf: Py<Self>) -> Py<Self> { slf }
    #[staticmethod]
    async fn interest(amount: u64) -> u64 { amount / 10 }
    #[pyo3(name = "renamed")]
    async fn with_another_name(&self) -> &'static str { "renamed" }
    #[rust_async(inline)]
    async fn inline_balance(&self) -> u64 { self.balance }
    /// A sync method in the runtime's context: tokio::spawn works.
    fn spawn_check(&self) -> u64 {
        let handle = tokio::spawn(async { 5u64 });
        drop(handle);
        self.balance
    }
}

/// PyO3's guide (async-await.md), verbatim.
#[pyfunction]
#[pyo3(signature=(seconds, result=None))]
async fn sleep(seconds: f64, result: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        tx.send(()).unwrap();
    });
    rx.await.unwrap();
    result
}

static HEARD: AtomicUsize = AtomicUsize::new(0);
pub fn heard() -> usize { HEARD.load(Ordering::SeqCst) }

#[pyfunction]
async fn cancellable(#[pyo3(cancel_handle)] cancel: ipy_rustasync::CancelHandle) -> &'static str {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(30)) => "slept",
        _ = cancel.cancelled() => { HEARD.fetch_add(1, Ordering::SeqCst); "cancelled" }
    }
}

pub fn optional(a: u64, b: Option<u64>, c: Option<String>) -> String { format!("{a} {b:?} {c:?}") }
pub fn with_token(py: Python<'_>, x: u64) -> u64 { py.version_info().major as u64 + x }
pub fn spawns() -> u64 {
    let handle = tokio::spawn(async { 1u64 });
    drop(handle);
    tokio::runtime::Handle::current().metrics().num_workers() as u64
}
"""


@pytest.fixture(scope="module")
def bank() -> ModuleType:
    return rust_module(ACCOUNT)


def test_async_methods_with_shared_self_run_together(bank: ModuleType) -> None:
    async def main() -> tuple[list[int], int]:
        account = bank.Account(10)
        balances = await asyncio.gather(*(account.balance(50) for _ in range(4)))
        return balances, account.most_readers()

    balances, most = asyncio.run(main())
    assert balances == [10, 10, 10, 10]
    assert most >= 2  # &self calls overlapped (four 50 ms reads on tokio)


def test_a_second_mut_self_call_while_one_runs_raises_a_sentence(bank: ModuleType) -> None:
    async def main() -> tuple[object, object, int]:
        account = bank.Account(0)
        first, second = await asyncio.gather(account.deposit(1, 50), account.deposit(2, 0), return_exceptions=True)
        return first, second, await account.balance(0)

    first, second, balance = asyncio.run(main())
    assert first == 1
    assert isinstance(second, RuntimeError)
    assert "Account.deposit() takes `&mut self`, and another call on this Account is still running" in str(second)
    assert balance == 1


def test_coroutines_made_first_and_awaited_in_turn_each_borrow_when_they_start(bank: ModuleType) -> None:
    """As for PyO3's own async methods and `async def`: making a coroutine takes
    nothing; the borrow starts with the call's first step."""

    async def main() -> list[int]:
        account = bank.Account(0)
        calls = [account.deposit(n, 1) for n in (1, 2, 3)]
        return [await call for call in calls]

    assert asyncio.run(main()) == [1, 3, 6]


def test_a_cancelled_mut_self_call_drops_its_future_and_frees_the_object(bank: ModuleType) -> None:
    async def main() -> int:
        account = bank.Account(0)
        before = bank.dropped()
        task = asyncio.ensure_future(account.deposit(5, 10_000))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if bank.dropped() > before:
                break
            await asyncio.sleep(0.01)
        assert bank.dropped() == before + 1
        return await account.deposit(7, 0)

    assert asyncio.run(main()) == 7


def test_panics_errors_receivers_and_names(bank: ModuleType) -> None:
    async def main() -> None:
        account = bank.Account(30)
        with pytest.raises(RustPanic) as panic:
            await account.overdraw()
        assert panic.value.rust_message == "overdrawn"
        assert isinstance(panic.value.cell_line, int)
        with pytest.raises(ipy_rustasync.RustError, match="no funds"):
            await account.fails()
        assert await account.itself() is account
        assert await bank.Account.interest(30) == 3
        assert await account.renamed() == "renamed"
        assert await account.inline_balance() == 30
        assert account.spawn_check() == 30

    asyncio.run(main())


def test_the_awaitable_is_the_bridges_coroutine_named_after_the_method(bank: ModuleType) -> None:
    account = bank.Account(1)
    call = account.balance(0)
    try:
        assert asyncio.iscoroutine(call)
        assert "Account.balance" in repr(call)
    finally:
        call.close()
    assert ipy_rustasync.run(account.deposit(2, 0)) == 3


def test_the_guides_async_pyfunction_runs_as_written(bank: ModuleType) -> None:
    assert inspect.iscoroutinefunction(bank.sleep)

    async def main() -> tuple[object, object]:
        return await bank.sleep(0.01, "done"), await bank.sleep(0.01)

    assert asyncio.run(main()) == ("done", None)


def test_an_async_pyfunctions_cancel_handle_hears_the_cancellation(bank: ModuleType) -> None:
    """As for a `pub async fn` taking a `CancelHandle`: the caller is cancelled at
    once, and the Rust side hears it (instead of being dropped)."""

    async def main() -> None:
        heard = bank.heard()
        task = asyncio.ensure_future(bank.cancellable())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if bank.heard() > heard:
                break
            await asyncio.sleep(0.01)
        assert bank.heard() == heard + 1

    asyncio.run(main())


def test_sync_calls_run_in_the_runtimes_context(bank: ModuleType) -> None:
    assert bank.spawns() >= 1


def test_trailing_options_default_to_none_and_a_token_is_passed(bank: ModuleType) -> None:
    assert bank.optional(1) == "1 None None"
    assert bank.optional(1, 2) == "1 Some(2) None"
    assert bank.optional(1, c="x") == '1 None Some("x")'
    assert bank.with_token(0) == 3
    assert "c=None" in bank.optional.__text_signature__


def test_classes_name_the_cells_module(bank: ModuleType) -> None:
    module = bank.Account.__module__
    assert module.startswith("ipy_rustasync.built.ira_")
    with pytest.raises(TypeError, match=f"cannot pickle '{module}.Account' object"):
        pickle.dumps(bank.Account(1))


def test_objects_keep_working_after_other_cells_are_built(bank: ModuleType) -> None:
    account = bank.Account(4)
    other = rust_module("pub async fn unrelated() -> u8 { 9 }\n")

    async def main() -> tuple[int, int]:
        return await other.unrelated(), await account.deposit(1, 0)

    assert asyncio.run(main()) == (9, 5)


def test_tokio_main_says_the_cell_already_runs_on_tokio() -> None:
    with pytest.raises(RustCompileError) as failure:
        rust_module("#[tokio::main]\npub async fn main() -> u64 { 1 }\n")
    assert "`#[tokio::main]` is not needed here: a cell's functions already run on a tokio runtime" in str(
        failure.value
    )


def test_an_async_method_that_cannot_hold_its_receiver_is_refused() -> None:
    source = """
use pyo3::prelude::*;
#[pyclass]
pub struct C;
#[pymethods]
impl C {
    async fn by_value(self) -> u8 { 1 }
}
"""
    with pytest.raises(RustCompileError) as failure:
        rust_module(source)
    assert "an async method takes `&self`, `&mut self` or `slf: Py<Self>`" in str(failure.value)


SYNC_PYO3 = r"""
use pyo3::prelude::*;
use pyo3::exceptions::PyValueError;

#[pyfunction]
pub fn parse_it(s: &str) -> PyResult<u64> {
    let n: u64 = s.parse().map_err(|e: std::num::ParseIntError| PyValueError::new_err(e.to_string()))?;
    if n == 0 {
        return Err(PyValueError::new_err("zero"));
    }
    Ok(n)
}

#[pyfunction]
pub fn echo<'py>(x: &Bound<'py, PyAny>) -> Bound<'py, PyAny> { x.clone() }

#[pyfunction]
pub fn spawned_on_tokio() -> bool { tokio::runtime::Handle::try_current().is_ok() }

#[pyclass]
pub struct C { v: u64 }

#[pymethods]
impl C {
    #[new]
    fn new() -> Self { C { v: 1 } }
    #[getter]
    fn v(&self) -> u64 { self.v }
    #[setter]
    fn set_v(&mut self, v: u64) { self.v = v; }
    fn checked(&self, s: String) -> PyResult<u64> {
        Ok(s.parse::<u64>().map_err(|e| PyValueError::new_err(e.to_string()))? + self.v)
    }
    fn __repr__(&self) -> String { format!("C({})", self.v) }
    fn fails(&self) -> PyResult<u64> {
        let empty: Vec<u64> = Vec::new();
        Ok(empty[3])
    }
    fn fails_plainly(&self) -> u64 {
        panic!("plain")
    }
}

#[pyfunction]
pub fn function_fails() -> PyResult<u64> {
    panic!("in a pyfunction")
}
"""


def test_pyo3s_sync_items_keep_their_meaning_inside_the_runtimes_context() -> None:
    """Their bodies run inside `in_runtime(move || ...)`: early `return`, `?`,
    lifetimes, getters, setters and dunders are as PyO3 makes them."""
    module = rust_module(SYNC_PYO3)
    assert module.parse_it("5") == 5
    with pytest.raises(ValueError, match="zero"):
        module.parse_it("0")
    with pytest.raises(ValueError, match="invalid digit"):
        module.parse_it("x")
    assert module.echo("x") == "x"
    assert module.spawned_on_tokio()
    c = module.C()
    c.v = 4
    assert (c.v, c.checked("3"), repr(c)) == (4, 7, "C(4)")


def test_a_panic_in_pyo3s_sync_items_is_a_rust_panic_where_they_return_a_pyresult() -> None:
    """As in every `pub fn` and async method: `RustPanic` with the cell's line. A body
    whose type cannot carry an error leaves the panic to PyO3 (`PanicException`, a
    `BaseException`), now with the same sentence."""
    module = rust_module(SYNC_PYO3)
    with pytest.raises(RustPanic) as panic:
        module.C().fails()
    assert "index out of bounds" in panic.value.rust_message
    line = next(n for n, text in enumerate(SYNC_PYO3.splitlines(), start=1) if "Ok(empty[3])" in text)
    assert panic.value.cell_line == line
    with pytest.raises(RustPanic, match="in a pyfunction"):
        module.function_fails()
    with pytest.raises(BaseException, match=r"Rust panicked at cell line \d+, column \d+: plain") as plain:
        module.C().fails_plainly()
    assert type(plain.value).__name__ == "PanicException"


def test_an_object_from_before_its_cell_was_rebuilt_gets_a_sentence(
    shell: Shell, capsys: pytest.CaptureFixture[str]
) -> None:
    """PyO3 says "'Point' object is not an instance of 'Point'"; the extension says
    which build the object came from and what to do."""
    point = """
    use pyo3::prelude::*;
    #[pyclass(from_py_object)]
    #[derive(Clone)]
    pub struct Point { x: f64 }
    #[pymethods]
    impl Point {
        #[new]
        fn new(x: f64) -> Self { Point { x } }
    }
    pub fn norm(p: Point) -> f64 { p.x.abs() } // build {n}
    """
    shell.rust(point.replace("{n}", "one"))
    shell.run("stale_point = Point(-2.0)")
    first = shell.run("Point.__module__")
    shell.rust(point.replace("{n}", "two"))
    capsys.readouterr()
    err = shell.fails("norm(stale_point)")
    assert isinstance(err, TypeError)
    build = first.rsplit(".", 1)[-1]
    assert f"'Point (earlier build {build})' object" in str(err), err  # the error names the build itself
    assert shell.run("type(stale_point).__name__") == "Point"  # only its qualified name says so
    said = capsys.readouterr().err
    assert f"rust_async: that `Point` object was made by an earlier build of its cell ({first})" in said, said
    assert shell.run("norm(Point(-3.0))") == 3.0
