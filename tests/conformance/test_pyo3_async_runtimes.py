"""pyo3-async-runtimes' ``pytests/`` scenarios, in this bridge's terms.

Upstream exposes a Rust future to Python with ``future_into_py`` (an asyncio future)
and awaits Python from Rust with ``into_future``. Here a cell's ``pub async fn``
returns a coroutine, Rust awaits Python through ``ipy_rustasync::PyAwaitable`` /
``AsyncCallable``, ``ipy_rustasync.run`` runs Rust from synchronous code, and the
runtime is the cell's own tokio runtime (``ipy_rustasync::runtime()``). Each
upstream test keeps its name. Where asyncio has a twin (the same scenario written
with ``async def`` and asyncio's objects, Rust calls swapped for Python functions
of the same shape, :class:`PythonSide`), both run on fresh loops of each kind
(asyncio, uvloop) and must observe the same; where the scenario is Rust-side only
(a panic, a runtime property, tokio's spawn APIs) the test asserts it directly and
says so.

Upstream sources: ``pytests/tokio_asyncio/mod.rs`` (shared by the tokio
multi-thread and current-thread binaries; ``test_async_std_asyncio.rs`` and
``test_smol_asyncio.rs`` repeat it for their runtimes), ``pytests/common/mod.rs``,
``test_tokio_multi_thread_uvloop.rs``, ``tokio_run_forever/mod.rs``,
``test_race_condition_regression.rs``, ``test_tokio_shutdown.rs`` and
``test_trio.rs`` (its asyncio probes, and the trio probes whose scenario means
something on an asyncio loop).

Not ported:

* Non-``Send`` futures (a cell's future runs on tokio workers and must be ``Send``;
  the cell compiler refuses one that is not, with a hint):
  ``test_local_future_into_py`` (tokio, async-std, smol: an ``Rc`` on a
  ``LocalSet``), ``test_local_cancel`` (the same with ``scope_local``; the cancel
  itself is ``test_cancel``), ``test_trio_local_future_into_py_not_implemented``.
* Other Rust runtimes and runtime flavours (a cell always runs on its own
  multi-thread tokio runtime): every ``test_async_std_*`` and ``test_smol_*``
  binary's copy of the tokio scenarios (ported once, from the tokio file),
  ``test_tokio_current_thread_asyncio``, ``test_tokio_current_thread_uvloop``,
  ``test_tokio_current_thread_run_forever``, ``test_async_std_run_forever``,
  ``test_smol_run_forever``, ``test_async_std_uvloop``, ``test_smol_uvloop``.
* Test-harness binaries with no scenario of their own:
  ``test_tokio_multi_thread_asyncio`` (runs ``tokio_asyncio`` under
  ``pyo3_async_runtimes::testing::main``).
* pyo3-async-runtimes' own API, with no counterpart here: ``test_tasklocals_asyncio``,
  ``test_tasklocals_trio``, ``test_tasklocals_unsupported_library`` (``TaskLocals``
  and sniffio dispatch), ``test_future_into_py_tx_dropped_error`` (a custom
  ``generic::Runtime`` that never spawns), ``request_shutdown``'s "no runtime
  returns false" step of ``test_tokio_shutdown`` (a runtime here stops when idle;
  there is no call to stop it).
* trio only (this bridge binds to asyncio loops): ``test_trio_roundtrip``,
  ``test_into_future_trio_ok`` (the asyncio twin is
  ``test_into_future_asyncio_delegates``), ``test_future_into_py_dispatch_trio``,
  ``test_trio_panic`` (the asyncio twin is ``test_panic``), ``test_async_std_trio``,
  ``test_trio_into_stream_v1``, ``test_trio_into_stream_v2``,
  ``test_trio_into_stream_v2_backpressure`` (the asyncio twins are the
  ``test_async_gen_*`` ones), ``test_trio_into_stream_v2_gen_raises``,
  ``test_trio_into_stream_v2_gen_raises_base_exception`` (``into_stream_v2``'s rule
  of ending the stream quietly at an error is that API's own; an error ending the
  collection with itself is in ``test_async_gen_v1``).

Ported from trio probes onto asyncio: ``test_trio_cancel_scope_propagates``
(``move_on_after`` becomes ``asyncio.timeout``), ``test_trio_contextvars``,
``test_into_future_trio_error``, ``test_into_future_trio_base_exception``,
``test_future_into_py_close_cancels_rust`` (unstarted and started),
``test_trio_run_finished_error_swallowed`` (the run ending with its child
cancelled, and with its child left running). From ``test_smol_asyncio.rs`` only:
``test_async_gen_full_buffer``.

Task-based scenarios run each round twice on one loop: first before the bridge has
run anything there (``asyncio.Task`` steps the Rust coroutine), then after (the
bridge's task factory makes a ``RustTask``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest

import ipy_rustasync
from ipy_rustasync import RustPanic, rust_module

from .twins import Gate, Pair, Raised, Twin, araised, new_loop, raised, run

SOURCE = r"""
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;

fn join_error(err: tokio::task::JoinError) -> PyErr {
    PyRuntimeError::new_err(err.to_string())
}

/// `into_future`: Rust awaits a Python awaitable (a coroutine, a future, a Task).
pub async fn await_py(aw: ipy_rustasync::PyAwaitable) -> PyResult<Py<PyAny>> {
    aw.wait().await
}

/// test_async_sleep: a tokio sleep, then a Python awaitable.
pub async fn sleep_then_await(seconds: f64, aw: ipy_rustasync::PyAwaitable) -> PyResult<Py<PyAny>> {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    aw.wait().await
}

/// cvars_mod.async_callback: calls a Python async function from Rust.
pub async fn async_callback(f: ipy_rustasync::AsyncCallable) -> PyResult<Py<PyAny>> {
    f.call(()).await
}

/// into_stream: pulls items from `next` (an async callable) until it raises
/// StopAsyncIteration; any other exception ends the collection with it.
pub async fn collect_via(next: ipy_rustasync::AsyncCallable) -> PyResult<Vec<Py<PyAny>>> {
    let mut items = Vec::new();
    loop {
        match next.call(()).await {
            Ok(item) => items.push(item),
            Err(err) => {
                if Python::attach(|py| err.is_instance_of::<PyStopAsyncIteration>(py)) {
                    return Ok(items);
                }
                return Err(err);
            }
        }
    }
}

/// test_blocking_sleep: a blocking sleep on tokio's blocking pool.
pub async fn blocking_sleep(seconds: f64) -> PyResult<f64> {
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        seconds
    })
    .await
    .map_err(join_error)
}

/// test_spawn: a task spawned on the runtime answers through a oneshot channel.
pub async fn spawn_oneshot() -> u64 {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(42u64);
    });
    rx.await.unwrap_or(0)
}

/// test_spawn_blocking
pub async fn spawn_blocking_value() -> PyResult<u64> {
    tokio::task::spawn_blocking(|| {
        std::thread::sleep(Duration::from_millis(10));
        42u64
    })
    .await
    .map_err(join_error)
}

/// test_get_handle: synchronous code spawns on the cell's runtime through its handle.
pub fn handle_spawn() -> PyResult<u64> {
    let runtime = ipy_rustasync::runtime()?;
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.handle().spawn(async move {
        let _ = tx.send(42u64);
    });
    rx.recv_timeout(Duration::from_secs(5)).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// test_tokio_shutdown, step 4: spawn_blocking from synchronous code.
pub fn spawn_blocking_send() -> PyResult<u64> {
    let runtime = ipy_rustasync::runtime()?;
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(10));
        let _ = tx.send(42u64);
    });
    rx.recv_timeout(Duration::from_secs(5)).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// How many `spawn_detached` tasks have finished.
pub fn spawned() -> usize {
    SPAWNED.load(Ordering::SeqCst)
}

/// test_tokio_shutdown: a task on the runtime, tied to no call and no loop.
pub fn spawn_detached(ms: u64) -> PyResult<()> {
    ipy_rustasync::runtime()?.spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        SPAWNED.fetch_add(1, Ordering::SeqCst);
    });
    Ok(())
}

/// run_forever: a task on the runtime stops `event_loop` from a worker thread.
pub fn stop_later(event_loop: Py<PyAny>, seconds: f64) -> PyResult<()> {
    ipy_rustasync::runtime()?.spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        Python::attach(move |py| {
            let event_loop = event_loop.into_bound(py);
            let stop = event_loop.getattr("stop")?;
            event_loop.call_method1("call_soon_threadsafe", (stop,)).map(drop)
        })
        .unwrap_or_else(|err| Python::attach(|py| err.print(py)));
    });
    Ok(())
}
"""


@pytest.fixture(scope="module")
def cell() -> ModuleType:
    return rust_module(SOURCE)


class PythonSide:
    """The asyncio twins of the cell's functions: same names, same shapes."""

    async def await_py(self, aw: Awaitable[Any]) -> Any:
        return await aw

    async def sleep_then_await(self, seconds: float, aw: Awaitable[Any]) -> Any:
        await asyncio.sleep(seconds)
        return await aw

    async def async_callback(self, f: Callable[[], Awaitable[Any]]) -> Any:
        return await f()

    async def collect_via(self, next_item: Callable[[], Awaitable[Any]]) -> list[Any]:
        items = []
        while True:
            try:
                items.append(await next_item())
            except StopAsyncIteration:
                return items

    async def blocking_sleep(self, seconds: float) -> float:
        await asyncio.to_thread(time.sleep, seconds)
        return seconds

    def stop_later(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        timer = threading.Timer(seconds, loop.call_soon_threadsafe, (loop.stop,))
        timer.daemon = True
        timer.start()


@pytest.fixture
def sides(cell: ModuleType) -> dict[str, Any]:
    """Per twin name, what the scenario calls: the cell, or its asyncio twin."""
    return {"asyncio": PythonSide(), "rust": cell}


async def dropped_within(gate: Gate, seconds: float = 2.0) -> tuple[bool, bool]:
    """The gate's state once its body was dropped (a cancellation reaches a Rust
    future within milliseconds, not at once), or after ``seconds``."""
    for _ in range(int(seconds / 0.005)):
        if gate.state()[1]:
            break
        await asyncio.sleep(0.005)
    return gate.state()


def recording(handled: list[dict[str, Any]]) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler that appends each context to ``handled``."""

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        handled.append(context)

    return handler


async def both_task_kinds(t: Twin, round_: Callable[[], Awaitable[Any]]) -> list[Any]:
    """``round_()`` on a loop the bridge has not run on yet (its tasks are asyncio
    Tasks stepping the Rust coroutine), then again once it has (RustTasks). The
    asyncio twin runs it twice the same way."""
    fresh = await round_()
    await t.value(None)
    return [fresh, await round_()]


async def started_within(gate: Gate, seconds: float = 2.0) -> bool:
    for _ in range(int(seconds / 0.002)):
        if gate.state()[0]:
            return True
        await asyncio.sleep(0.002)
    return False


# --- tokio_asyncio/mod.rs and common/mod.rs ----------------------------------------------


def test_future_into_py(twins: Pair, sides: dict[str, Any]) -> None:
    """Rust awaits a Python coroutine (``sleep_for_1s``) which awaits a Rust sleep."""

    async def scenario(t: Twin) -> Any:
        async def sleep_for_1s(sleep_for: Callable[[float, Any], Awaitable[Any]]) -> Any:
            return await sleep_for(0.05, "slept")

        return await sides[t.name].await_py(sleep_for_1s(t.sleep))

    assert twins.same(scenario) == "slept"


def test_async_sleep(twins: Pair, sides: dict[str, Any]) -> None:
    """A sleep on the Rust side, then ``asyncio.sleep`` awaited from it."""

    async def scenario(t: Twin) -> Any:
        return await sides[t.name].sleep_then_await(0.05, asyncio.sleep(0.05, "both"))

    assert twins.same(scenario) == "both"


def test_blocking_sleep(twins: Pair, sides: dict[str, Any]) -> None:
    """A blocking sleep runs off the loop (tokio's blocking pool; ``to_thread`` for
    the twin): the loop keeps turning meanwhile."""

    async def scenario(t: Twin) -> Any:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        slept = await sides[t.name].blocking_sleep(0.2)
        task.cancel()
        await araised(task)
        return slept, ticks > 2

    assert twins.same(scenario) == (0.2, True)


def test_into_future(twins: Pair, sides: dict[str, Any]) -> None:
    """Rust awaits a Python coroutine (``py_sleep``)."""

    async def scenario(t: Twin) -> Any:
        async def py_sleep(duration: float) -> str:
            await asyncio.sleep(duration)
            return "woke"

        return await sides[t.name].await_py(py_sleep(0.05))

    assert twins.same(scenario) == "woke"


def test_other_awaitables(twins: Pair, sides: dict[str, Any]) -> None:
    """Rust awaits a future that is not a coroutine: ``run_in_executor``'s."""

    async def scenario(t: Twin) -> Any:
        loop = asyncio.get_running_loop()

        def blocking() -> str:
            time.sleep(0.05)
            return "executor"

        fut = loop.run_in_executor(None, functools.partial(blocking))
        return await sides[t.name].await_py(fut)

    assert twins.same(scenario) == "executor"


def test_panic(twins: Pair, control: ModuleType, cell: ModuleType) -> None:
    """Rust-side: a panic raises ``RustPanic`` (no asyncio twin: Python cannot
    panic), awaited directly, as a task, and (upstream's case) when Rust awaits the
    panicking coroutine as a Python awaitable."""
    message = "this panic was intentional!"

    async def main() -> list[Any]:
        seen: list[Any] = []
        makers: list[Callable[[], Awaitable[Any]]] = [
            lambda: control.panics(message),
            lambda: asyncio.ensure_future(control.panics(message)),
            lambda: cell.await_py(control.panics(message)),
        ]
        for make in makers:
            try:
                await make()
            except RustPanic as err:
                seen.append((type(err).__name__, err.rust_message))
            except BaseException as err:  # noqa: BLE001 - reported below
                seen.append((type(err).__name__, str(err)))
            else:
                seen.append("no exception")
        return seen

    assert run(twins.loop, main) == [("RustPanic", message)] * 3


def test_cancel__before_it_starts(twins: Pair) -> None:
    """Upstream cancels the Python future of a Rust sleep at once, then awaits it:
    CancelledError, and the body never completes. Here the task is cancelled before
    its first step, so (as for an ``async def``) the body never even starts."""

    async def scenario(t: Twin) -> Any:
        async def round_() -> Any:
            coro, gate = t.gated()
            task = asyncio.ensure_future(coro)
            task.cancel()
            outcome = await araised(task)
            await asyncio.sleep(0.05)
            gate.open("late")
            await asyncio.sleep(0.01)
            return outcome, task.cancelled(), gate.state()

        return await both_task_kinds(t, round_)

    assert twins.same(scenario) == [(Raised("CancelledError", ""), True, (False, False))] * 2


def test_cancel__after_it_started(twins: Pair) -> None:
    """The same, with the body running when the task is cancelled: it is dropped
    (``finally`` for the twin) and never completes, even when its gate opens."""

    async def scenario(t: Twin) -> Any:
        async def round_() -> Any:
            coro, gate = t.gated()
            task = asyncio.ensure_future(coro)
            assert await started_within(gate)
            task.cancel()
            outcome = await araised(task)
            state = await dropped_within(gate)
            gate.open("late")
            await asyncio.sleep(0.01)
            return outcome, task.cancelled(), state, gate.state()

        return await both_task_kinds(t, round_)

    assert twins.same(scenario) == [(Raised("CancelledError", ""), True, (True, True), (True, True))] * 2


def test_cancel__rust_awaits_a_cancelled_python_future(twins: Pair, sides: dict[str, Any]) -> None:
    """Upstream's other half: ``into_future`` of a cancelled Python future gives
    CancelledError on the Rust side, which raises it: the call raises
    CancelledError."""

    async def scenario(t: Twin) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        return await araised(sides[t.name].await_py(fut))

    assert twins.same(scenario) == Raised("CancelledError", "")


def test_cancel__a_task_of_it_ends_cancelled(twins: Pair, sides: dict[str, Any]) -> None:
    """The same call run as a task: a task whose coroutine raises CancelledError
    ends cancelled (asyncio's Task: ``super().cancel()``), not with CancelledError
    as its exception."""

    async def scenario(t: Twin) -> Any:
        async def round_() -> Any:
            fut = asyncio.get_running_loop().create_future()
            fut.cancel()
            task = asyncio.ensure_future(sides[t.name].await_py(fut))
            outcome = await araised(task)
            return outcome, task.cancelled()

        return await both_task_kinds(t, round_)

    assert twins.same(scenario) == [(Raised("CancelledError", ""), True)] * 2


def test_multiple_asyncio_run(twins: Pair) -> None:
    """``run`` from synchronous code twice (``ipy_rustasync.run``; the twin's
    coroutine goes through it too, which runs it like ``asyncio.run``), then two new
    loops, one after the other, each awaiting a sleep in ``run_until_complete``."""

    def scenario(t: Twin) -> list[Any]:
        seen = [ipy_rustasync.run(t.sleep(0.05, 1)), ipy_rustasync.run(t.sleep(0.05, 2))]
        for i in (3, 4):

            async def main(i: int = i) -> Any:
                return await t.sleep(0.05, i)

            loop = new_loop(twins.loop)
            try:
                seen.append(loop.run_until_complete(main()))
            finally:
                loop.close()
        return seen

    assert twins.same(scenario, sync=True) == [1, 2, 3, 4]


def test_contextvars(twins: Pair, sides: dict[str, Any]) -> None:
    """A Python async callback awaited from Rust sees the caller's context
    variables; run twice, each time under a new ``asyncio.run``."""

    def scenario(t: Twin) -> list[Any]:
        cx: contextvars.ContextVar[str] = contextvars.ContextVar("cx")

        async def contextvars_test() -> str:
            return cx.get()

        async def main() -> Any:
            cx.set("foobar")
            return await sides[t.name].async_callback(contextvars_test)

        return [run(twins.loop, main), run(twins.loop, main)]

    assert twins.same(scenario, sync=True) == ["foobar", "foobar"]


async def _numbers(count: int, pause: float | None) -> Any:
    for i in range(count):
        if pause is not None:
            await asyncio.sleep(pause)
        yield i


def test_async_gen_v1(twins: Pair, sides: dict[str, Any]) -> None:
    """``into_stream_v1``: Rust pulls a Python async generator's items one by one
    (through an ``async def`` calling ``anext``); an exception from the generator
    ends the pulling with that exception."""

    async def scenario(t: Twin) -> Any:
        gen = _numbers(10, 0.005)

        async def next_item() -> Any:
            return await anext(gen)

        items = await sides[t.name].collect_via(next_item)

        async def failing() -> Any:
            yield 1
            raise ValueError("gen failed")

        bad = failing()

        async def next_bad() -> Any:
            return await anext(bad)

        return items, await araised(sides[t.name].collect_via(next_bad))

    assert twins.same(scenario) == (list(range(10)), Raised("ValueError", "gen failed"))


def test_async_gen_v2(twins: Pair, sides: dict[str, Any]) -> None:
    """``into_stream_v2``: the same items, Rust calling the generator's own
    ``__anext__`` (whose result is an awaitable, not a coroutine)."""

    async def scenario(t: Twin) -> Any:
        gen = _numbers(10, 0.005)
        return await sides[t.name].collect_via(gen.__anext__)

    assert twins.same(scenario) == list(range(10))


def test_async_gen_full_buffer(twins: Pair, sides: dict[str, Any]) -> None:
    """From ``test_smol_asyncio.rs``: a generator that never waits, 1,000 items."""

    async def scenario(t: Twin) -> Any:
        gen = _numbers(1000, None)
        return await sides[t.name].collect_via(gen.__anext__)

    assert twins.same(scenario) == list(range(1000))


def test_spawn(cell: ModuleType) -> None:
    """Rust-side: ``tokio::spawn`` inside a cell future runs on the cell's runtime."""
    assert asyncio.run(cell.spawn_oneshot()) == 42


def test_spawn_blocking(cell: ModuleType) -> None:
    """Rust-side: ``tokio::task::spawn_blocking`` inside a cell future."""
    assert asyncio.run(cell.spawn_blocking_value()) == 42


def test_get_handle(cell: ModuleType) -> None:
    """Rust-side: synchronous cell code spawns through the runtime's handle
    (``ipy_rustasync::runtime()``, upstream's ``get_handle``), waiting on a std
    channel."""
    assert cell.handle_spawn() == 42


# --- test_tokio_multi_thread_uvloop.rs ----------------------------------------------------


def test_tokio_multi_thread_uvloop(twins: Pair, sides: dict[str, Any]) -> None:
    """The Rust side runs against the loop that awaited it (upstream checks it is a
    ``uvloop.Loop`` from inside the Rust future): a Python callback awaited from Rust
    runs on the caller's loop, of the caller's kind; then a Rust sleep. Run on both
    loop kinds; the uvloop run is upstream's."""

    async def scenario(t: Twin) -> Any:
        outer = asyncio.get_running_loop()

        async def current_loop() -> Any:
            return asyncio.get_running_loop()

        inner = await sides[t.name].async_callback(current_loop)
        return inner is outer, type(inner).__module__, await t.sleep(0.05, "slept")

    same, module, slept = twins.same(scenario)
    assert same and slept == "slept"
    assert module.startswith("uvloop" if twins.loop == "uvloop" else "asyncio")


# --- tokio_run_forever/mod.rs ------------------------------------------------------------


def test_tokio_multi_thread_run_forever(twins: Pair, sides: dict[str, Any]) -> None:
    """``run_forever`` on a new loop set as the current one, stopped by a task on
    the Rust runtime (a tokio task, tied to no call) through
    ``call_soon_threadsafe(loop.stop)``; the twin stops it from a Python thread."""

    def scenario(t: Twin) -> Any:
        loop = new_loop(twins.loop)
        asyncio.set_event_loop(loop)
        fallback = loop.call_later(30, loop.stop)
        try:
            sides[t.name].stop_later(loop, 0.05)
            loop.run_forever()
            stopped_early = loop.time() < fallback.when()
            fallback.cancel()
            return stopped_early
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    assert twins.same(scenario, sync=True) is True


# --- test_race_condition_regression.rs ---------------------------------------------------


def test_race_condition_regression(twins: Pair) -> None:
    """A task of a sleep cancelled at about the moment the sleep ends, on a new loop
    in debug mode each time: the loop's exception handler is never called, and
    every task ends either with its value or cancelled. (Upstream: 1,000 rounds of
    a 100 ms sleep; here 200 of 5 ms, half of them RustTasks, on both twins and both
    loop kinds.)"""

    def scenario(t: Twin) -> Any:
        rng = random.Random(7)
        handled: list[str] = []
        outcomes: set[Any] = set()
        for i in range(200):
            delay = rng.uniform(0.0049, 0.0051)
            loop = new_loop(twins.loop)
            loop.set_debug(True)
            loop.set_exception_handler(lambda _loop, context, seen=handled: seen.append(str(context.get("message"))))

            async def trigger_race_condition(delay: float = delay, warm: bool = i % 2 == 1) -> None:
                if warm:  # a RustTask; else an asyncio Task stepping the Rust coroutine
                    await t.value(None)
                task = asyncio.ensure_future(t.sleep(0.005, "done"))
                await asyncio.sleep(delay)
                task.cancel()
                outcomes.add(await araised(task))

            try:
                loop.run_until_complete(trigger_race_condition())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()
        return handled, outcomes <= {"done", Raised("CancelledError", "")}

    assert twins.same(scenario, sync=True) == ([], True)


# --- test_tokio_shutdown.rs --------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_tokio_shutdown(cell: ModuleType) -> None:
    """Rust-side: the cell's runtime runs a spawned task, shuts down (here: by going
    idle, ``IPY_RUSTASYNC_IDLE_SECONDS=0.2``, there being no call to stop it),
    starts again for the next task, and its handle and ``spawn_blocking`` work
    after a shutdown, as do coroutines. In a subprocess, for the idle setting."""
    code = textwrap.dedent(
        f"""
        import asyncio, os, time
        from ipy_rustasync import rust_module
        m = rust_module({SOURCE!r})

        def workers():
            n = 0
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{{tid}}/comm") as f:
                        n += f.read().startswith("ipy-rustasync-w")
                except OSError:
                    pass
            return n

        def within(check, seconds=10.0):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if check():
                    return True
                time.sleep(0.02)
            return check()

        m.spawn_detached(50)
        print("1 task ran:", within(lambda: m.spawned() == 1))
        print("1 shut down:", within(lambda: workers() == 0))
        m.spawn_detached(50)
        print("2 task ran after a restart:", within(lambda: m.spawned() == 2))
        print("2 shut down:", within(lambda: workers() == 0))
        print("3 handle:", m.handle_spawn())
        print("4 spawn_blocking:", m.spawn_blocking_send())
        print("shut down:", within(lambda: workers() == 0))
        print("coroutine after a shutdown:", asyncio.run(m.spawn_oneshot()))
        """
    )
    env = {**os.environ, "IPY_RUSTASYNC_IDLE_SECONDS": "0.2"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "1 task ran: True",
        "1 shut down: True",
        "2 task ran after a restart: True",
        "2 shut down: True",
        "3 handle: 42",
        "4 spawn_blocking: 42",
        "shut down: True",
        "coroutine after a shutdown: 42",
    ], out.stdout + out.stderr


# --- test_trio.rs: its asyncio probes, and trio probes that mean something on asyncio ----


def test_asyncio_roundtrip(twins: Pair) -> None:
    """A Rust sleep returning 42, awaited by an ``async def`` driver."""

    async def scenario(t: Twin) -> Any:
        async def main(f: Callable[[], Awaitable[Any]]) -> Any:
            return await f()

        return await main(lambda: t.sleep(0.05, 42))

    assert twins.same(scenario) == 42


def test_tasklocals_no_loop(twins: Pair) -> None:
    """Started with no loop running: a coroutine that needs the loop raises
    RuntimeError (upstream: ``TaskLocals::current`` says "no running event loop";
    here the Rust coroutine says it must be awaited inside a running loop, the twin
    is ``asyncio.sleep``'s "no running event loop"); one that is ready at once
    returns without a loop, Rust's inline path as an ``async def``."""

    def scenario(t: Twin) -> Any:
        sleeping = t.sleep(0.01, 1)
        needs_loop = raised(lambda: sleeping.send(None))
        sleeping.close()
        ready = t.value_inline(2)
        return (needs_loop.type if isinstance(needs_loop, Raised) else needs_loop), raised(lambda: ready.send(None))

    assert twins.same(scenario, sync=True) == ("RuntimeError", Raised("StopIteration", "2"))


def test_into_future_asyncio_delegates(twins: Pair, sides: dict[str, Any]) -> None:
    """Rust awaits a coroutine that yields to the loop once, then returns 9."""

    async def scenario(t: Twin) -> Any:
        async def aw() -> int:
            await asyncio.sleep(0)
            return 9

        return await sides[t.name].await_py(aw())

    assert twins.same(scenario) == 9


def test_future_into_py_dispatch_asyncio(twins: Pair) -> None:
    """Upstream's call gives an asyncio future; here, as an ``async def``, a
    coroutine, which ``ensure_future`` makes a future that cancels as one."""

    async def scenario(t: Twin) -> Any:
        async def round_() -> Any:
            coro, _gate = t.gated()
            kind = [asyncio.isfuture(coro), asyncio.iscoroutine(coro)]
            coro.close()
            coro, gate = t.gated()
            fut = asyncio.ensure_future(coro)
            kind += [asyncio.isfuture(fut), asyncio.iscoroutine(fut), fut.cancel()]
            return kind, await araised(fut), fut.cancelled(), gate.state()

        return await both_task_kinds(t, round_)

    assert (
        twins.same(scenario)
        == [([False, True, True, False, True], Raised("CancelledError", ""), True, (False, False))] * 2
    )


def test_trio_cancel_scope_propagates(twins: Pair) -> None:
    """trio's ``move_on_after`` around a Rust future that never ends, as
    ``asyncio.timeout``: the timeout fires and the Rust future is dropped."""

    async def scenario(t: Twin) -> Any:
        coro, gate = t.gated()
        start = time.monotonic()

        async def bounded() -> None:
            async with asyncio.timeout(0.05):
                await coro

        outcome = await araised(bounded())
        elapsed = time.monotonic() - start
        return outcome, elapsed < 5.0, await dropped_within(gate)

    assert twins.same(scenario) == (Raised("TimeoutError", ""), True, (True, True))


def test_trio_contextvars(twins: Pair, sides: dict[str, Any]) -> None:
    """A coroutine handed to Rust as an awaitable runs in the caller's context."""

    async def scenario(t: Twin) -> Any:
        cx: contextvars.ContextVar[str] = contextvars.ContextVar("cx")

        async def reader() -> str:
            return cx.get()

        cx.set("foobar")
        return await sides[t.name].await_py(reader())

    assert twins.same(scenario) == "foobar"


def test_into_future_trio_error(twins: Pair, sides: dict[str, Any]) -> None:
    """An exception of the Python awaitable comes back through Rust as itself."""

    async def scenario(t: Twin) -> Any:
        async def aw() -> None:
            raise ValueError("boom")

        return await araised(sides[t.name].await_py(aw()))

    assert twins.same(scenario) == Raised("ValueError", "boom")


class MyBase(BaseException):
    pass


def test_into_future_trio_base_exception(twins: Pair, sides: dict[str, Any]) -> None:
    """The same with a ``BaseException`` that is not an ``Exception``."""

    async def scenario(t: Twin) -> Any:
        async def aw() -> None:
            raise MyBase("boom")

        return await araised(sides[t.name].await_py(aw()))

    assert twins.same(scenario) == Raised("MyBase", "boom")


def test_future_into_py_close_cancels_rust__unstarted(twins: Pair) -> None:
    """``close()`` on a coroutine never started: its body never runs (upstream's
    future had been spawned at the call, so closing dropped it)."""

    async def scenario(t: Twin) -> Any:
        coro, gate = t.gated()
        coro.close()
        await asyncio.sleep(0.05)
        return gate.state()

    assert twins.same(scenario) == (False, False)


def test_future_into_py_close_cancels_rust__started(twins: Pair) -> None:
    """``close()`` on a coroutine whose body is waiting drops the Rust future
    (``finally`` runs for the twin), and it never completes."""

    async def scenario(t: Twin) -> Any:
        coro, gate = t.gated()
        yielded = coro.send(None)
        assert await started_within(gate)
        outcome = raised(coro.close)
        state = await dropped_within(gate)
        gate.open("late")
        await asyncio.sleep(0.01)
        return asyncio.isfuture(yielded), outcome, state, gate.state()

    assert twins.same(scenario) == (True, None, (True, True), (True, True))


def test_trio_run_finished_error_swallowed__child_cancelled(twins: Pair, capfd: pytest.CaptureFixture[str]) -> None:
    """A child awaiting a Rust sleep is cancelled (trio's nursery cancelling it),
    its loop closes, and the time the sleep would have ended passes: nothing is
    printed, nothing reaches the loop's exception handler."""

    def scenario(t: Twin) -> Any:
        seen = []
        for warm in (False, True):
            capfd.readouterr()
            handled: list[Any] = []
            loop = new_loop(twins.loop)
            loop.set_exception_handler(recording(handled))

            async def main(warm: bool = warm) -> Any:
                if warm:
                    await t.value(None)
                child = asyncio.ensure_future(t.sleep(0.05, 42))
                await asyncio.sleep(0)
                child.cancel()
                return await araised(child)

            try:
                outcome = loop.run_until_complete(main())
            finally:
                loop.close()
            time.sleep(0.15)
            seen.append((outcome, handled, capfd.readouterr().err))
        return seen

    assert twins.same(scenario, sync=True) == [(Raised("CancelledError", ""), [], "")] * 2


def test_trio_run_finished_error_swallowed__child_left_running(twins: Pair) -> None:
    """The run finishes with the child still waiting on a Rust sleep (nobody
    cancels it) and the loop is closed; the sleep then ends, with no loop to
    deliver to. asyncio's pending task is collected and reported ("Task was
    destroyed but it is pending!"), and nothing else is; the Rust one must go the
    same way, not be kept alive (with its loop) by the undeliverable result."""

    def scenario(t: Twin) -> Any:
        seen = []
        for warm in (False, True):
            handled: list[str] = []
            loop = new_loop(twins.loop)
            # Only the message is kept: a handler keeping the context (which holds the
            # task) would resurrect it, and whether the weak reference below is then
            # already cleared depends on whether the collector or a reference count
            # freed it (the collector clears weak references before finalizers run).
            loop.set_exception_handler(lambda _loop, context, seen=handled: seen.append(str(context.get("message"))))

            async def main(warm: bool = warm) -> Any:
                if warm:
                    await t.value(None)
                return asyncio.ensure_future(t.sleep(0.05, 42))

            child = loop.run_until_complete(main())
            loop.close()
            ref = weakref.ref(child)
            del child
            time.sleep(0.15)
            gc.collect()
            seen.append((handled, ref() is None))
        return seen

    assert twins.same(scenario, sync=True) == [(["Task was destroyed but it is pending!"], True)] * 2
