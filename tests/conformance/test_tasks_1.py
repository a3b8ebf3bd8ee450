"""CPython's ``test_asyncio/test_tasks.py``, class ``BaseTaskTests``, first part (the
tests up to ``test_wait_with_iterator_of_tasks``, line 1399 of the 3.13 file), ported
to twin scenarios: what asyncio does with an ``async def`` coroutine, its Task and
the futures it waits on, a Rust call must do too.

Where upstream's Task runs a coroutine doing several awaits, the port keeps that
coroutine as an outer ``async def`` (an ``asyncio.Task`` with both twins) and makes
what it awaits through the twin; where upstream tests the Task itself, the task is
made from the twin's coroutine. Tests about a task run on both kinds of loop the
bridge meets (``kind``): ``fresh``, where nothing Rust has run yet, so asyncio's own
Task steps the Rust coroutine, and ``warm``, where the bridge's task factory is
installed and the task is a ``RustTask``. Upstream's ``new_future(loop)`` under test
becomes the future a twin coroutine yields to its task (an ``asyncio.Future`` /
a ``RustFuture``), completed through its gate.

Not ported (and why):

Only for Python code
    test_task_awaits_on_itself: a Rust body cannot await its own task (a Rust future
        awaiting a Python awaitable runs it as a separate task, so there is no self-await
        to detect).

No coroutine, future or task involved
    test_ensure_future_neither: ``ensure_future('ok')`` raises before anything is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import re
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from types import GenericAlias
from typing import Any

import pytest

from .twins import Gate, Pair, Raised, Twin, araised, new_loop, raised

KINDS = ["fresh", "warm"]


# ---------------------------------------------------------------------------- helpers


async def begin(t: Twin, kind: str) -> None:
    """On a ``warm`` loop, runs a Rust call first: the bridge installs its task factory,
    so tasks made from Rust coroutines afterwards are RustTasks."""
    if kind == "warm":
        await t.value(None)


@contextlib.contextmanager
def event_loop(loop_kind: str, t: Twin, kind: str) -> Iterator[asyncio.AbstractEventLoop]:
    """A new loop (not running) for the synchronous scenarios that drive it as upstream
    does; tasks left on it are cancelled and the loop closed at the end."""
    loop = new_loop(loop_kind)
    try:
        if kind == "warm":
            loop.run_until_complete(t.value(None))
        yield loop
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Lets the loop run until ``condition()`` holds (a Rust result crosses from a
    runtime thread, so it may take more than one turn); False on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


async def not_left_running(gate: Gate) -> bool:
    """Whether the gate's body is not still running (never started, or stopped by the
    cancellation). A Python body always starts at the first step; a Rust future
    cancelled before the runtime first polled it never does, and one that did is
    dropped on a runtime thread a moment later."""

    def stopped() -> bool:
        started, dropped = gate.state()
        return not started or dropped

    return await until(stopped)


def waiting_on(task: asyncio.Future[Any]) -> Any:
    """The future an ``asyncio.Task`` is blocked on (white-box, as upstream's tests
    do): an ``asyncio.Future`` of the asyncio twin, a ``RustFuture`` of the Rust one."""
    return task._fut_waiter  # type: ignore[attr-defined]


def state_and_name(task: Any) -> tuple[str, str]:
    """The state word and the name a task's repr shows."""
    text = repr(task)
    state = re.match(r"<\w+ (\w+)", text)
    name = re.search(r" name='([^']*)'", text)
    return (state.group(1) if state else text, name.group(1) if name else text)


def innermost_context(exc: BaseException) -> tuple[str, tuple[Any, ...], int]:
    """upstream's get_innermost_context: the innermost exception of the __context__
    chain, its args and its depth."""
    depth = 0
    while exc.__context__ is not None:
        exc = exc.__context__
        depth += 1
    return (type(exc).__name__, exc.args, depth)


def yielded_future(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    """Starts ``coro`` on ``loop`` and returns the future it yields (what it would
    make its task wait on)."""

    async def first() -> Any:
        fut = coro.send(None)
        fut._asyncio_future_blocking = False  # taken, as a task taking it does
        return fut

    return loop.run_until_complete(first())


def per_twin(twins: Pair, scenario: Callable[[Twin], Any], *, sync: bool = False) -> dict[str, Any]:
    """What each twin observed, for the tests where a difference is inherent."""
    return {twin.name: twins.observe(twin, scenario, sync=sync) for twin in (twins.python, twins.rust)}


class Dummy:
    def __repr__(self) -> str:
        return "<Dummy>"

    def __call__(self, *args: Any) -> None:
        pass


# ------------------------------------------------------------------------------ tests


def test_generic_alias(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        await begin(t, "warm")
        task = asyncio.ensure_future(t.value(None))
        await task
        alias = raised(lambda: type(task)[str])  # type: ignore[index]
        return alias if isinstance(alias, Raised) else (alias.__args__, isinstance(alias, GenericAlias))

    assert twins.same(scenario) == ((str,), True)


@pytest.mark.parametrize("kind", KINDS)
def test_task_cancel_message_getter(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.ensure_future(t.value(None))
        seen = [hasattr(task, "_cancel_message"), getattr(task, "_cancel_message", "-")]
        task.cancel("my message")
        seen.append(getattr(task, "_cancel_message", "-"))
        try:
            await task
        except asyncio.CancelledError as exc:
            seen.append(exc.args)
        return seen

    assert twins.same(scenario) == [True, None, "my message", ("my message",)]


@pytest.mark.parametrize("kind", KINDS)
def test_task_cancel_message_setter(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.ensure_future(t.value(None))
        task.cancel("my message")
        task._cancel_message = "my new message"  # type: ignore[attr-defined]
        seen = [task._cancel_message]  # type: ignore[attr-defined]
        try:
            await task
        except asyncio.CancelledError as exc:
            seen.append(exc.args)
        return seen

    assert twins.same(scenario) == ["my new message", ("my new message",)]


@pytest.mark.parametrize("kind", KINDS)
def test_task_del_collect(twins: Pair, kind: str) -> None:
    class Evil:
        def __del__(self) -> None:
            gc.collect()

    async def scenario(t: Twin) -> int:
        await begin(t, kind)
        tasks = [asyncio.ensure_future(t.value(Evil())) for _ in range(20)]
        results = await asyncio.gather(*tasks)
        count = sum(isinstance(r, Evil) for r in results)
        del tasks, results  # each task, as it goes, collects garbage from its result's __del__
        return count

    # 20 tasks, not upstream's 100: every gc.collect() walks the whole test process.
    assert twins.same(scenario) == 20


@pytest.mark.parametrize("kind", KINDS)
def test_other_loop_future(twins: Pair, kind: str) -> None:
    """A future of another loop (the one a twin coroutine yields there), and a task
    of another loop, awaited by a task of this one."""

    def scenario(t: Twin) -> list[Any]:
        seen = []
        with event_loop(twins.loop, t, kind) as other, event_loop(twins.loop, t, "fresh") as loop:
            coro = t.gated()[0]
            task = other.create_task(t.gated()[0])  # made first: on a fresh loop, an asyncio.Task
            for fut in (yielded_future(other, coro), task):

                async def run(fut: Any) -> None:
                    await fut

                outcome = raised(lambda fut=fut: loop.run_until_complete(run(fut)))  # type: ignore[misc]
                assert isinstance(outcome, Raised), outcome
                seen.append((outcome.type, bool(re.search(r"Task .* got Future .* attached", outcome.message))))
                fut.cancel()
            coro.close()
        return seen

    assert twins.same(scenario, sync=True) == [("RuntimeError", True)] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_task_class(twins: Pair, kind: str) -> None:
    def scenario(t: Twin) -> list[Any]:
        with event_loop(twins.loop, t, kind) as loop:
            task = loop.create_task(t.value("ok"))
            loop.run_until_complete(task)
            seen = [task.done(), task.result(), task.get_loop() is loop]
        with event_loop(twins.loop, t, kind) as loop:
            task = loop.create_task(t.value("ok"))
            seen.append(task.get_loop() is loop)
            seen.append(loop.run_until_complete(task))
        return seen

    assert twins.same(scenario, sync=True) == [True, "ok", True, True, "ok"]


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_coroutine(twins: Pair, kind: str) -> None:
    def scenario(t: Twin) -> list[Any]:
        with event_loop(twins.loop, t, kind) as loop:
            task = asyncio.ensure_future(t.value("ok"), loop=loop)
            seen = [task.get_loop() is loop, loop.run_until_complete(task), task.done(), task.result()]

            asyncio.set_event_loop(None)
            a = t.value("ok")
            outcome = raised(lambda: asyncio.ensure_future(a))
            a.close()
            seen.append(outcome.type if isinstance(outcome, Raised) else outcome)
            seen.append(isinstance(outcome, Raised) and "no current event loop" in outcome.message)

            async def test() -> Any:
                return asyncio.ensure_future(t.value("ok"))

            task = loop.run_until_complete(test())
            seen += [task.get_loop() is loop, loop.run_until_complete(task), task.done(), task.result()]

            asyncio.set_event_loop(loop)
            try:
                task = asyncio.ensure_future(t.value("ok"))
                seen += [task.get_loop() is loop, loop.run_until_complete(task), task.done(), task.result()]
            finally:
                asyncio.set_event_loop(None)
        return seen

    assert (
        twins.same(scenario, sync=True) == [True, "ok", True, "ok", "RuntimeError", True] + [True, "ok", True, "ok"] * 2
    )


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_future(twins: Pair, kind: str) -> None:
    """The future under test is the one a twin coroutine yields (a RustFuture for
    Rust), completed through its gate instead of ``set_result``."""

    def scenario(t: Twin) -> list[Any]:
        with event_loop(twins.loop, t, kind) as loop:
            coro, gate = t.gated()
            f_orig = yielded_future(loop, coro)
            gate.open("ko")
            f = asyncio.ensure_future(f_orig)
            seen = [asyncio.isfuture(f_orig), f is f_orig, loop.run_until_complete(f), f.done(), f.result()]
            with event_loop(twins.loop, t, "fresh") as other:
                outcome = raised(lambda: asyncio.ensure_future(f_orig, loop=other))
            seen.append(outcome.type if isinstance(outcome, Raised) else outcome)
            seen.append(asyncio.ensure_future(f_orig, loop=loop) is f_orig)
            seen.append(raised(lambda: coro.send(None)))
        return seen

    assert twins.same(scenario, sync=True) == [
        True,
        True,
        "ko",
        True,
        "ko",
        "ValueError",
        True,
        Raised("StopIteration", "ko"),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_task(twins: Pair, kind: str) -> None:
    def scenario(t: Twin) -> list[Any]:
        with event_loop(twins.loop, t, kind) as loop:
            t_orig = loop.create_task(t.value("ok"))
            task = asyncio.ensure_future(t_orig)
            seen = [loop.run_until_complete(task), task.done(), task.result(), task is t_orig]
            with event_loop(twins.loop, t, "fresh") as other:
                outcome = raised(lambda: asyncio.ensure_future(t_orig, loop=other))
            seen.append(outcome.type if isinstance(outcome, Raised) else outcome)
            seen.append(asyncio.ensure_future(t_orig, loop=loop) is t_orig)
        return seen

    assert twins.same(scenario, sync=True) == ["ok", True, "ok", True, "ValueError", True]


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_awaitable(twins: Pair, kind: str) -> None:
    class Aw:
        def __init__(self, coro: Any) -> None:
            self.coro = coro

        def __await__(self) -> Any:
            return self.coro.__await__()

    def scenario(t: Twin) -> Any:
        with event_loop(twins.loop, t, kind) as loop:
            fut = asyncio.ensure_future(Aw(t.value("ok")), loop=loop)
            loop.run_until_complete(fut)
            return fut.result()

    assert twins.same(scenario, sync=True) == "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_task_awaitable(twins: Pair, kind: str) -> None:
    def scenario(t: Twin) -> list[Any]:
        class Aw:
            def __await__(self) -> Any:
                return t.value("ok").__await__()

        with event_loop(twins.loop, t, kind) as loop:
            task = asyncio.ensure_future(Aw(), loop=loop)
            loop.run_until_complete(task)
            return [task.done(), task.result(), type(task.get_coro()).__name__]

    # 3.11 wraps an awaitable in a generator-based coroutine, 3.12 in a coroutine.
    assert twins.same(scenario, sync=True) == [True, "ok", "coroutine" if sys.version_info >= (3, 12) else "generator"]


@pytest.mark.parametrize("kind", KINDS)
def test_ensure_future_error_msg(twins: Pair, kind: str) -> None:
    def scenario(t: Twin) -> Any:
        with event_loop(twins.loop, t, kind) as loop:
            coro = t.gated()[0]
            f = yielded_future(loop, coro)
            with event_loop(twins.loop, t, "fresh") as other:
                outcome = raised(lambda: asyncio.ensure_future(f, loop=other))
            f.cancel()
            coro.close()
            return outcome

    assert twins.same(scenario, sync=True) == Raised(
        "ValueError", "The future belongs to a different loop than the one specified as the loop argument"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_get_stack(twins: Pair, kind: str) -> None:
    """A Rust coroutine has no Python frames: its task's stack is empty (asyncio's
    shows the coroutine's frame), and print_stack says "No stack for <task>"."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)
        names = [frame.f_code.co_name for frame in task.get_stack(limit=1)]
        file = io.StringIO()
        task.print_stack(limit=1, file=file)
        header = file.getvalue().splitlines()[0]
        gate.open(None)
        await task
        return [names, header.split(" <")[0], f"name='{task.get_name()}'" in header]

    seen = per_twin(twins, scenario)
    assert seen["asyncio"] == [["body"], "Stack for", True]
    assert seen["rust"] == [[], "No stack for", True]


@pytest.mark.parametrize("kind", KINDS)
def test_task_repr(twins: Pair, kind: str) -> None:
    """The state words and the name (not asyncio's exact text)."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        loop = asyncio.get_running_loop()
        task = loop.create_task(t.gated()[0], name="TestTask")
        task.add_done_callback(Dummy())
        seen: list[Any] = [state_and_name(task)]
        task.cancel()  # Does not take immediate effect!
        seen.append(state_and_name(task))
        seen.append(await araised(task))
        seen.append(state_and_name(task))
        task = loop.create_task(t.value("abc"), name="TestTask")
        await task
        seen += [state_and_name(task), "result='abc'" in repr(task)]
        return seen

    assert twins.same(scenario) == [
        ("pending", "TestTask"),
        ("cancelling", "TestTask"),
        Raised("CancelledError", ""),
        ("cancelled", "TestTask"),
        ("finished", "TestTask"),
        True,
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_task_repr_autogenerated(twins: Pair, kind: str) -> None:
    """A RustTask's autogenerated name is 'RustTask-N' (asyncio's 'Task-N' counter
    is private to asyncio; a prefix of its own keeps names unique). On CPython
    3.13.0-3.13.2 the bridge installs no task factory (gh-130033 would name every
    task 'None'), so the warm loop's tasks are asyncio's there too."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        t1 = asyncio.ensure_future(t.value(123))
        t2 = asyncio.ensure_future(t.value(123))
        match1 = re.match(r"^<\w+ pending name='(?:Rust)?Task-(\d+)'", repr(t1))
        match2 = re.match(r"^<\w+ pending name='(?:Rust)?Task-(\d+)'", repr(t2))
        seen = [repr(t1) != repr(t2), match1 is not None, match2 is not None]
        if match1 and match2:
            # Autogenerated task names should have monotonically increasing numbers
            seen.append(int(match1.group(1)) < int(match2.group(1)))
        await asyncio.gather(t1, t2)
        return seen

    assert twins.same(scenario) == [True, True, True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_task_repr_autogenerated__interleaved(twins: Pair, kind: str) -> None:
    """Tasks of Rust and of Python coroutines made in turn: no two tasks get the
    same autogenerated name (a RustTask's is 'RustTask-N', from a counter of its
    own), and each kind's numbers increase."""

    async def python_coro() -> int:
        return 123

    async def scenario(t: Twin) -> bool:
        await begin(t, kind)
        tasks = []
        for _ in range(3):
            tasks += [asyncio.ensure_future(t.value(123)), asyncio.ensure_future(python_coro())]
        names = [task.get_name() for task in tasks]
        await asyncio.gather(*tasks)
        numbers: dict[str, list[int]] = {}
        for name in names:
            prefix, _, number = name.rpartition("-")
            numbers.setdefault(prefix, []).append(int(number))
        return len(set(names)) == len(names) and all(n == sorted(n) for n in numbers.values())

    assert twins.same(scenario) is True


@pytest.mark.parametrize("kind", KINDS)
def test_task_set_name_pylong(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.get_running_loop().create_task(t.value(123), name=987654321)  # type: ignore[arg-type]
        seen = [task.get_name()]
        task.set_name(123456789)
        seen.append(task.get_name())
        seen.append(await task)
        return seen

    assert twins.same(scenario) == ["987654321", "123456789", 123]


@pytest.mark.parametrize("kind", KINDS)
def test_task_repr_name_not_str(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.ensure_future(t.value(123))
        task.set_name({6})
        return [task.get_name(), await task]

    assert twins.same(scenario) == ["{6}", 123]


def test_task_repr_wait_for(twins: Pair) -> None:
    """A task blocked on a twin coroutine shows the future it waits on."""

    async def scenario(t: Twin) -> list[Any]:
        async def wait_for(coro: Any) -> Any:
            return await coro

        coro, gate = t.gated()
        task = asyncio.ensure_future(wait_for(coro))
        await asyncio.sleep(0)
        fut = waiting_on(task)
        seen = [asyncio.isfuture(fut), bool(re.search(r"<\w+ .* wait_for=" + re.escape(repr(fut)) + ">", repr(task)))]
        gate.open(None)
        await task
        return seen

    assert twins.same(scenario) == [True, True]


def test_task_basics(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        async def outer() -> Any:
            a = await t.value(42)
            b = await t.value_inline(1000)
            return a + b

        return [await outer(), await asyncio.ensure_future(outer())]

    assert twins.same(scenario) == [1042, 1042]


@pytest.mark.parametrize("kind", KINDS)
def test_exception_chaining_after_await(twins: Pair, kind: str) -> None:
    """Awaiting a task that fails while an exception is handled chains them."""

    async def scenario(t: Twin) -> Any:
        await begin(t, kind)
        seen = []
        for make_task in (True, False):  # the task, and the coroutine awaited directly
            try:
                raise KeyError(3)
            except KeyError:
                coro = t.raises(ValueError())
                try:
                    await (asyncio.ensure_future(coro) if make_task else coro)
                except ValueError as exc:
                    chained = exc.__context__
                    seen.append([type(exc).__name__, type(chained).__name__, getattr(chained, "args", None)])
        return seen

    assert twins.same(scenario) == [["ValueError", "KeyError", (3,)]] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_exception_chaining_after_await_with_context_cycle(twins: Pair, kind: str) -> None:
    """https://bugs.python.org/issue40696: the task raises the exception being handled."""

    async def scenario(t: Twin) -> Any:
        await begin(t, kind)
        seen = []
        for make_task in (True, False):  # the task, and the coroutine awaited directly
            try:
                raise KeyError("a")
            except KeyError as handled:
                coro = t.raises(handled)
                try:
                    await (asyncio.ensure_future(coro) if make_task else coro)
                except KeyError as exc:
                    has_cycle = exc is exc.__context__
                    # Prevent a hang if has_cycle is True.
                    exc.__context__ = None
                    seen.append([has_cycle, exc is handled])
        return seen

    assert twins.same(scenario) == [[False, True]] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_cancelling(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        seen: list[Any] = [task.cancelling(), " cancelling " in repr(task)]
        seen += [task.cancel(), task.cancelling(), " cancelling " in repr(task)]
        # Since two lines of Task.cancel() are commented out, a second cancel() returns True.
        seen += [task.cancel(), task.cancelling()]
        seen += [await araised(task), gate.state()[0]]
        # Done: the count stays, and uncancel() does not make it less cancelled.
        seen += [task.cancelling(), task.uncancel(), task.cancelled()]
        return seen

    assert twins.same(scenario) == [
        *(0, False),
        *(True, 1, True),
        *(True, 2),
        *(Raised("CancelledError", ""), False),
        *(2, 1, True),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_cancelling__two_messages(twins: Pair, kind: str) -> None:
    """test_cancelling's two cancel() calls, with messages: a task not started yet
    takes the last message (its coroutine has not taken the first); a started one,
    blocked in an await, the first (its future is already cancelled)."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        seen = []
        for started in (False, True):
            task = asyncio.ensure_future(t.gated()[0])
            if started:
                await asyncio.sleep(0)
            task.cancel("one")
            task.cancel("two")
            seen.append(await araised(task))
        return seen

    assert twins.same(scenario) == [Raised("CancelledError", "two"), Raised("CancelledError", "one")]


def test_uncancel_basic(twins: Pair) -> None:
    """The task's coroutine takes the cancellation of a twin await and uncancels."""

    async def scenario(t: Twin) -> list[Any]:
        first, gate1 = t.gated()
        second, gate2 = t.gated()

        async def body() -> None:
            try:
                await first
            except asyncio.CancelledError:
                current = asyncio.current_task()
                assert current is not None
                current.uncancel()
                await second

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)
        # Cancel the first await
        seen: list[Any] = [task.cancel(), " cancelling " in repr(task), task.cancelling(), task.cancelled()]
        for _ in range(3):
            await asyncio.sleep(0)
        # after .uncancel()
        seen += [" cancelling " in repr(task), task.cancelling(), task.cancelled()]
        # Cancel the second await
        seen += [task.cancel(), task.cancelling(), task.cancelled()]
        seen += [await araised(task), task.cancelled(), task.done()]
        # uncancel is no longer effective after the task is complete
        task.uncancel()
        seen += [task.cancelled(), task.done()]
        seen += [await not_left_running(gate1), await not_left_running(gate2)]
        return seen

    assert twins.same(scenario) == [
        *(True, True, 1, False),
        *(False, 0, False),
        *(True, 1, False),
        *(Raised("CancelledError", ""), True, True),
        *(True, True),
        *(True, True),
    ]


def test_uncancel_structured_blocks(twins: Pair) -> None:
    """A timeout cancels the task in a twin await; uncancel() in a ``finally`` turns
    it into TimeoutError and the code after the block goes on."""

    async def scenario(t: Twin) -> list[Any]:
        async def make_request_with_timeout(*, sleep: float, timeout: float) -> tuple[bool, bool, bool]:
            task = asyncio.current_task()
            assert task is not None
            loop = task.get_loop()

            timed_out = False
            structured_block_finished = False
            outer_code_reached = False

            def on_timeout() -> None:
                nonlocal timed_out
                timed_out = True
                task.cancel()

            timeout_handle = loop.call_later(timeout, on_timeout)
            try:
                try:
                    # Structured block affected by the timeout
                    await t.sleep(sleep)
                    structured_block_finished = True
                finally:
                    timeout_handle.cancel()
                    if timed_out and task.uncancel() == 0 and type(sys.exc_info()[1]) is asyncio.CancelledError:
                        raise TimeoutError
            except TimeoutError:
                assert timed_out

            # Outer code not affected by the timeout:
            outer_code_reached = True
            await asyncio.sleep(0)
            return timed_out, structured_block_finished, outer_code_reached

        seen: list[Any] = []
        # Test which timed out.
        t1 = asyncio.ensure_future(make_request_with_timeout(sleep=10.0, timeout=0.05))
        seen += [await t1, t1.cancelling()]
        # Test which did not time out.
        t2 = asyncio.ensure_future(make_request_with_timeout(sleep=0, timeout=10.0))
        seen += [await t2, t2.cancelling()]
        return seen

    assert twins.same(scenario) == [(True, False, True), 0, (False, True, True), 0]


@pytest.mark.parametrize("kind", KINDS)
def test_uncancel_resets_must_cancel(twins: Pair, kind: str) -> None:
    """Upstream's task is runnable (its future done, its step not yet run) when it
    is cancelled and uncancelled. A Rust future's result wakes its task in the same
    loop callback, so that window only exists for a task not started yet: cancel()
    then uncancel() before its first step. From 3.13 uncancel() clears the pending
    cancellation and the task runs; before, it is cancelled all the same."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.ensure_future(t.value(42))
        task.cancel()  # Enter cancelled state
        seen: list[Any] = [task.cancelling()]
        task.uncancel()  # Undo cancellation
        seen += [task.cancelling(), await araised(task)]
        return seen

    assert twins.same(scenario) == [1, 0, 42 if sys.version_info >= (3, 13) else Raised("CancelledError", "")]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        asyncio.get_running_loop().call_soon(task.cancel)
        outcome = await araised(task)
        return [outcome, task.done(), task.cancelled(), task.cancel(), await not_left_running(gate)]

    assert twins.same(scenario) == [Raised("CancelledError", ""), True, True, False, True]


CANCEL_CASES: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = [
    ((), ()),
    ((None,), ()),
    (("my message",), ("my message",)),
    # Non-string values should roundtrip.
    ((5,), (5,)),
]


def cancel_with_message_then(twins: Pair, kind: str, retrieve: Callable[[Any], Any]) -> None:
    """test_cancel_with_message_then_future_result/_exception: a twin task
    cancelled with a message, waited for, then its result/exception asked for."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        seen = []
        for cancel_args, _ in CANCEL_CASES:

            async def coro(cancel_args: tuple[Any, ...] = cancel_args) -> None:
                task = asyncio.ensure_future(t.gated()[0])
                await asyncio.sleep(0)
                task.cancel(*cancel_args)
                await asyncio.wait([task])
                retrieve(task)

            try:
                await asyncio.ensure_future(coro())
            except asyncio.CancelledError as exc:
                seen.append((exc.args, innermost_context(exc)))
        return seen

    assert twins.same(scenario) == [(args, ("CancelledError", args, 0)) for _, args in CANCEL_CASES]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_with_message_then_future_result(twins: Pair, kind: str) -> None:
    cancel_with_message_then(twins, kind, lambda task: task.result())


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_with_message_then_future_exception(twins: Pair, kind: str) -> None:
    cancel_with_message_then(twins, kind, lambda task: task.exception())


@pytest.mark.parametrize("kind", KINDS)
def test_cancellation_exception_context(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        loop = asyncio.get_running_loop()

        async def coro() -> None:
            inner, gate = t.gated()
            inner_task = asyncio.ensure_future(inner)
            assert await until(lambda: gate.state()[0])  # the inner task is running
            loop.call_soon(inner_task.cancel, "msg")
            try:
                await inner_task
            except asyncio.CancelledError as ex:
                raise ValueError("cancelled") from ex

        try:
            await asyncio.ensure_future(coro())
        except ValueError as exc:
            return [exc.args, innermost_context(exc)]
        return []

    assert twins.same(scenario) == [("cancelled",), ("CancelledError", ("msg",), 1)]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_with_message_before_starting_task(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        started = []

        async def coro() -> None:
            inner, gate = t.gated()
            task = asyncio.ensure_future(inner)
            # We deliberately leave out the sleep here.
            task.cancel("my message")
            await asyncio.wait([task])
            started.append(gate.state()[0])
            task.exception()

        try:
            await asyncio.ensure_future(coro())
        except asyncio.CancelledError as exc:
            return [exc.args, innermost_context(exc), started]
        return []

    assert twins.same(scenario) == [("my message",), ("CancelledError", ("my message",), 0), [False]]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_yield(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)  # start coro
        task.cancel()
        seen: list[Any] = [task.done(), task.cancelled()]  # not before the task's next step
        outcome = await araised(task)
        return [*seen, outcome, task.done(), task.cancelled(), task.cancel(), await not_left_running(gate)]

    assert twins.same(scenario) == [False, False, Raised("CancelledError", ""), True, True, False, True]


def test_cancel_inner_future(twins: Pair) -> None:
    """The future a twin coroutine waits on is cancelled: its task is cancelled."""

    async def scenario(t: Twin) -> list[Any]:
        coro, gate = t.gated()

        async def body() -> int:
            await coro
            return 12

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)  # start task
        f = waiting_on(task)
        f.cancel()
        outcome = await araised(task)
        return [outcome, f.cancelled(), task.cancelled(), await not_left_running(gate)]

    assert twins.same(scenario) == [Raised("CancelledError", ""), True, True, True]


def test_cancel_both_task_and_inner_future(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        coro, gate = t.gated()

        async def body() -> int:
            await coro
            return 12

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)
        f = waiting_on(task)
        f.cancel()
        task.cancel()
        outcome = await araised(task)
        return [outcome, task.done(), f.cancelled(), task.cancelled(), await not_left_running(gate)]

    assert twins.same(scenario) == [Raised("CancelledError", ""), True, True, True, True]


def test_cancel_task_catching(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        coro1, gate1 = t.gated()
        coro2, gate2 = t.gated()

        async def body() -> Any:
            await coro1
            try:
                await coro2
            except asyncio.CancelledError:
                return 42
            return None

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)
        fut1 = waiting_on(task)
        gate1.open(None)
        seen = [await until(lambda: waiting_on(task) not in (None, fut1))]
        fut2 = waiting_on(task)
        task.cancel()
        seen += [fut2.cancelled(), await task, task.cancelled(), await not_left_running(gate2)]
        return seen

    assert twins.same(scenario) == [True, True, 42, False, True]


def test_cancel_task_ignoring(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        coro1, gate1 = t.gated()
        coro2 = t.gated()[0]
        coro3, gate3 = t.gated()

        async def body() -> Any:
            await coro1
            with contextlib.suppress(asyncio.CancelledError):
                await coro2
            return await coro3

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)
        fut1 = waiting_on(task)
        gate1.open(None)
        seen = [await until(lambda: waiting_on(task) not in (None, fut1))]
        fut2 = waiting_on(task)
        task.cancel()
        seen.append(fut2.cancelled())
        seen.append(await until(lambda: waiting_on(task) not in (None, fut2)))
        fut3 = waiting_on(task)
        gate3.open(42)
        seen += [await task, fut3.cancelled(), task.cancelled()]
        return seen

    assert twins.same(scenario) == [True, True, True, 42, False, False]


def test_cancel_current_task(twins: Pair) -> None:
    """A task cancels itself, then awaits a twin coroutine: cancelled at once."""

    async def scenario(t: Twin) -> list[Any]:
        coro, gate = t.gated()

        async def body() -> int:
            task.cancel()
            # The await should be cancelled immediately.
            await coro
            return 12

        task = asyncio.ensure_future(body())
        seen: list[Any] = [task.cancelled()]
        seen.append(await araised(task))
        seen += [task.done(), task.cancelled(), task.cancel(), await not_left_running(gate)]
        return seen

    assert twins.same(scenario) == [False, Raised("CancelledError", ""), True, True, False, True]


@pytest.mark.parametrize("inline", [False, True], ids=["spawned", "inline"])
def test_cancel_at_end(twins: Pair, inline: bool) -> None:
    """coroutine end right after task is cancelled (its last await a twin's)"""

    async def scenario(t: Twin) -> list[Any]:
        async def body() -> Any:
            task.cancel()
            return await (t.value_inline(12) if inline else t.value(12))

        task = asyncio.ensure_future(body())
        seen: list[Any] = [task.cancelled()]
        seen.append(await araised(task))
        seen += [task.done(), task.cancelled(), task.cancel()]
        return seen

    assert twins.same(scenario) == [False, Raised("CancelledError", ""), True, True, False]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_awaited_task(twins: Pair, kind: str) -> None:
    """bpo-34872: a task that cancels itself then awaits a twin task cancels it."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        nested_task: Any = None

        async def body() -> None:
            nonlocal nested_task
            # Create a sub-task and wait for it to run.
            nested_task = asyncio.ensure_future(coro)
            await asyncio.sleep(0)
            # Request the current task to be cancelled.
            task.cancel()
            # Block on the nested task, which should be immediately cancelled.
            await nested_task

        task = asyncio.ensure_future(body())
        outcome = await araised(task)
        return [outcome, task.cancelled(), nested_task.cancelled(), await not_left_running(gate)]

    assert twins.same(scenario) == [Raised("CancelledError", ""), True, True, True]


def cancel_traceback(twins: Pair, kind: str, search: str, body: Callable[[Any], Any]) -> None:
    """A cancelled twin task's CancelledError shows the line of the outer coroutine
    that got it; asyncio's also shows the line of the task's own coroutine that was
    interrupted (the gate's ``await``). A Rust task has no Python frames to show."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        try:
            await asyncio.ensure_future(body(t))
        except asyncio.CancelledError:
            text = traceback.format_exc()
            return [search in text, "result = await future()" in text]
        return []

    seen = per_twin(twins, scenario)
    assert seen["asyncio"] == [True, True]
    assert seen["rust"] == [True, False]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_traceback_for_future_result(twins: Pair, kind: str) -> None:
    async def body(t: Twin) -> None:
        task = asyncio.ensure_future(t.gated()[0])
        await asyncio.sleep(0)
        task.cancel()
        await task  # search target

    cancel_traceback(twins, kind, "await task  # search target", body)


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_traceback_for_future_exception(twins: Pair, kind: str) -> None:
    async def body(t: Twin) -> None:
        task = asyncio.ensure_future(t.gated()[0])
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        task.exception()  # search target

    cancel_traceback(twins, kind, "task.exception()  # search target", body)


@pytest.mark.parametrize("kind", KINDS)
def test_stop_while_run_in_complete(twins: Pair, kind: str) -> None:
    """The loop stops while run_until_complete waits for a twin task."""

    def scenario(t: Twin) -> list[Any]:
        with event_loop(twins.loop, t, kind) as loop:
            task = loop.create_task(t.gated()[0])
            loop.call_later(0.01, loop.stop)
            seen = [raised(lambda: loop.run_until_complete(task)), task.done()]
            task.cancel()
            seen.append(raised(lambda: loop.run_until_complete(task)))
            return seen

    assert twins.same(scenario, sync=True) == [
        Raised("RuntimeError", "Event loop stopped before Future completed."),
        False,
        Raised("CancelledError", ""),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_log_traceback(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        task = asyncio.ensure_future(t.value(None))

        def set_true() -> None:
            setattr(task, "_log_traceback", True)  # noqa: B010 - an attribute a type checker would refuse

        return [raised(set_true), await task]

    assert twins.same(scenario) == [Raised("ValueError", "_log_traceback can only be set to False"), None]


@pytest.mark.parametrize("kind", KINDS)
def test_wait(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.sleep(0.01))
        b = asyncio.ensure_future(t.sleep(0.02))

        async def foo() -> Any:
            done, pending = await asyncio.wait([b, a])
            return [done == {a, b}, pending == set(), 42]

        # Doing it again should take no time and exercise a different path.
        return [await asyncio.ensure_future(foo()), await asyncio.ensure_future(foo())]

    assert twins.same(scenario) == [[True, True, 42]] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_wait_duplicate_coroutines(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        loop = asyncio.get_running_loop()
        c = loop.create_task(t.value("test"))
        task = asyncio.ensure_future(asyncio.wait([c, c, loop.create_task(t.value("spam"))]))
        done, pending = await task
        return [len(pending), {f.result() for f in done}]

    assert twins.same(scenario) == [0, {"test", "spam"}]


def test_wait_errors(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        seen = [await araised(asyncio.wait(set()))]
        # -1 is an invalid return_when value
        coro = t.sleep(10.0)
        seen.append(await araised(asyncio.wait([coro], return_when=-1)))  # type: ignore[arg-type]
        coro.close()
        return seen

    assert twins.same(scenario) == [
        Raised("ValueError", "Set of Tasks/Futures is empty."),
        Raised("ValueError", "Invalid return_when value: -1"),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_completed(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        a = asyncio.ensure_future(coro)
        b = asyncio.ensure_future(t.sleep(0.01))
        task = asyncio.ensure_future(asyncio.wait([b, a], return_when=asyncio.FIRST_COMPLETED))
        done, pending = await task
        seen = [done == {b}, pending == {a}, a.done(), b.done(), b.result()]
        gate.open(None)
        await asyncio.wait([a, b])
        return seen

    assert twins.same(scenario) == [True, True, False, True, None]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_really_done(twins: Pair, kind: str) -> None:
    """Tasks done in the same loop turn are all in ``done``, even if the callbacks
    of some have not run yet (the twins' inline calls finish in their first step)."""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.value_inline(None))
        b = asyncio.ensure_future(t.value_inline(None))
        task = asyncio.ensure_future(asyncio.wait([b, a], return_when=asyncio.FIRST_COMPLETED))
        done, _ = await task
        return [done == {a, b}, a.done(), a.result(), b.done(), b.result()]

    assert twins.same(scenario) == [True, True, None, True, None]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_exception(twins: Pair, kind: str) -> None:
    """first_exception, task already has exception"""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro, gate = t.gated()
        a = asyncio.ensure_future(coro)
        b = asyncio.ensure_future(t.raises(ZeroDivisionError("err")))
        task = asyncio.ensure_future(asyncio.wait([b, a], return_when=asyncio.FIRST_EXCEPTION))
        done, pending = await task
        seen = [done == {b}, pending == {a}, Raised.of(b.exception())]  # type: ignore[arg-type]
        gate.open(None)
        await asyncio.wait([a, b])
        return seen

    assert twins.same(scenario) == [True, True, Raised("ZeroDivisionError", "err")]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_first_exception_in_wait(twins: Pair, kind: str) -> None:
    """first_exception, exception during waiting"""

    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        coro_a, gate_a = t.gated()
        coro_b, gate_b = t.gated()
        a = asyncio.ensure_future(coro_a)
        b = asyncio.ensure_future(coro_b)
        asyncio.get_running_loop().call_later(0.01, gate_b.fail, ZeroDivisionError("err"))
        done, pending = await asyncio.wait([b, a], return_when=asyncio.FIRST_EXCEPTION)
        seen = [done == {b}, pending == {a}, Raised.of(b.exception())]  # type: ignore[arg-type]
        gate_a.open(None)
        await asyncio.wait([a, b])
        return seen

    assert twins.same(scenario) == [True, True, Raised("ZeroDivisionError", "err")]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_with_exception(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.sleep(0.01))
        coro, gate = t.gated()
        b = asyncio.ensure_future(coro)
        asyncio.get_running_loop().call_later(0.02, gate.fail, ZeroDivisionError("really"))

        async def foo() -> Any:
            done, pending = await asyncio.wait([b, a])
            errors = {f for f in done if f.exception() is not None}
            return [len(done), len(pending), len(errors)]

        return [await asyncio.ensure_future(foo()), await asyncio.ensure_future(foo())]

    assert twins.same(scenario) == [[2, 0, 1]] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_wait_with_timeout(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.value(None))
        coro, gate = t.gated()
        b = asyncio.ensure_future(coro)

        async def foo() -> Any:
            done, pending = await asyncio.wait([b, a], timeout=0.2)
            return [done == {a}, pending == {b}]

        seen: list[Any] = await asyncio.ensure_future(foo())
        gate.open(None)
        await asyncio.wait([a, b])
        return seen

    assert twins.same(scenario) == [True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_concurrent_complete(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.value(None))
        coro, gate = t.gated()
        b = asyncio.ensure_future(coro)
        done, pending = await asyncio.wait([b, a], timeout=0.2)
        seen = [done == {a}, pending == {b}]
        gate.open(None)
        await asyncio.wait([a, b])
        return seen

    assert twins.same(scenario) == [True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_with_iterator_of_tasks(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        await begin(t, kind)
        a = asyncio.ensure_future(t.sleep(0.01))
        b = asyncio.ensure_future(t.sleep(0.02))

        async def foo() -> Any:
            done, pending = await asyncio.wait(iter([b, a]))
            return [done == {a, b}, pending == set(), 42]

        return await asyncio.ensure_future(foo())

    assert twins.same(scenario) == [True, True, 42]
