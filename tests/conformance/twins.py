"""Twins for the conformance tests: one scenario, run with asyncio's own objects
(an ``async def`` coroutine, an ``asyncio.Future``, an ``asyncio.Task``) and with
Rust awaitables from a cell, compared side by side.

A scenario is a function of a :class:`Twin` that makes its awaitables through the
twin and returns what it observed (a list of events, a value). :func:`same` runs it
with both twins, each on a fresh event loop of the requested kind, turns exceptions
into comparable records, and fails with both outcomes shown when they differ. The
upstream tests ported here (CPython's ``Lib/test/test_asyncio``,
``Lib/test/test_coroutines.py``, pyo3-async-runtimes' ``pytests``) keep their names,
so a failure names the asyncio rule that was broken.

The Rust side is one cell, :data:`CONTROL`, whose functions mirror the Python
twin's: a value returned at once (spawned or inline), an exception raised, a sleep,
and *gates*, futures that wait until the test opens or fails them from Python, and
that record whether their body started and whether it was dropped (a cancellation
reaching Rust).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

CONTROL = r"""
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::sync::oneshot;

type Outcome = Result<Py<PyAny>, Py<PyAny>>;

#[derive(Default)]
struct Gate {
    sender: Option<oneshot::Sender<Outcome>>,
    receiver: Option<oneshot::Receiver<Outcome>>,
    started: bool,
    dropped: bool,
}

static GATES: Mutex<Option<HashMap<u64, Gate>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn with_gates<R>(f: impl FnOnce(&mut HashMap<u64, Gate>) -> R) -> R {
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    f(gates.get_or_insert_with(HashMap::new))
}

/// A new gate: `wait_gate(key)` waits until `open_gate` or `fail_gate`.
pub fn new_gate() -> u64 {
    let key = NEXT.fetch_add(1, Ordering::SeqCst);
    let (sender, receiver) = oneshot::channel();
    with_gates(|g| g.insert(key, Gate { sender: Some(sender), receiver: Some(receiver), ..Gate::default() }));
    key
}

struct Dropped(u64, bool);
impl Drop for Dropped {
    fn drop(&mut self) {
        if !self.1 {
            with_gates(|g| if let Some(gate) = g.get_mut(&self.0) { gate.dropped = true; });
        }
    }
}

/// Waits for the gate; returns the value it was opened with, or raises what it
/// was failed with.
pub async fn wait_gate(key: u64) -> PyResult<Py<PyAny>> {
    let receiver = with_gates(|g| g.get_mut(&key).and_then(|gate| { gate.started = true; gate.receiver.take() }));
    let Some(receiver) = receiver else {
        return Err(pyo3::exceptions::PyKeyError::new_err(key));
    };
    let mut guard = Dropped(key, false);
    let outcome = receiver.await;
    guard.1 = true;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(exc)) => Python::attach(|py| Err(PyErr::from_value(exc.into_bound(py)))),
        Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err("gate closed")),
    }
}

pub fn open_gate(key: u64, value: Py<PyAny>) -> bool {
    with_gates(|g| g.get_mut(&key).and_then(|gate| gate.sender.take())).is_some_and(|s| s.send(Ok(value)).is_ok())
}

pub fn fail_gate(key: u64, exc: Py<PyAny>) -> bool {
    with_gates(|g| g.get_mut(&key).and_then(|gate| gate.sender.take())).is_some_and(|s| s.send(Err(exc)).is_ok())
}

/// (started, dropped) of a gate.
pub fn gate_state(key: u64) -> (bool, bool) {
    with_gates(|g| g.get(&key).map(|gate| (gate.started, gate.dropped)).unwrap_or((false, false)))
}

pub async fn value(v: Py<PyAny>) -> Py<PyAny> { v }

#[rust_async(inline)]
pub async fn value_inline(v: Py<PyAny>) -> Py<PyAny> { v }

/// Raises `exc` (an exception instance).
pub async fn raises(exc: Py<PyAny>) -> PyResult<Py<PyAny>> {
    Python::attach(|py| Err(PyErr::from_value(exc.into_bound(py))))
}

pub async fn sleep(seconds: f64, v: Py<PyAny>) -> Py<PyAny> {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    v
}

pub async fn panics(message: String) -> u64 { panic!("{message}") }
"""


@dataclass
class Gate:
    """A coroutine's body that waits until the test opens or fails it."""

    open: Callable[[Any], None]
    fail: Callable[[BaseException], None]
    #: (body started, body dropped by a cancellation)
    state: Callable[[], tuple[bool, bool]]


class Twin:
    """How a scenario makes awaitables; one implementation per side."""

    name: str

    def value(self, v: Any = None) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def value_inline(self, v: Any = None) -> Coroutine[Any, Any, Any]:
        """Rust: the `#[rust_async(inline)]` path; Python: the same as ``value``."""
        raise NotImplementedError

    def raises(self, exc: BaseException) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def sleep(self, seconds: float, v: Any = None) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def gated(self) -> tuple[Coroutine[Any, Any, Any], Gate]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class PythonTwin(Twin):
    name = "asyncio"

    async def value(self, v: Any = None) -> Any:  # type: ignore[override]
        return v

    async def value_inline(self, v: Any = None) -> Any:  # type: ignore[override]
        return v

    async def raises(self, exc: BaseException) -> Any:  # type: ignore[override]
        raise exc

    async def sleep(self, seconds: float, v: Any = None) -> Any:  # type: ignore[override]
        await asyncio.sleep(seconds)
        return v

    def gated(self) -> tuple[Coroutine[Any, Any, Any], Gate]:
        box: dict[str, Any] = {"started": False, "dropped": False, "outcome": None}

        def future() -> asyncio.Future[Any]:
            if "future" not in box:
                box["future"] = asyncio.get_running_loop().create_future()
                if box["outcome"] is not None:
                    settle(*box["outcome"])
            return box["future"]  # type: ignore[no-any-return]

        def settle(kind: str, value: Any) -> None:
            fut = box.get("future")
            if fut is None:
                box["outcome"] = (kind, value)
            elif not fut.done():
                fut.set_result(value) if kind == "ok" else fut.set_exception(value)

        async def body() -> Any:
            box["started"] = True
            done = False
            try:
                result = await future()
                done = True
                return result
            except BaseException:
                done = future().done() and not future().cancelled()
                raise
            finally:
                if not done:
                    box["dropped"] = True

        return body(), Gate(
            open=lambda v: settle("ok", v),
            fail=lambda e: settle("err", e),
            state=lambda: (box["started"], box["dropped"]),
        )


class RustTwin(Twin):
    name = "rust"

    def __init__(self, mod: ModuleType) -> None:
        self.mod = mod

    def value(self, v: Any = None) -> Coroutine[Any, Any, Any]:
        return self.mod.value(v)  # type: ignore[no-any-return]

    def value_inline(self, v: Any = None) -> Coroutine[Any, Any, Any]:
        return self.mod.value_inline(v)  # type: ignore[no-any-return]

    def raises(self, exc: BaseException) -> Coroutine[Any, Any, Any]:
        return self.mod.raises(exc)  # type: ignore[no-any-return]

    def sleep(self, seconds: float, v: Any = None) -> Coroutine[Any, Any, Any]:
        return self.mod.sleep(seconds, v)  # type: ignore[no-any-return]

    def gated(self) -> tuple[Coroutine[Any, Any, Any], Gate]:
        key = self.mod.new_gate()
        return self.mod.wait_gate(key), Gate(
            open=lambda v: self.mod.open_gate(key, v),
            fail=lambda e: self.mod.fail_gate(key, e),
            state=lambda: tuple(self.mod.gate_state(key)),
        )


@dataclass(frozen=True)
class Raised:
    """An exception, as comparable across twins: its type and message."""

    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> Raised:
        return cls(type(exc).__name__, str(exc))


def raised(call: Callable[[], Any]) -> Any:
    """``call()``'s value, or a :class:`Raised` for what it raised."""
    try:
        return call()
    except BaseException as exc:  # noqa: BLE001 - every outcome is an observation here
        return Raised.of(exc)


async def araised(awaitable: Awaitable[Any]) -> Any:
    """What awaiting gives: the value, or a :class:`Raised`."""
    try:
        return await awaitable
    except BaseException as exc:  # noqa: BLE001 - every outcome is an observation here
        return Raised.of(exc)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


def run(kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``asyncio.run(main())`` on a new loop of ``kind``; an exception is returned
    as a :class:`Raised`."""
    with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
        return raised(lambda: runner.run(main()))


@dataclass
class Pair:
    """Both twins and the loop kind a test runs on."""

    python: PythonTwin
    rust: RustTwin
    loop: str
    #: Exception-handler calls seen during the last :meth:`same` run, per twin.
    handled: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def same(self, scenario: Callable[[Twin], Any], *, sync: bool = False) -> Any:
        """Runs ``scenario`` with each twin and asserts they observed the same.
        An ``async`` scenario (the default) runs inside a fresh loop; with
        ``sync=True`` it gets the loop kind to make its own loops with. Returns the
        (common) observation."""
        seen: dict[str, Any] = {}
        for twin in (self.python, self.rust):
            seen[twin.name] = self.observe(twin, scenario, sync=sync)
        assert seen["rust"] == seen["asyncio"], f"\n asyncio: {seen['asyncio']!r}\n    rust: {seen['rust']!r}"
        return seen["asyncio"]

    def observe(self, twin: Twin, scenario: Callable[[Twin], Any], *, sync: bool = False) -> Any:
        """What ``scenario`` observes with ``twin`` (handler calls in ``handled``)."""
        handled: list[dict[str, Any]] = []
        self.handled[twin.name] = handled

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # The task or future a report is about is kept as its repr: keeping the
            # object would resurrect one reported from its finalizer, and from 3.14 a
            # resurrected asyncio.Task stays in all_tasks() (its C list unlinks it only
            # when it is freed; up to 3.13 a WeakSet had already dropped it).
            handled.append({k: repr(v) if k in ("task", "future") else v for k, v in context.items()})

        if sync:
            result = raised(lambda: scenario(twin))
        else:

            async def main() -> Any:
                asyncio.get_running_loop().set_exception_handler(handler)
                return await scenario(twin)

            result = run(self.loop, main)
        gc.collect()
        return result


@contextlib.contextmanager
def recorded_handler(loop: asyncio.AbstractEventLoop) -> Iterator[list[dict[str, Any]]]:
    """The exception-handler calls made on ``loop`` inside the block."""
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


def run_briefly(loop: asyncio.AbstractEventLoop, turns: int = 1) -> None:
    """asyncio's test helper: lets ``loop`` (not running) run ``turns`` iterations."""
    for _ in range(turns):

        async def once() -> None:
            pass

        loop.run_until_complete(once())


counter = itertools.count()
