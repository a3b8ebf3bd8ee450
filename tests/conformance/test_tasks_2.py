"""CPython's ``test_asyncio/test_tasks.py`` from ``test_wait_generator`` to the end
(3.13 form; the tests 3.11 lacks are skipped there), each scenario run with an
asyncio twin and a Rust twin. Most scenarios first await one Rust coroutine, so
that on the Rust side the loop has the bridge's task factory and the tasks wrapping
Rust coroutines are ``RustTask``s (on a fresh loop they would be ``asyncio.Task``s
stepping the coroutine). Upstream tests whose Python coroutine body awaits a
future keep a Python body and await a twin awaitable in it; a test loop's virtual
clock becomes real (short) sleeps. An upstream test run over several variants is
split: ``__iterator``/``__async_iterator`` (as_completed), ``__futures`` (gather of
tasks of Rust coroutines)/``__coroutines`` (gather of the coroutines themselves).
Where a RustTask differs from an asyncio.Task by design (it is no asyncio.Task
instance; it is held by the runtime while it runs; an exception raised in Rust
has no Python frames), the test asserts both documented outcomes side by side.

Not ported:

BaseTaskTests
- test_sleep_when_delay_is_nan: asyncio.sleep's own argument check (the Rust twin's sleep is the control cell's).
- test_step_result_future: a Python Future subclass observing Task.__step's add_done_callback; nothing foreign.
- test_error_in_call_soon: mock-patches loop.call_soon (a RustTask is started by the bridge's channel, not call_soon).

add_subclass_tests, SetMethodsTest, CTask_CFuture_Tests, CTask_Future_Tests
- test_subclasses_ctask_cfuture: subclasses of asyncio's own Task and Future classes.
- test_set_result_causes_invalid_state: calls asyncio.Future.set_result unbound on a Task (a RustTask is no Future).
- test_set_exception_causes_invalid_state: likewise with Future.set_exception.
- test_refleaks_in_task___init__: reference counts of the C Task's __init__ (debug builds).
- test_foobar: a Python Future subclass whose get_loop is missing; Rust futures always have get_loop.

BaseTaskIntrospectionTests (asyncio's bookkeeping functions fed mock tasks)
- test__enter_task, test__enter_task_failure, test__leave_task, test__leave_task_failure1,
  test__leave_task_failure2: the current-task slot is entered only by Python Tasks; a RustTask's body is Rust
  and never is "current" (current_task around Rust awaits is ported: test_current_task*).

GenericTaskTests
- test_asyncio_module_compiled: whether CPython built its _asyncio module.

GatherTestsBase / FutureGatherTests
- test_env_var_debug: PYTHONASYNCIODEBUG parsing in a subprocess.
- test_constructor_empty_sequence_without_loop: gather() with nothing to gather and no loop; no awaitable at all.

CompatibilityTests: has no tests left (generator-based coroutines are gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import random
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import ModuleType
from typing import Any

import pytest

from ipy_rustasync import rust_module

from .twins import Gate, Pair, Raised, Twin, araised, new_loop, raised, recorded_handler, run_briefly

#: Rust awaiting Python: the callback runs on the caller's loop, in the caller's context.
EXTRA = r"""
use pyo3::prelude::*;

/// Awaits `f()` (a Python async callable) and returns what it returned.
pub async fn call_back(f: ipy_rustasync::AsyncCallable) -> PyResult<Py<PyAny>> {
    f.call(()).await
}
"""

PY313 = sys.version_info >= (3, 13)
only_313 = pytest.mark.skipif(not PY313, reason="the upstream test (or the API) is new in 3.13")
only_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="Task.get_context is new in 3.12")


@pytest.fixture(scope="module")
def extra() -> ModuleType:
    return rust_module(EXTRA)


CallBack = Callable[[Twin, Callable[[], Awaitable[Any]]], Coroutine[Any, Any, Any]]


@pytest.fixture
def call_back(extra: ModuleType) -> CallBack:
    """``call_back(t, f)``: a coroutine awaiting ``f()`` and returning its result;
    Rust: the cell's ``call_back``, Python: an ``async def`` doing ``await f()``."""

    def make(t: Twin, f: Callable[[], Awaitable[Any]]) -> Coroutine[Any, Any, Any]:
        if t.name == "rust":
            return extra.call_back(f)  # type: ignore[no-any-return]

        async def call_back() -> Any:
            return await f()

        return call_back()

    return make


# --- helpers --------------------------------------------------------------------------


async def warm(t: Twin) -> None:
    """Runs one of the twin's coroutines on the running loop: afterwards, on the Rust
    side, the loop has the bridge's task factory (tasks of Rust coroutines are
    RustTasks). A no-op for asyncio."""
    await t.value(None)


def warm_loop(t: Twin, loop: asyncio.AbstractEventLoop) -> None:
    """:func:`warm` for a loop that is not running."""
    loop.run_until_complete(t.value(None))


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Lets the loop run until ``predicate()`` holds (False if it did not in time).
    A Rust future finishes on a runtime thread, a turn or two later than an
    ``async def`` would; scenarios wait for the state they then observe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(3):
        if predicate():
            return True
        await asyncio.sleep(0)
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def started(*gates: Gate) -> Callable[[], bool]:
    return lambda: all(g.state()[0] for g in gates)


def dropped(*gates: Gate) -> Callable[[], bool]:
    return lambda: all(g.state()[1] for g in gates)


def gated_task(t: Twin) -> tuple[asyncio.Future[Any], Gate]:
    """A task of a gated coroutine (a RustTask on a warm loop)."""
    coro, gate = t.gated()
    return asyncio.ensure_future(coro), gate


def each(twins: Pair, scenario: Callable[[Twin], Any], *, sync: bool = False) -> dict[str, Any]:
    """Both twins' observations, for a test whose outcome differs by design."""
    return {t.name: twins.observe(t, scenario, sync=sync) for t in (twins.python, twins.rust)}


def messages(twins: Pair) -> dict[str, list[str]]:
    """The loop exception-handler messages of the last run, per twin."""
    return {name: [c["message"] for c in calls] for name, calls in twins.handled.items()}


@contextlib.contextmanager
def own_loop(kind: str) -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_loop(kind)
    try:
        yield loop
    finally:
        loop.close()


@contextlib.contextmanager
def global_loop(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """``asyncio.set_event_loop(loop)`` for the block."""
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)


def without_loop(call: Callable[[], Any]) -> Any:
    """``raised(call)`` in a new thread that has no event loop."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(outcome=raised(call)), name="no-loop")
    thread.start()
    thread.join()
    return box["outcome"]


def innermost_context(exc: BaseException) -> tuple[str, tuple[Any, ...], int]:
    """upstream's get_innermost_context: the innermost exception of the chain."""
    depth = 0
    while exc.__context__ is not None:
        exc, depth = exc.__context__, depth + 1
    return type(exc).__name__, exc.args, depth


class CoroLikeObject:
    def send(self, v: Any) -> Any:
        raise StopIteration(42)

    def throw(self, *exc: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __await__(self) -> Any:
        return self


# --- BaseTaskTests: wait, as_completed ------------------------------------------------


@only_313
def test_wait_generator(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        tasks = (asyncio.ensure_future(t.value(i)) for i in range(10))
        done, pending = await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
        return [len(done), len(pending), sorted(f.result() for f in done)]

    assert twins.same(scenario) == [10, 0, list(range(10))]


async def _iterate(awaitables: Any, asynchronous: bool, **kwargs: Any) -> list[Any]:
    values = []
    if asynchronous:
        async for f in asyncio.as_completed(awaitables, **kwargs):
            values.append(await f)
    else:
        for f in asyncio.as_completed(awaitables, **kwargs):
            values.append(await f)
    return values


def _as_completed(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        a, b, c = t.sleep(0.01, "a"), t.sleep(0.01, "b"), t.sleep(0.15, "c")
        res = await _iterate([b, c, a], asynchronous)
        return [sorted(res[:2]), res[2:]]

    assert twins.same(scenario) == [["a", "b"], ["c"]]


def test_as_completed__iterator(twins: Pair) -> None:
    _as_completed(twins, False)


@only_313
def test_as_completed__async_iterator(twins: Pair) -> None:
    _as_completed(twins, True)


@only_313
def test_as_completed_same_tasks_in_as_out(twins: Pair) -> None:
    async def outs(awaitables: Any) -> set[Any]:
        return {aw async for aw in asyncio.as_completed(awaitables)}

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coros = frozenset((t.value(0), t.value(1), t.value(2), t.value(3)))
        # Coroutines are not given back (a finished one cannot be reused).
        none_back = coros & await outs(coros) == set()
        loop = asyncio.get_running_loop()
        task_b, task_d = loop.create_task(t.value("b")), loop.create_task(t.value("d"))
        mixed = frozenset((t.value("a"), task_b, t.value("c"), task_d))
        # Tasks are given back as they are.
        tasks_back = mixed & await outs(mixed) == {task_b, task_d}
        return [none_back, tasks_back]

    assert twins.same(scenario) == [True, True]


def _as_completed_with_timeout(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        a = loop.create_task(t.sleep(0.01, "a"))
        b = loop.create_task(t.sleep(10, "b"))
        values: list[Any] = []
        if asynchronous:
            try:
                async for f in asyncio.as_completed([a, b], timeout=0.3):
                    values.append((1, await f))
            except TimeoutError as exc:
                values.append((2, type(exc).__name__))
        else:
            for f in asyncio.as_completed([a, b], timeout=0.3):
                try:
                    values.append((1, await f))
                except TimeoutError as exc:
                    values.append((2, type(exc).__name__))
        # The timeout leaves b alone.
        values.append(b.done())
        b.cancel()
        values.append(await araised(b))
        return values

    assert twins.same(scenario) == [(1, "a"), (2, "TimeoutError"), False, Raised("CancelledError", "")]


def test_as_completed_with_timeout__iterator(twins: Pair) -> None:
    _as_completed_with_timeout(twins, False)


@only_313
def test_as_completed_with_timeout__async_iterator(twins: Pair) -> None:
    _as_completed_with_timeout(twins, True)


def _as_completed_with_unused_timeout(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        return await _iterate([t.sleep(0.01, "a")], asynchronous, timeout=1)

    assert twins.same(scenario) == ["a"]


def test_as_completed_with_unused_timeout__iterator(twins: Pair) -> None:
    _as_completed_with_unused_timeout(twins, False)


@only_313
def test_as_completed_with_unused_timeout__async_iterator(twins: Pair) -> None:
    _as_completed_with_unused_timeout(twins, True)


def _as_completed_resume_iterator(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        iterator = asyncio.as_completed((t.value(0), t.value(1), t.value(2), t.value(3)))
        collected = []
        if asynchronous:
            async for f in iterator:
                collected.append(await f)
                if len(collected) == 2:
                    break
            first = len(collected)
            async for f in iterator:  # resumed
                collected.append(await f)
        else:
            for f in iterator:
                collected.append(await f)
                if len(collected) == 2:
                    break
            first = len(collected)
            for f in iterator:  # resumed
                collected.append(await f)
        return [first, sorted(collected)]

    assert twins.same(scenario) == [2, [0, 1, 2, 3]]


def test_as_completed_resume_iterator__iterator(twins: Pair) -> None:
    _as_completed_resume_iterator(twins, False)


@only_313
def test_as_completed_resume_iterator__async_iterator(twins: Pair) -> None:
    _as_completed_resume_iterator(twins, True)


def test_as_completed_reverse_wait(twins: Pair) -> None:
    """The first awaitable awaited gives the first to finish, whichever it is."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        fs = {t.sleep(0.02, "a"), t.sleep(0.3, "b")}
        futs = list(asyncio.as_completed(fs))
        return [len(futs), await futs[1], await futs[0]]

    assert twins.same(scenario) == [2, "a", "b"]


def _as_completed_concurrent(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        fs = {t.sleep(0.05, "a"), t.sleep(0.05, "b")}
        futs = [f async for f in asyncio.as_completed(fs)] if asynchronous else list(asyncio.as_completed(fs))
        done, _ = await asyncio.wait([asyncio.ensure_future(f) for f in futs])
        return [len(futs), sorted(f.result() for f in done)]

    assert twins.same(scenario) == [2, ["a", "b"]]


def test_as_completed_concurrent__iterator(twins: Pair) -> None:
    _as_completed_concurrent(twins, False)


@only_313
def test_as_completed_concurrent__async_iterator(twins: Pair) -> None:
    _as_completed_concurrent(twins, True)


def _as_completed_duplicate_coroutines(twins: Pair, asynchronous: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        c = t.value("ham")

        async def runner() -> list[Any]:
            return await _iterate([c, c, t.value("spam")], asynchronous)

        result = await asyncio.ensure_future(runner())
        return [len(result), sorted(set(result))]

    assert twins.same(scenario) == [2, ["ham", "spam"]]


def test_as_completed_duplicate_coroutines__iterator(twins: Pair) -> None:
    _as_completed_duplicate_coroutines(twins, False)


@only_313
def test_as_completed_duplicate_coroutines__async_iterator(twins: Pair) -> None:
    _as_completed_duplicate_coroutines(twins, True)


def test_as_completed_coroutine_without_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> Any:
        a = t.value(42)
        try:
            return without_loop(lambda: list(asyncio.as_completed([a])))
        finally:
            a.close()

    outcome = twins.same(scenario, sync=True)
    assert isinstance(outcome, Raised) and outcome.type == "RuntimeError"
    assert "no current event loop" in outcome.message


def test_as_completed_coroutine_use_running_loop(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        futs = list(asyncio.as_completed([t.value(42)]))
        return [len(futs), await futs[0]]

    assert twins.same(scenario) == [1, 42]


# --- BaseTaskTests: sleeping and cancelling -------------------------------------------


def test_sleep(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()

        async def sleeper(dt: float, arg: Any) -> Any:
            await t.sleep(dt / 2)
            return await t.sleep(dt / 2, arg)

        start = loop.time()
        task = asyncio.ensure_future(sleeper(0.1, "yeah"))
        result = await task
        return [task.done(), result, loop.time() - start >= 0.09]

    assert twins.same(scenario) == [True, "yeah", True]


def test_sleep_cancel(twins: Pair) -> None:
    """Cancelling a task releases what it sleeps on (upstream: its timer handle is
    cancelled; here: the gated body is dropped)."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task, gate = gated_task(t)
        await until(started(gate))
        before = gate.state()
        task.cancel()
        outcome = await araised(task)
        await until(dropped(gate))
        return [before, outcome, gate.state()]

    assert twins.same(scenario) == [(True, False), Raised("CancelledError", ""), (True, True)]


def test_task_cancel_sleeping_task(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def doit() -> str:
            sleeper = asyncio.ensure_future(t.sleep(5000))
            loop.call_later(0.1, sleeper.cancel)
            try:
                await sleeper
            except asyncio.CancelledError:
                return "cancelled"
            return "slept in"

        return [await doit(), 0.09 <= loop.time() - start < 4]

    assert twins.same(scenario) == ["cancelled", True]


def test_task_cancel_waiter_future(twins: Pair) -> None:
    """A Task waiting on a Rust awaitable cancels the future it waits on."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()

        async def body() -> None:
            await coro

        task = asyncio.ensure_future(body())
        await until(started(gate))
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        seen = [asyncio.isfuture(waiter), waiter.done()]
        task.cancel()
        seen += [await araised(task), task._fut_waiter is None, waiter.cancelled()]  # type: ignore[attr-defined]
        await until(dropped(gate))
        return [*seen, gate.state()]

    assert twins.same(scenario) == [True, False, Raised("CancelledError", ""), True, True, (True, True)]


def test_task_set_methods(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value("ko"))
        return [raised(lambda: task.set_result("ok")), raised(lambda: task.set_exception(ValueError())), await task]

    assert twins.same(scenario) == [
        Raised("RuntimeError", "Task does not support set_result operation"),
        Raised("RuntimeError", "Task does not support set_exception operation"),
        "ko",
    ]


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")  # run_briefly's, interrupted
def test_baseexception_during_cancel(twins: Pair) -> None:
    """A BaseException raised by a coroutine taking the CancelledError of the Rust
    awaitable it waits on stops the loop and ends the task with it."""

    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            coro, _ = t.gated()
            base_exc = SystemExit()

            async def notmuch() -> None:
                try:
                    await coro
                except asyncio.CancelledError:
                    raise base_exc from None

            task = loop.create_task(notmuch())
            run_briefly(loop)
            task.cancel()
            seen = [task.done(), raised(lambda: run_briefly(loop, 3))]
            return [*seen, task.done(), task.cancelled(), task.exception() is base_exc]

    assert twins.same(scenario, sync=True) == [False, Raised("SystemExit", ""), True, False, True]


def test_iscoroutinefunction(twins: Pair) -> None:
    async def python_function() -> None:
        pass

    def flags(f: Any) -> list[bool]:
        import inspect

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # asyncio's, from 3.14
            return [asyncio.iscoroutinefunction(f), inspect.iscoroutinefunction(f)]

    seen = {"asyncio": flags(python_function), "rust": flags(twins.rust.mod.value)}
    assert seen == {"asyncio": [True, True], "rust": [True, True]}


def test_coroutine_non_gen_function(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            coro = t.value("test")
            return [asyncio.iscoroutine(coro), loop.run_until_complete(coro)]

    assert twins.same(scenario, sync=True) == [True, "test"]


def test_coroutine_non_gen_function_return_future(twins: Pair) -> None:
    """A coroutine returning a future: the task's result is that future, not awaited."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        fut = asyncio.get_running_loop().create_future()

        async def coro() -> None:
            fut.set_result("test")

        t1 = asyncio.ensure_future(t.value(fut))
        t2 = asyncio.ensure_future(coro())
        res = await t1
        await t2
        return [res is fut, t2.result(), fut.result()]

    assert twins.same(scenario) == [True, None, "test"]


# --- BaseTaskTests: current_task ------------------------------------------------------


def test_current_task(twins: Pair) -> None:
    """The current task stays the Python task across the Rust awaitables it awaits;
    a RustTask's done callback runs with no current task."""

    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            seen: list[Any] = [asyncio.current_task(loop=loop)]

            async def coro() -> None:
                seen.append(asyncio.current_task() is task)
                await t.value(1)
                seen.append(asyncio.current_task(None) is task)
                inner = asyncio.ensure_future(t.value(2))
                inner.add_done_callback(lambda _: seen.append(asyncio.current_task()))
                await inner
                seen.append(asyncio.current_task() is task)

            task = loop.create_task(coro())
            loop.run_until_complete(task)
            return [*seen, asyncio.current_task(loop=loop)]

    assert twins.same(scenario, sync=True) == [None, True, True, None, True, None]


def test_current_task_with_interleaving_tasks(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            seen: list[Any] = [asyncio.current_task(loop=loop)]
            c1, g1 = t.gated()
            c2, g2 = t.gated()

            async def coro1() -> None:
                seen.append(("1a", asyncio.current_task() is task1))
                await c1
                seen.append(("1b", asyncio.current_task() is task1))
                g2.open(True)

            async def coro2() -> None:
                seen.append(("2a", asyncio.current_task() is task2))
                g1.open(True)
                await c2
                seen.append(("2b", asyncio.current_task() is task2))

            task1 = loop.create_task(coro1())
            task2 = loop.create_task(coro2())
            loop.run_until_complete(asyncio.wait((task1, task2)))
            return [*seen, asyncio.current_task(loop=loop)]

    assert twins.same(scenario, sync=True) == [None, ("1a", True), ("2a", True), ("1b", True), ("2b", True), None]


# --- BaseTaskTests: cancellation through coroutines, tasks, wait and shield ------------


def test_yield_future_passes_cancel(twins: Pair) -> None:
    """Cancelling outer() cancels inner() cancels the Rust awaitable it waits on."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()
        proof = 0

        async def inner() -> None:
            nonlocal proof
            try:
                await coro
            except asyncio.CancelledError:
                proof += 1
                raise
            proof += 1000  # got past the gate

        async def outer() -> None:
            nonlocal proof
            try:
                await inner()
            except asyncio.CancelledError:
                proof += 100  # the expected path
            else:
                proof += 10

        f = asyncio.ensure_future(outer())
        await until(started(gate))
        f.cancel()
        await f
        await until(dropped(gate))
        return [proof, f.cancelled(), gate.state()]

    assert twins.same(scenario) == [101, False, (True, True)]


def test_yield_wait_does_not_shield_cancel(twins: Pair) -> None:
    """Cancelling outer() makes wait() return early and leaves the task it waited for running."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()
        proof = 0
        tasks = []

        async def outer() -> None:
            nonlocal proof
            tasks.append(asyncio.create_task(coro))
            await asyncio.wait(tasks)
            proof += 100

        f = asyncio.ensure_future(outer())
        await until(started(gate))
        f.cancel()
        outcome = await araised(f)
        gate.open(1)
        return [outcome, await tasks[0], proof, gate.state()]

    assert twins.same(scenario) == [Raised("CancelledError", ""), 1, 0, (True, False)]


def test_shield_result(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()
        outer = asyncio.shield(coro)
        gate.open(42)
        return [await outer, await asyncio.shield(t.value(43))]

    assert twins.same(scenario) == [42, 43]


def test_shield_exception(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()
        outer = asyncio.shield(coro)
        await asyncio.sleep(0)
        exc = RuntimeError("expected")
        gate.fail(exc)
        await asyncio.wait([outer])
        return [outer.exception() is exc]

    assert twins.same(scenario) == [True]


def test_shield_cancel_inner(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        inner, _ = gated_task(t)
        outer = asyncio.shield(inner)
        await asyncio.sleep(0)
        inner.cancel()
        await asyncio.wait([outer])
        return [inner.cancelled(), outer.cancelled()]

    assert twins.same(scenario) == [True, True]


def test_shield_cancel_outer(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        inner, gate = gated_task(t)
        outer = asyncio.shield(inner)
        await asyncio.sleep(0)
        outer.cancel()
        await asyncio.sleep(0)
        seen = [outer.cancelled(), inner.done()]
        gate.open(5)
        return [*seen, await inner, gate.state()[1]]

    assert twins.same(scenario) == [True, False, 5, False]
    assert messages(twins) == {"asyncio": [], "rust": []}


def test_shield_shortcut(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value(42))
        await task
        shielded = asyncio.shield(task)
        return [shielded is task, await shielded]

    assert twins.same(scenario) == [True, 42]


def test_shield_effect(twins: Pair) -> None:
    """Cancelling outer() does not affect the shielded Rust awaitable."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro, gate = t.gated()
        proof = 0

        async def outer() -> None:
            nonlocal proof
            await asyncio.shield(coro)
            proof += 100

        f = asyncio.ensure_future(outer())
        await until(started(gate))
        f.cancel()
        outcome = await araised(f)
        # The task shield() made still runs, and is among the loop's tasks.
        inner = list(asyncio.all_tasks() - {asyncio.current_task()})
        gate.open(1)
        return [outcome, len(inner), await inner[0], proof, gate.state()]

    assert twins.same(scenario) == [Raised("CancelledError", ""), 1, 1, 0, (True, False)]


def test_shield_gather(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        (c1, g1), (c2, g2) = t.gated(), t.gated()
        parent = asyncio.gather(c1, c2)
        outer = asyncio.shield(parent)
        await asyncio.sleep(0)
        outer.cancel()
        await asyncio.sleep(0)
        seen = [outer.cancelled()]
        g1.open(1)
        g2.open(2)
        return [*seen, await parent]

    assert twins.same(scenario) == [True, [1, 2]]


def test_gather_shield(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        (child1, g1), (child2, g2) = gated_task(t), gated_task(t)
        inner1, inner2 = asyncio.shield(child1), asyncio.shield(child2)
        parent = asyncio.gather(inner1, inner2)
        await asyncio.sleep(0)
        # This cancels inner1 and inner2 but not child1 and child2.
        parent.cancel()
        await asyncio.wait([parent])
        seen = [type(parent.exception()).__name__, inner1.cancelled(), inner2.cancelled()]
        seen += [child1.done(), child2.done()]
        g1.open(1)
        g2.open(2)
        return [*seen, await child1, await child2]

    assert twins.same(scenario) == ["CancelledError", True, True, False, False, 1, 2]


def test_shield_coroutine_without_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> Any:
        inner = t.value(42)
        try:
            return without_loop(lambda: asyncio.shield(inner))
        finally:
            inner.close()

    outcome = twins.same(scenario, sync=True)
    assert isinstance(outcome, Raised) and outcome.type == "RuntimeError"
    assert "no current event loop" in outcome.message


def test_shield_coroutine_use_running_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)

            async def test() -> Any:
                return asyncio.shield(t.value(42))

            outer = loop.run_until_complete(test())
            return [outer.get_loop() is loop, loop.run_until_complete(outer)]

    assert twins.same(scenario, sync=True) == [True, 42]


def test_shield_coroutine_use_global_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop, global_loop(loop):
            warm_loop(t, loop)
            outer = asyncio.shield(t.value(42))
            return [outer.get_loop() is loop, loop.run_until_complete(outer)]

    assert twins.same(scenario, sync=True) == [True, 42]


def test_as_completed_invalid_args(twins: Pair) -> None:
    """as_completed() takes an iterable of awaitables, not a future (a task) or a coroutine."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task: Any = asyncio.ensure_future(t.value(1))
        coro: Any = t.value(2)
        seen = [
            raised(lambda: next(iter(asyncio.as_completed(task)))),
            raised(lambda: next(iter(asyncio.as_completed(coro)))),
        ]

        async def try_async_iterator(aw: Any) -> None:
            async for _ in asyncio.as_completed(aw):
                break

        seen += [await araised(try_async_iterator(task)), await araised(try_async_iterator(coro))]
        coro.close()
        await task
        return [s.type for s in seen]

    assert twins.same(scenario) == ["TypeError"] * 4


def test_wait_invalid_args(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value(1))
        coro = t.value(2)
        # wait() takes an iterable of futures, not a future (a task) nor a coroutine, and not an empty one.
        seen = [await araised(asyncio.wait(task)), await araised(asyncio.wait(coro)), await araised(asyncio.wait([]))]  # type: ignore[arg-type]
        coro.close()
        await task
        return [s.type for s in seen]

    assert twins.same(scenario) == ["TypeError", "TypeError", "ValueError"]


# --- BaseTaskTests: reports to the loop's exception handler ---------------------------


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")  # the task never ran
def test_log_destroyed_pending_task__never_started(twins: Pair) -> None:
    """A task collected before it ran is reported as destroyed while pending."""

    def scenario(t: Twin) -> list[Any]:
        loop = new_loop(twins.loop)
        with recorded_handler(loop) as handled:
            warm_loop(t, loop)
            task = loop.create_task(t.value(1))
            seen: list[Any] = [asyncio.all_tasks(loop) == {task}]
            loop.close()
            del task
            gc.collect()
            return [*seen, [c["message"] for c in handled]]

    assert twins.same(scenario, sync=True) == [True, ["Task was destroyed but it is pending!"]]


def test_log_destroyed_pending_task__waiting(twins: Pair) -> None:
    """asyncio: a task whose waited-on future nobody can reach any more is collected
    and reported. Rust: by design a running RustTask is held by its loop's channel
    until it finishes (its Rust future belongs to the runtime, as a Task sleeping in
    asyncio.sleep belongs to the loop's timers): it is not collected, stays in
    all_tasks, and is cancelled when asyncio.run ends."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task, gate = gated_task(t)
        await until(started(gate))
        seen: list[Any] = [asyncio.all_tasks() == {task, asyncio.current_task()}]
        del task, gate
        gc.collect()
        await asyncio.sleep(0)
        gc.collect()
        seen.append(len(asyncio.all_tasks() - {asyncio.current_task()}))
        return seen

    seen = each(twins, scenario)
    assert seen == {"asyncio": [True, 0], "rust": [True, 1]}
    assert messages(twins) == {"asyncio": ["Task was destroyed but it is pending!"], "rust": []}


def test_tb_logger_not_called_after_cancel(twins: Pair) -> None:
    """cancel() on a task that already failed marks its exception retrieved."""

    async def scenario(t: Twin) -> bool:
        await warm(t)
        task = asyncio.ensure_future(t.raises(TypeError()))
        finished = await until(task.done)
        task.cancel()
        del task
        gc.collect()
        return finished

    assert twins.same(scenario) is True
    assert messages(twins) == {"asyncio": [], "rust": []}


def test_task_source_traceback(twins: Pair) -> None:
    """In debug mode a task remembers where it was created ("created at" in its
    repr and in the reports about it)."""

    async def scenario(t: Twin) -> bool:
        await warm(t)
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        task = asyncio.ensure_future(t.value(1))
        lineno = sys._getframe().f_lineno - 1
        frames = getattr(task, "_source_traceback", None) or []
        loop.set_debug(False)
        await task
        return any(tuple(f[:3]) == (__file__, lineno, "scenario") for f in frames)

    assert twins.same(scenario) is True


def test_cancel_gather_1(twins: Pair) -> None:
    """bpo-26923: a gathering future refuses to be cancelled once all its children
    are done, even before its own callback has run."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        child = asyncio.ensure_future(t.value(42))
        cancel_result = []
        # Added before gather's own callback, so it runs when the child is done and
        # the gathering future is not yet.
        child.add_done_callback(lambda _: cancel_result.append((gather_task.done(), gather_task.cancel())))
        gather_task = asyncio.ensure_future(asyncio.gather(child))
        result = await araised(gather_task)
        return [cancel_result, gather_task.cancelled(), result]

    assert twins.same(scenario) == [[(False, False)], False, [42]]


@pytest.mark.parametrize(
    ("cancel_args", "expected_args"),
    [((), ()), ((None,), ()), (("my message",), ("my message",)), ((5,), (5,))],
    ids=["no-args", "none", "message", "non-string"],
)
def test_cancel_gather_2(twins: Pair, cancel_args: tuple[Any, ...], expected_args: tuple[Any, ...]) -> None:
    """Cancelling a task that waits in gather() of a Rust awaitable propagates the
    CancelledError, with the cancel message, and with no chain behind it."""

    def scenario(t: Twin) -> Any:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)

            async def test() -> None:
                elapsed = 0.0
                while True:
                    elapsed += 0.01
                    await asyncio.gather(t.sleep(0.01), return_exceptions=True)
                    if elapsed > 1:
                        return

            async def main() -> None:
                qwe = asyncio.ensure_future(test())
                await asyncio.sleep(0.05)
                qwe.cancel(*cancel_args)
                await qwe

            try:
                loop.run_until_complete(main())
            except asyncio.CancelledError as exc:
                return [exc.args, innermost_context(exc)]
            return "gather() did not propagate the CancelledError of its child"

    assert twins.same(scenario, sync=True) == [expected_args, ("CancelledError", expected_args, 0)]


def test_exception_traceback(twins: Pair) -> None:
    """bpo-28843: a task's exception keeps its traceback. An exception raised by Rust
    code went through no Python frame: it has none (asyncio's has the coroutine's
    frame); one raised by Python code that Rust awaited keeps its own."""

    async def scenario(t: Twin) -> bool:
        await warm(t)
        task = asyncio.ensure_future(t.raises(ZeroDivisionError()))
        await until(task.done)
        return task.exception().__traceback__ is not None  # type: ignore[union-attr]

    assert each(twins, scenario) == {"asyncio": True, "rust": False}


def test_exception_traceback__raised_by_python(twins: Pair, call_back: CallBack) -> None:
    async def divide() -> float:
        return 1 / 0

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(call_back(t, divide))
        await until(task.done)
        exc = task.exception()
        assert exc is not None
        return [type(exc).__name__, exc.__traceback__ is not None]

    assert twins.same(scenario) == ["ZeroDivisionError", True]


# --- BaseTaskTests: creating tasks ----------------------------------------------------


def test_create_task_with_noncoroutine(twins: Pair) -> None:
    """The bridge's task factory hands what is not a Rust coroutine to asyncio."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        # Twice: caching in asyncio.iscoroutine() must not change the answer.
        return [raised(lambda: loop.create_task(123)), raised(lambda: loop.create_task(123))]  # type: ignore[arg-type]

    assert twins.same(scenario) == [Raised("TypeError", "a coroutine was expected, got 123")] * 2


def test_create_task_with_async_function(twins: Pair) -> None:
    """A RustTask is not an instance of asyncio.Task, by design (asyncio.Task is a C
    type that cannot take another engine); it is a future all the same."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(2):
            task = loop.create_task(t.value("done"))
            seen += [isinstance(task, asyncio.Task), asyncio.isfuture(task), await task]
        return seen

    assert each(twins, scenario) == {
        "asyncio": [True, True, "done"] * 2,
        "rust": [False, True, "done"] * 2,
    }


def test_create_task_with_asynclike_function(twins: Pair) -> None:
    """A coroutine-like Python object on a loop with the bridge's factory gets an asyncio.Task."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(2):
            task = loop.create_task(CoroLikeObject())
            seen += [isinstance(task, asyncio.Task), await task]
        return seen

    assert twins.same(scenario) == [True, 42] * 2


def test_bare_create_task(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.create_task(t.value(1))
        return [isinstance(task, asyncio.Task), await task]

    # A RustTask is no asyncio.Task, by design (see test_create_task_with_async_function).
    assert each(twins, scenario) == {"asyncio": [True, 1], "rust": [False, 1]}


def test_bare_create_named_task(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.create_task(t.value(None), name="No-op")
        name = task.get_name()
        await task
        return [name, task.get_name()]

    assert twins.same(scenario) == ["No-op", "No-op"]


# --- BaseTaskTests: contexts ----------------------------------------------------------


def test_context_1(twins: Pair, call_back: CallBack) -> None:
    """A task runs in a copy of the context it was created in: what it sets stays there."""
    cvar: contextvars.ContextVar[str] = contextvars.ContextVar("cvar", default="nope")

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        seen = []

        async def sub() -> None:
            await asyncio.sleep(0.01)
            seen.append(cvar.get())
            cvar.set("something else")

        async def main() -> None:
            seen.append(cvar.get())
            subtask = asyncio.ensure_future(call_back(t, sub))
            cvar.set("yes")
            seen.append(cvar.get())
            await subtask
            seen.append(cvar.get())

        await asyncio.ensure_future(main())
        return [*seen, cvar.get()]

    assert twins.same(scenario) == ["nope", "yes", "nope", "yes", "nope"]


def test_context_2(twins: Pair) -> None:
    """A Task awaiting Rust awaitables resumes in its own context; a done callback of
    a RustTask runs in a copy of the context it was added in."""
    cvar: contextvars.ContextVar[str] = contextvars.ContextVar("cvar", default="nope")

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        seen: list[Any] = []

        async def main() -> None:
            def fut_on_done(fut: Any) -> None:
                # This change must not pollute the context of main().
                cvar.set("something else")

            seen.append(cvar.get())
            for j in range(2):
                fut = asyncio.ensure_future(t.sleep(0.001))
                fut.add_done_callback(fut_on_done)
                cvar.set(f"yes{j}")
                await fut
                seen.append(cvar.get())
                for i in range(3):
                    cvar.set(f"yes{i}-{j}")
                    await t.sleep(0.001)
                    seen.append(cvar.get())

        await asyncio.ensure_future(main())
        return [*seen, cvar.get()]

    expected = ["nope"] + [v for j in range(2) for v in [f"yes{j}"] + [f"yes{i}-{j}" for i in range(3)]] + ["nope"]
    assert twins.same(scenario) == expected


def test_context_3(twins: Pair) -> None:
    """100 tasks in parallel, each setting the variable between Rust sleeps."""
    cvar: contextvars.ContextVar[int] = contextvars.ContextVar("cvar", default=-1)

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        rng = random.Random(3)
        mismatches = []

        async def sub(num: int, delays: list[float]) -> None:
            for i, delay in enumerate(delays):
                cvar.set(num + i)
                await t.sleep(delay)
                if cvar.get() != num + i:
                    mismatches.append((num, i, cvar.get()))

        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(sub(rng.randint(0, 10), [rng.uniform(0.001, 0.02) for _ in range(5)])) for _ in range(100)
        ]
        await asyncio.gather(*tasks)
        return [mismatches, cvar.get()]

    assert twins.same(scenario) == [[], -1]


async def _setter(cvar: contextvars.ContextVar[int], val: int) -> None:
    await asyncio.sleep(0)
    cvar.set(val)


def _context_456(twins: Pair, call_back: CallBack, create: Callable[..., Any]) -> None:
    """A task made with context=ctx runs in ctx itself: what it sets is seen in ctx."""
    cvar: contextvars.ContextVar[int] = contextvars.ContextVar("cvar")

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()

        async def main() -> list[Any]:
            ret = []
            ctx = contextvars.copy_context()
            ret.append(ctx.get(cvar))
            t1 = create(loop, call_back(t, lambda: _setter(cvar, 1)), ctx)
            await t1
            ret.append(ctx.get(cvar))
            t2 = create(loop, call_back(t, lambda: _setter(cvar, 2)), ctx)
            await t2
            ret.append(ctx.get(cvar))
            return ret

        return await loop.create_task(main())

    assert twins.same(scenario) == [None, 1, 2]


@pytest.mark.xfail(
    sys.version_info < (3, 12),
    strict=True,
    reason="BRIDGE: before 3.12 a Task does not expose its context (Task.get_context is new in 3.12), so a Rust "
    "coroutine stepped by an asyncio.Task calls back into Python in a copy of it: what the callback sets is lost",
)
def test_context_4(twins: Pair, call_back: CallBack) -> None:
    """The Task class itself (upstream's new_task): asyncio.Task(coro, context=ctx)."""
    _context_456(twins, call_back, lambda loop, coro, ctx: asyncio.Task(coro, loop=loop, context=ctx))


def test_context_5(twins: Pair, call_back: CallBack) -> None:
    _context_456(twins, call_back, lambda loop, coro, ctx: asyncio.create_task(coro, context=ctx))


def test_context_6(twins: Pair, call_back: CallBack) -> None:
    _context_456(twins, call_back, lambda loop, coro, ctx: loop.create_task(coro, context=ctx))


def test_get_coro(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        coro = t.value(None)
        task = asyncio.get_running_loop().create_task(coro)
        await task
        return [task.get_coro() is coro]

    assert twins.same(scenario) == [True]


@only_312
def test_get_context(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        context = contextvars.copy_context()
        task = asyncio.get_running_loop().create_task(t.value(None), context=context)
        await task
        return [task.get_context() is context]  # type: ignore[attr-defined]

    assert twins.same(scenario) == [True]


def test_del__log_destroy_pending_segfault(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        await warm(t)
        task = asyncio.ensure_future(t.value(None))
        await task

        def delete() -> None:
            del task._log_destroy_pending  # type: ignore[attr-defined]

        outcome = raised(delete)
        return outcome.type if isinstance(outcome, Raised) else outcome

    assert twins.same(scenario) == "AttributeError"


# --- BaseTaskIntrospectionTests, BaseCurrentLoopTests, GenericTaskTests ---------------


def test__register_task_1(twins: Pair) -> None:
    """A pending task the bridge made is among the running loop's tasks."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        before = asyncio.all_tasks() - {asyncio.current_task()}
        task, gate = gated_task(t)
        seen = [before, asyncio.all_tasks() - {asyncio.current_task()} == {task}]
        await until(started(gate))
        seen.append(asyncio.all_tasks() - {asyncio.current_task()} == {task})
        gate.open(None)
        await task
        return seen

    assert twins.same(scenario) == [set(), True, True]


def test__register_task_2(twins: Pair) -> None:
    """all_tasks(loop) of a loop that is not running includes a task made there."""

    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            task = loop.create_task(t.value(1))
            seen = [asyncio.all_tasks(loop) == {task}, task.get_loop() is loop]
            return [*seen, loop.run_until_complete(task), asyncio.all_tasks(loop)]

    assert twins.same(scenario, sync=True) == [True, True, 1, set()]


def test__register_task_3(twins: Pair) -> None:
    """A task that is done is no longer among the loop's tasks."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value(1))
        await task
        return [task.done(), task in asyncio.all_tasks()]

    assert twins.same(scenario) == [True, False]


def test__unregister_task(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task, gate = gated_task(t)
        seen = [task in asyncio.all_tasks()]
        asyncio.tasks._unregister_task(task)  # type: ignore[arg-type]
        seen.append(task in asyncio.all_tasks())
        gate.open(None)
        await task
        return seen

    assert twins.same(scenario) == [True, False]


def test__unregister_task_not_registered(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value(None))
        await task
        seen = [raised(lambda: asyncio.tasks._unregister_task(task)) for _ in range(2)]
        return [*seen, task in asyncio.all_tasks()]

    assert twins.same(scenario) == [None, None, False]


def test_current_task_no_running_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            loop.run_until_complete(loop.create_task(t.value(None)))
            return [asyncio.current_task(loop=loop)]

    assert twins.same(scenario, sync=True) == [None]


def test_current_task_no_running_loop_implicit(twins: Pair) -> None:
    """Running Rust coroutines leaves no running loop behind on the thread."""

    def scenario(t: Twin) -> Any:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            loop.run_until_complete(loop.create_task(t.value(None)))
            return raised(asyncio.current_task)

    assert twins.same(scenario, sync=True) == Raised("RuntimeError", "no running event loop")


def test_current_task_with_implicit_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            seen = []

            async def coro() -> None:
                await asyncio.ensure_future(t.value(None))
                seen.append(asyncio.current_task(loop=loop) is task)
                await t.value(None)
                seen.append(asyncio.current_task(None) is task)
                seen.append(asyncio.current_task() is task)

            task = loop.create_task(coro())
            loop.run_until_complete(task)
            return [*seen, asyncio.current_task(loop=loop)]

    assert twins.same(scenario, sync=True) == [True, True, True, None]


def test_future_subclass(twins: Pair) -> None:
    """asyncio.Task subclasses asyncio.Future; a RustTask by design subclasses
    neither (both are C types), and is a future by protocol (asyncio.isfuture)."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        task = asyncio.ensure_future(t.value(None))
        await task
        return [issubclass(type(task), asyncio.Future), asyncio.isfuture(task)]

    assert each(twins, scenario) == {"asyncio": [True, True], "rust": [False, True]}


# --- GatherTestsBase: FutureGatherTests (tasks of Rust coroutines) and CoroutineGatherTests


def _children(t: Twin, n: int, futures: bool) -> tuple[list[Any], list[Gate], list[Any]]:
    """n gated children for gather: tasks (``futures``) or coroutines; with the tasks
    (empty for coroutines)."""
    made = [t.gated() for _ in range(n)]
    gates = [gate for _, gate in made]
    if futures:
        tasks = [asyncio.ensure_future(coro) for coro, _ in made]
        return tasks, gates, tasks
    return [coro for coro, _ in made], gates, []


def _check_success(twins: Pair, futures: bool, **kwargs: Any) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        children, (a, b, c), tasks = _children(t, 3, futures)
        fut = asyncio.gather(*children, **kwargs)
        calls: list[Any] = []
        fut.add_done_callback(calls.append)
        b.open(1)
        a.open(2)
        if tasks:
            await asyncio.wait(tasks[:2])
        await asyncio.sleep(0.02)
        seen = [len(calls), fut.done()]
        c.open(3)
        result = await fut
        await asyncio.sleep(0)
        return [*seen, calls == [fut], result]

    assert twins.same(scenario) == [0, False, True, [2, 1, 3]]


def test_success__futures(twins: Pair) -> None:
    _check_success(twins, True)
    _check_success(twins, True, return_exceptions=False)


def test_success__coroutines(twins: Pair) -> None:
    _check_success(twins, False)
    _check_success(twins, False, return_exceptions=False)


def test_result_exception_success__futures(twins: Pair) -> None:
    _check_success(twins, True, return_exceptions=True)


def test_result_exception_success__coroutines(twins: Pair) -> None:
    _check_success(twins, False, return_exceptions=True)


def _one_exception(twins: Pair, futures: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        children, (a, b, c, d, e), tasks = _children(t, 5, futures)
        fut = asyncio.gather(*children)
        calls: list[Any] = []
        fut.add_done_callback(calls.append)
        exc = ZeroDivisionError()
        a.open(1)
        b.fail(exc)
        await asyncio.wait([fut])
        await asyncio.sleep(0)
        seen = [fut.done(), calls == [fut], fut.exception() is exc]
        # Does nothing to the gathering future.
        c.open(3)
        if tasks:
            tasks[3].cancel()
        else:
            d.fail(asyncio.CancelledError())
        e.fail(RuntimeError())
        if tasks:
            await asyncio.wait(tasks)
            tasks[4].exception()
        else:
            await until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
        return [*seen, len(calls), fut.exception() is exc]

    assert twins.same(scenario) == [True, True, True, 1, True]
    # The children's exceptions after the first were marked retrieved.
    assert messages(twins) == {"asyncio": [], "rust": []}


def test_one_exception__futures(twins: Pair) -> None:
    _one_exception(twins, True)


def test_one_exception__coroutines(twins: Pair) -> None:
    _one_exception(twins, False)


def _return_exceptions(twins: Pair, futures: bool) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        children, (a, b, c, d), tasks = _children(t, 4, futures)
        fut = asyncio.gather(*children, return_exceptions=True)
        calls: list[Any] = []
        fut.add_done_callback(calls.append)
        exc, exc2 = ZeroDivisionError(), RuntimeError()
        b.open(1)
        c.fail(exc)
        a.open(3)
        if tasks:
            await asyncio.wait(tasks[:3])
        await asyncio.sleep(0.02)
        seen = [fut.done()]
        d.fail(exc2)
        result = await fut
        await asyncio.sleep(0)
        return [*seen, calls == [fut], result[:2], result[2] is exc, result[3] is exc2]

    assert twins.same(scenario) == [False, True, [3, 1], True, True]


def test_return_exceptions__futures(twins: Pair) -> None:
    _return_exceptions(twins, True)


def test_return_exceptions__coroutines(twins: Pair) -> None:
    _return_exceptions(twins, False)


def test_constructor_empty_sequence_use_running_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)

            async def gather() -> Any:
                return asyncio.gather()

            fut = loop.run_until_complete(gather())
            seen = [isinstance(fut, asyncio.Future), fut.get_loop() is loop]
            run_briefly(loop)
            return [*seen, fut.done(), fut.result()]

    assert twins.same(scenario, sync=True) == [True, True, True, []]


def test_constructor_empty_sequence_use_global_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop, global_loop(loop):
            warm_loop(t, loop)
            fut: asyncio.Future[Any] = asyncio.gather()
            seen = [isinstance(fut, asyncio.Future), fut.get_loop() is loop]
            run_briefly(loop)
            return [*seen, fut.done(), fut.result()]

    assert twins.same(scenario, sync=True) == [True, True, True, []]


def test_constructor_heterogenous_futures(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as one, own_loop(twins.loop) as other:
            warm_loop(t, one)
            warm_loop(t, other)
            fut1, fut2 = one.create_task(t.value(1)), other.create_task(t.value(2))
            outcome = raised(lambda: asyncio.gather(fut1, fut2))
            return [outcome.type, one.run_until_complete(fut1), other.run_until_complete(fut2)]

    assert twins.same(scenario, sync=True) == ["ValueError", 1, 2]


def test_constructor_homogenous_futures(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as one, own_loop(twins.loop) as other, global_loop(one):
            warm_loop(t, one)
            warm_loop(t, other)
            made = [t.gated() for _ in range(3)]
            children = [other.create_task(coro) for coro, _ in made]
            seen = []
            for _ in range(2):
                fut = asyncio.gather(*children)
                seen.append(fut.get_loop() is other)
                run_briefly(other, 3)
                seen.append(fut.done())
            for i, (_, gate) in enumerate(made):
                gate.open(i)
            return [*seen, other.run_until_complete(fut)]

    assert twins.same(scenario, sync=True) == [True, False, True, False, [0, 1, 2]]


def test_one_cancellation(twins: Pair) -> None:
    """A child task cancelled: gather ends with a CancelledError, not cancelled itself."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        children, (a, _, c, _, e), tasks = _children(t, 5, True)
        fut = asyncio.gather(*children)
        calls: list[Any] = []
        fut.add_done_callback(calls.append)
        a.open(1)
        tasks[1].cancel()
        await asyncio.wait([fut])
        await asyncio.sleep(0)
        seen = [fut.done(), calls == [fut], fut.cancelled(), type(fut.exception()).__name__]
        # Does nothing.
        c.open(3)
        tasks[3].cancel()
        e.fail(RuntimeError())
        await asyncio.wait(tasks)
        tasks[4].exception()
        return [*seen, len(calls)]

    assert twins.same(scenario) == [True, True, False, "CancelledError", 1]
    assert messages(twins) == {"asyncio": [], "rust": []}


def test_result_exception_one_cancellation(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        children, (a, b, _, d, _, f), tasks = _children(t, 6, True)
        fut = asyncio.gather(*children, return_exceptions=True)
        calls: list[Any] = []
        fut.add_done_callback(calls.append)
        a.open(1)
        zde = ZeroDivisionError()
        b.fail(zde)
        tasks[2].cancel()
        await asyncio.wait(tasks[:3])
        await asyncio.sleep(0.02)
        seen = [fut.done()]
        d.open(3)
        tasks[4].cancel()
        rte = RuntimeError()
        f.fail(rte)
        res = await fut
        await asyncio.sleep(0)
        kinds = [type(r).__name__ for r in res]
        return [*seen, kinds, res[0], res[1] is zde, res[3], res[5] is rte, calls == [fut]]

    kinds = ["int", "ZeroDivisionError", "CancelledError", "int", "CancelledError", "RuntimeError"]
    assert twins.same(scenario) == [False, kinds, 1, True, 3, True, True]


def test_constructor_without_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> Any:
        gen1, gen2 = t.value("abc"), t.value("abc")
        try:
            return without_loop(lambda: asyncio.gather(gen1, gen2))
        finally:
            gen1.close()
            gen2.close()

    outcome = twins.same(scenario, sync=True)
    assert isinstance(outcome, Raised) and outcome.type == "RuntimeError"
    assert "no current event loop" in outcome.message


def test_constructor_use_running_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as loop:
            warm_loop(t, loop)
            gen1, gen2 = t.value("abc"), t.value("abc")

            async def gather() -> Any:
                return asyncio.gather(gen1, gen2)

            fut = loop.run_until_complete(gather())
            return [fut.get_loop() is loop, loop.run_until_complete(fut)]

    assert twins.same(scenario, sync=True) == [True, ["abc", "abc"]]


def test_constructor_use_global_loop(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        with own_loop(twins.loop) as other, global_loop(other):
            warm_loop(t, other)
            fut = asyncio.gather(t.value("abc"), t.value("abc"))
            return [fut.get_loop() is other, other.run_until_complete(fut)]

    assert twins.same(scenario, sync=True) == [True, ["abc", "abc"]]


def test_duplicate_coroutines(twins: Pair) -> None:
    """The same coroutine gathered twice runs once; its result fills every place."""

    async def scenario(t: Twin) -> Any:
        await warm(t)
        c = t.value("abc")
        return await asyncio.gather(c, c, t.value("def"), c)

    assert twins.same(scenario) == ["abc", "abc", "def", "abc"]


def test_cancellation_broadcast(twins: Pair) -> None:
    """Cancelling outer() cancels all the children gather() waits for."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        (child1, g1), (child2, g2) = gated_task(t), gated_task(t)
        proof = 0
        gatherers = []

        async def outer() -> None:
            nonlocal proof
            gatherers.append(asyncio.gather(child1, child2))
            await gatherers[0]
            proof += 100

        f = asyncio.ensure_future(outer())
        await until(started(g1, g2))
        seen = [f.cancel(), await araised(f)]
        seen += [gatherers[0].cancel(), child1.cancelled(), child2.cancelled()]
        await until(dropped(g1, g2))
        return [*seen, g1.state(), g2.state(), proof]

    assert twins.same(scenario) == [
        True,
        Raised("CancelledError", ""),
        False,
        True,
        True,
        (True, True),
        (True, True),
        0,
    ]


def test_exception_marking(twins: Pair) -> None:
    """A child failing after gather() already failed has its exception marked retrieved."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        (ca, a), (cb, b) = t.gated(), t.gated()

        async def outer() -> None:
            await asyncio.gather(ca, cb)

        f = asyncio.ensure_future(outer())
        await asyncio.sleep(0)
        a.fail(RuntimeError("should not be ignored"))
        await until(f.done)
        b.fail(RuntimeError("should not be ignored"))
        await until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
        return [Raised.of(f.exception())]  # type: ignore[arg-type]

    assert twins.same(scenario) == [Raised("RuntimeError", "should not be ignored")]
    assert messages(twins) == {"asyncio": [], "rust": []}


def test_issue46672(twins: Pair) -> None:
    """gather(coro, {}) raises TypeError and reports nothing else."""

    async def scenario(t: Twin) -> Any:
        await warm(t)
        outcome = raised(lambda: asyncio.gather(t.value("abc"), {}))  # type: ignore[call-overload]
        await until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
        return outcome.type

    assert twins.same(scenario) == "TypeError"
    assert messages(twins) == {"asyncio": [], "rust": []}


# --- RunCoroutineThreadsafeTests ------------------------------------------------------


def _target(
    loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, Any]], timeout: float | None = None
) -> Any:
    """In a worker thread: submits ``make()`` to ``loop`` and waits for its result."""
    future = asyncio.run_coroutine_threadsafe(make(), loop)
    try:
        return future.result(timeout)
    finally:
        future.done() or future.cancel()


def test_run_coroutine_threadsafe(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        await warm(t)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _target, loop, lambda: t.sleep(0.05, 3))

    assert twins.same(scenario) == 3


def test_run_coroutine_threadsafe_with_exception(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        await warm(t)
        loop = asyncio.get_running_loop()
        return await araised(loop.run_in_executor(None, _target, loop, lambda: t.raises(RuntimeError("Fail!"))))

    assert twins.same(scenario) == Raised("RuntimeError", "Fail!")


def test_run_coroutine_threadsafe_with_timeout(twins: Pair) -> None:
    """A timeout cancels the task (no task left pending)."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        coro, _ = t.gated()
        outcome = await araised(loop.run_in_executor(None, _target, loop, lambda: coro, 0))
        finished = await until(lambda: not asyncio.all_tasks() - {asyncio.current_task()})
        return [outcome.type, finished]

    assert twins.same(scenario) == ["TimeoutError", True]


def test_run_coroutine_threadsafe_task_cancelled(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        await warm(t)
        loop = asyncio.get_running_loop()
        coro, gate = t.gated()
        fut = loop.run_in_executor(None, _target, loop, lambda: coro)
        await until(started(gate))
        (task,) = asyncio.all_tasks() - {asyncio.current_task()}
        task.cancel()
        return await araised(fut)

    assert twins.same(scenario) == Raised("CancelledError", "")


def test_run_coroutine_threadsafe_task_factory_exception(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        loop = asyncio.get_running_loop()
        coro = t.value(3)

        def task_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
            raise NameError

        previous = loop.get_task_factory()
        loop.set_task_factory(task_factory)
        try:
            with recorded_handler(loop) as handled:
                run = loop.run_in_executor(None, _target, loop, lambda: coro)
                try:
                    await run
                except NameError as exc:
                    outcome: Any = exc
                await asyncio.sleep(0)
        finally:
            loop.set_task_factory(previous)
            coro.close()
        return [type(outcome).__name__, len(handled), handled[0].get("exception") is outcome]

    assert twins.same(scenario) == ["NameError", 1, True]


# --- SleepTests -----------------------------------------------------------------------


def test_sleep_zero(twins: Pair) -> None:
    """A zero sleep still lets the loop run what was scheduled."""

    async def scenario(t: Twin) -> list[Any]:
        await warm(t)
        result = 0

        def inc_result(num: int) -> None:
            nonlocal result
            result += num

        asyncio.get_running_loop().call_soon(inc_result, 1)
        before = result
        num = await t.sleep(0, 10)
        after = result  # inc'ed by call_soon
        inc_result(num)
        return [before, after, result]

    assert twins.same(scenario) == [0, 1, 11]
