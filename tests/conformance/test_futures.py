"""CPython's ``test_asyncio/test_futures.py`` and ``test_futures2.py`` (3.11 and 3.13),
ported to the futures Rust gives Python.

Two objects stand in for upstream's ``Future``, each next to its asyncio twin (the
``kind`` parameter):

* ``task``: ``asyncio.ensure_future(t.gated()[0])`` on a loop where the bridge has
  run (a **RustTask**, made by the bridge's task factory; an ``asyncio.Task`` on the
  Python twin);
* ``future``: what ``coro.send(None)`` yields for a started Rust coroutine (a
  **RustFuture**; on the Python twin, the ``asyncio.Future`` a started ``async def``
  awaiting it yields). As the Task driving a coroutine would, the test resets its
  ``_asyncio_future_blocking`` after receiving it.

Upstream completes its future with ``set_result``/``set_exception``; here the gate
does (``gate.open``/``gate.fail``), and the test runs the loop until the future is
done (a Rust result arrives through the loop a few turns later). Upstream's
``run_briefly`` becomes a couple more turns.

Not ported:

Construction and the class itself (users never make or name the Rust classes):
  test_generic_alias: ``Future[str]`` on the class; code annotates with asyncio's classes.
  test_constructor_without_loop: constructs a Future; RustFuture/RustTask cannot be
    constructed from Python (TypeError "cannot create ... instances").
  test_constructor_use_global_loop: the same, with a global loop.
  test_constructor_positional: the same, with a positional argument.
  test_uninitialized: ``cls.__new__`` without ``__init__``; not possible for the Rust classes.
  test_inherit_without_calling_super_init: subclassing the Future class.
  CSubFutureTests, CSubFutureDoneCallbackTests, PyFutureTests, ...: the same tests on
    other Future implementations (each test here runs once per twin and kind).

concurrent.futures only (no Rust object involved):
  test_wrap_future (BaseFutureTests; DuckTests' test_wrap_future is ported):
    wraps a concurrent.futures.Future.
  test_wrap_future_without_loop, test_wrap_future_use_running_loop,
  test_wrap_future_use_global_loop, test_wrap_future_cancel, test_wrap_future_cancel2:
    the same.

asyncio internals:
  test_set_result_unless_cancelled: an asyncio helper applied only to futures asyncio
    makes itself.
  test_future_iter_get_referents_segfault: ``gc.get_referents`` of the C ``_asyncio``
    module.
  test_handle_exc_handler_correct_context: a ``loop.call_soon`` callback; no future.

The debug-mode creation traceback of a ``future`` (made inside the awaited Rust
coroutine, where there is no Python frame) is not checked; that of a task is
(``test_future_source_traceback``).

Differences asserted as documented (not bugs): a RustFuture refuses ``set_result``/
``set_exception`` with RuntimeError (its result comes from Rust) where a Future raises
InvalidStateError once done; a RustFuture failed with StopIteration says "coroutine
raised StopIteration" (a Future: "... cannot be raised into a Future"); what
``remove_done_callback`` counts or compares while an ``__eq__`` mutates the callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest

from .twins import Gate, Pair, Raised, Twin, araised, raised

KINDS = pytest.mark.parametrize("kind", ["task", "future"])


@dataclass
class Subject:
    """The future under test, the gate that completes it, and (``future`` kind) the
    coroutine that yielded it."""

    fut: Any
    gate: Gate
    coro: Any = None


async def subject(t: Twin, kind: str) -> Subject:
    await t.value()  # the bridge has run on this loop: its task factory is installed
    coro, gate = t.gated()
    if kind == "task":
        return Subject(asyncio.ensure_future(coro), gate)
    fut = coro.send(None)
    fut._asyncio_future_blocking = False  # as the Task driving the coroutine does
    return Subject(fut, gate, coro)


@contextlib.asynccontextmanager
async def made(t: Twin, kind: str) -> AsyncIterator[Subject]:
    """A :class:`Subject`; its coroutine (``future`` kind) is closed at the end."""
    s = await subject(t, kind)
    try:
        yield s
    finally:
        if s.coro is not None:
            s.coro.close()


async def settled(fut: Any, turns: int = 2) -> None:
    """Runs the loop until ``fut`` is done, then ``turns`` more turns (upstream's
    ``run_briefly``: the callbacks scheduled as it finished run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    spins = 0
    while not fut.done():
        assert loop.time() < deadline, f"{fut!r} never finished"
        spins += 1
        await asyncio.sleep(0 if spins < 50 else 0.001)
    for _ in range(turns):
        await asyncio.sleep(0)


async def collected(turns: int = 2) -> None:
    """Collects garbage and lets the loop run what that scheduled."""
    for _ in range(turns):
        gc.collect()
        await asyncio.sleep(0)


def make_callback(bag: list[Any], thing: Any) -> Callable[[Any], None]:
    def bag_appender(future: Any) -> None:
        bag.append(thing)

    return bag_appender


def observed(twins: Pair, scenario: Callable[[Twin], Any]) -> dict[str, Any]:
    """Each twin's observation, for a test where they differ in a documented way."""
    return {twin.name: twins.observe(twin, scenario) for twin in (twins.python, twins.rust)}


def kind_of(outcome: Any) -> Any:
    """An exception's type name (its message is free to differ), else the value."""
    return outcome.type if isinstance(outcome, Raised) else outcome


def never_retrieved(handled: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["message"], repr(c.get("exception"))) for c in handled if "never retrieved" in c["message"]]


# --- DuckTests: a Rust future is a duck-typed asyncio future ------------------------------


@KINDS
def test_wrap_future(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> bool:
        async with made(t, kind) as s:
            return asyncio.wrap_future(s.fut) is s.fut

    assert twins.same(scenario) is True


@KINDS
def test_ensure_future(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> bool:
        async with made(t, kind) as s:
            return asyncio.ensure_future(s.fut) is s.fut

    assert twins.same(scenario) is True


# --- BaseFutureTests ------------------------------------------------------------------------


@KINDS
def test_isfuture(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[bool]:
        async with made(t, kind) as s:
            seen = [
                asyncio.isfuture(s.fut),
                asyncio.isfuture(type(s.fut)),
                # As `isinstance(Mock(Future), Future)` returns `True`
                asyncio.isfuture(mock.Mock(type(s.fut))),
            ]
            s.fut.cancel()
            return seen

    assert twins.same(scenario) == [True, False, True]


@KINDS
def test_initial_state(twins: Pair, kind: str) -> None:
    """A task's cancel() takes effect on a later turn (a Task's does too)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            f = s.fut
            seen = [f.cancelled(), f.done(), f.cancel(), f.cancelled()]
            await settled(f)
            return [*seen, f.cancelled()]

    assert twins.same(scenario) == [False, False, True, kind == "future", True]


@KINDS
def test_constructor_use_running_loop(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[bool]:
        loop = asyncio.get_running_loop()
        async with made(t, kind) as s:
            return [s.fut._loop is loop, s.fut.get_loop() is loop]

    assert twins.same(scenario) == [True, True]


@KINDS
def test_future_cancel_message_getter(twins: Pair, kind: str) -> None:
    """Also what awaiting it twice, ``gather(return_exceptions=True)`` and
    ``_make_cancelled_error`` give: an asyncio Task, once cancelled, has forgotten the
    message (its ``_cancel_message`` is None; only the first await sees the error its
    coroutine raised)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            f = s.fut
            seen = [hasattr(f, "_cancel_message"), f._cancel_message, f.cancel("my message")]
            seen += [await araised(f), f._cancel_message, await araised(f)]
            seen += [[Raised.of(e) for e in await asyncio.gather(f, return_exceptions=True)]]
            seen += [Raised.of(f._make_cancelled_error())]
            return seen

    cancelled = Raised("CancelledError", "my message")
    if kind == "future":
        assert twins.same(scenario) == [True, None, True, cancelled, "my message", cancelled, [cancelled], cancelled]
    else:
        forgotten = Raised("CancelledError", "")
        assert twins.same(scenario) == [True, None, True, cancelled, None, forgotten, [forgotten], forgotten]


@KINDS
def test_future_cancel_message_setter(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            f = s.fut
            f.cancel("my message")
            f._cancel_message = "my new message"
            seen = [f._cancel_message]
            # Also check that the value is used for cancel().
            seen += [await araised(f), f._cancel_message]
            return seen

    assert twins.same(scenario) == [
        "my new message",
        Raised("CancelledError", "my new message"),
        "my new message" if kind == "future" else None,
    ]


def setters(f: Any) -> list[Any]:
    return [kind_of(raised(lambda: f.set_result(None))), kind_of(raised(lambda: f.set_exception(None)))]


def assert_setters(seen: dict[str, Any], kind: str) -> None:
    """``set_result``/``set_exception`` on a done future: asyncio's Future raises
    InvalidStateError, a Task RuntimeError ("Task does not support ..."). A RustFuture's
    result comes from Rust, so it refuses them as a Task does (RuntimeError) in every
    state: an inherent difference, documented in the bridge's future.rs."""
    python = "InvalidStateError" if kind == "future" else "RuntimeError"
    assert seen["asyncio"]["setters"] == [python, python], seen
    assert seen["rust"]["setters"] == ["RuntimeError", "RuntimeError"], seen


@KINDS
def test_cancel(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> dict[str, Any]:
        async with made(t, kind) as s:
            f = s.fut
            first = f.cancel()
            await settled(f)
            return {
                "common": [
                    first,
                    f.cancelled(),
                    f.done(),
                    kind_of(raised(f.result)),
                    kind_of(raised(f.exception)),
                    f.cancel(),
                ],
                "setters": setters(f),
            }

    seen = observed(twins, scenario)
    assert (
        seen["rust"]["common"]
        == seen["asyncio"]["common"]
        == [
            True,
            True,
            True,
            "CancelledError",
            "CancelledError",
            False,
        ]
    ), seen
    assert_setters(seen, kind)


@KINDS
def test_result(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> dict[str, Any]:
        async with made(t, kind) as s:
            f = s.fut
            before = kind_of(raised(f.result))
            s.gate.open(42)
            await settled(f)
            return {
                "common": [before, f.cancelled(), f.done(), f.result(), f.exception(), f.cancel()],
                "setters": setters(f),
            }

    seen = observed(twins, scenario)
    assert seen["rust"]["common"] == seen["asyncio"]["common"] == ["InvalidStateError", False, True, 42, None, False]
    assert_setters(seen, kind)


@KINDS
def test_exception(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> dict[str, Any]:
        exc = RuntimeError()
        async with made(t, kind) as s:
            f = s.fut
            before = kind_of(raised(f.exception))
            s.gate.fail(exc)
            await settled(f)
            return {
                "common": [before, f.cancelled(), f.done(), raised(f.result), f.exception() is exc, f.cancel()],
                "setters": setters(f),
            }

    seen = observed(twins, scenario)
    assert (
        seen["rust"]["common"]
        == seen["asyncio"]["common"]
        == ["InvalidStateError", False, True, Raised("RuntimeError", ""), True, False]
    )
    assert_setters(seen, kind)


def _set_exception_refuses_stop_iteration() -> bool:
    """Whether asyncio's Future refuses a StopIteration (3.11 and early 3.12; later
    releases store a RuntimeError caused by it)."""
    loop = asyncio.new_event_loop()
    try:
        loop.create_future().set_exception(StopIteration())
    except TypeError:
        return True
    finally:
        loop.close()
    return False


def check_stop_iteration_exception(twins: Pair, kind: str, stop_iteration_class: type[StopIteration]) -> None:
    """A ``task`` whose coroutine raises StopIteration, a ``future`` failed with it:
    it holds a RuntimeError caused by the StopIteration (PEP 479). The message differs
    for a ``future``: asyncio's Future says "StopIteration interacts badly with
    generators and cannot be raised into a Future", a RustFuture, the outcome of a Rust
    coroutine, says "coroutine raised StopIteration" as a coroutine does; both name
    StopIteration."""
    if kind == "future" and _set_exception_refuses_stop_iteration():
        pytest.skip("this Python's Future.set_exception refuses a StopIteration (TypeError): no asyncio twin")

    async def scenario(t: Twin) -> list[Any]:
        await t.value()
        if kind == "task":
            f = asyncio.ensure_future(t.raises(stop_iteration_class()))
            await settled(f)
        else:
            s = await subject(t, kind)
            f = s.fut
            s.gate.fail(stop_iteration_class())
            await settled(f)
            s.coro.close()
        exc = f.exception()
        return [
            f.cancelled(),
            f.done(),
            kind_of(raised(f.result)),
            type(exc).__name__,
            "StopIteration" in str(exc),
            type(exc.__cause__) is stop_iteration_class,
        ]

    assert twins.same(scenario) == [False, True, "RuntimeError", "RuntimeError", True, True]


@KINDS
def test_stop_iteration_exception(twins: Pair, kind: str) -> None:
    check_stop_iteration_exception(twins, kind, StopIteration)


@KINDS
def test_stop_iteration_subclass_exception(twins: Pair, kind: str) -> None:
    class MyStopIteration(StopIteration):
        pass

    check_stop_iteration_exception(twins, kind, MyStopIteration)


@KINDS
def test_exception_class(twins: Pair, kind: str) -> None:
    """Failed with an exception class: it holds an instance."""

    async def scenario(t: Twin) -> bool:
        async with made(t, kind) as s:
            s.gate.fail(RuntimeError)
            await settled(s.fut)
            return isinstance(s.fut.exception(), RuntimeError)

    assert twins.same(scenario) is True


@KINDS
def test_yield_from_twice(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            f = s.fut

            def fixture() -> Any:
                yield "A"
                x = yield from f
                yield "B", x
                y = yield from f
                yield "C", y

            g = fixture()
            seen = [next(g), next(g) is f]  # yield 'A', then the first yield from f
            s.gate.open(42)
            await settled(f)
            seen += [next(g), next(g)]  # the second "yield from f" does not yield f
            return seen

    assert twins.same(scenario) == ["A", True, ("B", 42), ("C", 42)]


STATE_WORDS = ("pending", "cancelling", "cancelled", "finished", "result=4", "exception=RuntimeError()")


def words(text: str) -> list[str]:
    """The state words of a repr (its exact text is free to differ)."""
    return [w for w in STATE_WORDS if w in text]


def _fakefunc(f: Any) -> Any:
    return f


@KINDS
def test_future_repr(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        seen: list[Any] = []
        async with made(t, kind) as s:
            seen.append(words(repr(s.fut)))
            s.fut.add_done_callback(_fakefunc)
            seen.append(words(repr(s.fut)))
            s.fut.cancel()
            await settled(s.fut)
            seen.append(words(repr(s.fut)))
        async with made(t, kind) as s:
            s.gate.open(4)
            await settled(s.fut)
            seen += [words(repr(s.fut)), s.fut.result()]
        async with made(t, kind) as s:
            exc = RuntimeError()
            s.gate.fail(exc)
            await settled(s.fut)
            seen += [words(repr(s.fut)), s.fut.exception() is exc]
        return seen

    assert twins.same(scenario) == [
        ["pending"],
        ["pending"],
        ["cancelled"],
        ["finished", "result=4"],
        4,
        ["finished", "exception=RuntimeError()"],
        True,
    ]


def test_future_repr__cancelling(twins: Pair) -> None:
    """A task whose cancellation was requested, before it takes effect."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, "task") as s:
            s.fut.cancel()
            seen = [words(repr(s.fut))]
            await settled(s.fut)
            return [*seen, words(repr(s.fut))]

    assert twins.same(scenario) == [["cancelling"], ["cancelled"]]


@KINDS
def test_copy_state(twins: Pair, kind: str) -> None:
    """``_copy_future_state`` (what asyncio's future chaining does) from a done Rust
    future into an asyncio Future."""
    from asyncio.futures import _copy_future_state  # type: ignore[attr-defined]

    if not hasattr(asyncio.Future, "_get_snapshot") and sys.version_info >= (3, 15):
        # 3.15's copies from a concurrent.futures.Future only (it calls _get_snapshot(),
        # which asyncio's own futures lack too): nothing of ours to compare.
        pytest.skip("this Python's _copy_future_state takes concurrent.futures futures only")

    async def scenario(t: Twin) -> list[Any]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        async with made(t, kind) as s:
            s.gate.open(10)
            await settled(s.fut)
            newf = loop.create_future()
            _copy_future_state(s.fut, newf)
            seen += [newf.done(), newf.result()]
        async with made(t, kind) as s:
            s.gate.fail(RuntimeError())
            await settled(s.fut)
            newf_exception = loop.create_future()
            _copy_future_state(s.fut, newf_exception)
            seen += [newf_exception.done(), kind_of(raised(newf_exception.result))]
        async with made(t, kind) as s:
            s.fut.cancel()
            await settled(s.fut)
            newf_cancelled = loop.create_future()
            _copy_future_state(s.fut, newf_cancelled)
            seen.append(newf_cancelled.cancelled())
        try:
            raise concurrent.futures.InvalidStateError
        except concurrent.futures.InvalidStateError as e:
            f_exc = e
        async with made(t, kind) as s:
            s.gate.fail(f_exc)
            await settled(s.fut)
            newf_conexc = loop.create_future()
            _copy_future_state(s.fut, newf_conexc)
            seen.append(newf_conexc.done())
            try:
                newf_conexc.result()
            except (concurrent.futures.InvalidStateError, asyncio.InvalidStateError) as e:
                newf_exc = e
            newf_tb = "".join(traceback.format_tb(newf_exc.__traceback__))
            # 3.11 converts it to a new exception without the traceback (0); 3.12+ keeps it (1)
            seen.append(newf_tb.count("raise concurrent.futures.InvalidStateError"))
        return seen

    assert twins.same(scenario)[:-1] == [True, 10, True, "RuntimeError", True, True]


@KINDS
def test_iter(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> Any:
        async with made(t, kind) as s:
            fut = s.fut

            def coro() -> Any:
                yield from fut

            def test() -> None:
                _arg1, _arg2 = coro()

            seen = raised(test)
            fut.cancel()
            return seen

    assert twins.same(scenario) == Raised("RuntimeError", "await wasn't used with future")


@KINDS
def test_log_traceback(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> Any:
        async with made(t, kind) as s:

            def set_true() -> None:
                s.fut._log_traceback = True

            seen = raised(set_true)
            s.fut.cancel()
            return seen

    assert twins.same(scenario) == Raised("ValueError", "_log_traceback can only be set to False")


def tb_logger(
    twins: Pair, kind: str, act: Callable[[Subject], Any] | None, *, fail: BaseException | None, result: Any = 42
) -> Any:
    """Completes a subject (with ``fail``, else with ``result``; neither when ``act`` is
    None: it is abandoned pending), lets ``act`` look at it, drops it and collects
    it. Returns the "exception was never retrieved" reports (upstream's
    ``m_log.error``), compared across twins."""

    async def scenario(t: Twin) -> Any:
        s = await subject(t, kind)
        if act is not None:
            if fail is not None:
                s.gate.fail(fail)
            else:
                s.gate.open(result)
            await settled(s.fut)
            act(s)
        if s.coro is not None:
            s.coro.close()
        if act is None:
            # A pending task stays alive while something can wake it: keep its gate.
            keep = s.gate
        del s
        await collected()
        if act is None:
            del keep
        return None

    twins.same(scenario)
    seen = {name: never_retrieved(twins.handled[name]) for name in ("asyncio", "rust")}
    assert seen["rust"] == seen["asyncio"], seen
    return seen["asyncio"]


@KINDS
def test_tb_logger_abandoned(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, None, fail=None) == []


@KINDS
def test_tb_logger_not_called_after_cancel(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, lambda s: s.fut.cancel(), fail=Exception()) == []


@KINDS
def test_tb_logger_result_unretrieved(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, lambda s: None, fail=None) == []


@KINDS
def test_tb_logger_result_retrieved(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, lambda s: s.fut.result(), fail=None) == []


@KINDS
def test_tb_logger_exception_unretrieved(twins: Pair, kind: str) -> None:
    name = "Task" if kind == "task" else "Future"
    assert tb_logger(twins, kind, lambda s: None, fail=RuntimeError("boom")) == [
        (f"{name} exception was never retrieved", "RuntimeError('boom')")
    ]


@KINDS
def test_tb_logger_exception_retrieved(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, lambda s: s.fut.exception(), fail=RuntimeError("boom")) == []


@KINDS
def test_tb_logger_exception_result_retrieved(twins: Pair, kind: str) -> None:
    assert tb_logger(twins, kind, lambda s: raised(s.fut.result), fail=RuntimeError("boom")) == []


@KINDS
def test_wrap_future_future(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> bool:
        async with made(t, kind) as s:
            return asyncio.wrap_future(s.fut) is s.fut

    assert twins.same(scenario) is True


def test_future_source_traceback(twins: Pair) -> None:
    """In debug mode a task records where it was made (shown when it is reported
    destroyed while pending, or with an unretrieved exception)."""

    async def scenario(t: Twin) -> Any:
        await t.value()
        asyncio.get_running_loop().set_debug(True)
        coro, _gate = t.gated()
        task = asyncio.ensure_future(coro)
        lineno = sys._getframe().f_lineno - 1
        frames = raised(lambda: [tuple(frame[:3]) for frame in task._source_traceback])
        task.cancel()
        if isinstance(frames, Raised):
            return frames
        return (__file__, lineno, "scenario") in frames

    assert twins.same(scenario) is True


def check_future_exception_never_retrieved(twins: Pair, kind: str, debug: bool) -> None:
    def memory_error() -> BaseException:
        try:
            raise MemoryError()
        except MemoryError as exc:
            return exc

    exc = memory_error()

    async def scenario(t: Twin) -> None:
        asyncio.get_running_loop().set_debug(debug)
        s = await subject(t, kind)
        s.gate.fail(exc)
        await settled(s.fut)
        if s.coro is not None:
            s.coro.close()
        del s
        await collected()

    twins.same(scenario)
    name = "Task" if kind == "task" else "Future"
    seen = {
        twin: [
            (c["message"], c.get("exception") is exc) for c in twins.handled[twin] if "never retrieved" in c["message"]
        ]
        for twin in ("asyncio", "rust")
    }
    assert seen["rust"] == seen["asyncio"] == [(f"{name} exception was never retrieved", True)], seen


@KINDS
def test_future_exception_never_retrieved(twins: Pair, kind: str) -> None:
    check_future_exception_never_retrieved(twins, kind, False)


@KINDS
def test_future_exception_never_retrieved_debug(twins: Pair, kind: str) -> None:
    check_future_exception_never_retrieved(twins, kind, True)


@KINDS
def test_future_stop_iteration_args(twins: Pair, kind: str) -> None:
    """A tuple result is StopIteration's one argument, not its arguments."""

    async def scenario(t: Twin) -> Any:
        async with made(t, kind) as s:
            s.gate.open((1, 2))
            await settled(s.fut)
            fi = s.fut.__iter__()
            try:
                fi.send(None)
            except StopIteration as ex:
                return ex.args
            return "StopIteration was expected"

    assert twins.same(scenario) == ((1, 2),)


@KINDS
def test_future_iter_throw(twins: Pair, kind: str) -> None:
    """Throwing into a pending future's iterator raises what was thrown, or a
    TypeError/ValueError for a malformed throw (the messages are free to differ);
    3.12+ warns about the three-argument form."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            fi = iter(s.fut)
            seen = [
                thrown(lambda: fi.throw(Exception, Exception("zebra"), None)),
                thrown(lambda: fi.throw(Exception, Exception("elephant"), 32)),
                thrown(lambda: fi.throw(Exception("elephant"), Exception("elephant"))),
                # https://github.com/python/cpython/issues/101326 (its warning: the test below)
                thrown(lambda: fi.throw(ValueError, None, None))[0],
                thrown(lambda: fi.throw(list)),
            ]
            s.fut.cancel()
            return seen

    deprecated = ["DeprecationWarning"] if sys.version_info >= (3, 12) else []
    assert twins.same(scenario) == [
        ("Exception", deprecated),
        ("TypeError", deprecated),
        ("TypeError", deprecated),
        "ValueError",
        ("TypeError", []),
    ]


@KINDS
def test_future_iter_throw__explicit_none(twins: Pair, kind: str) -> None:
    """``fi.throw(ValueError, None, None)``: 3.12+ warns about the three-argument
    form even when the extra arguments are None."""

    async def scenario(t: Twin) -> Any:
        async with made(t, kind) as s:
            fi = iter(s.fut)
            seen = thrown(lambda: fi.throw(ValueError, None, None))
            s.fut.cancel()
            return seen

    deprecated = ["DeprecationWarning"] if sys.version_info >= (3, 12) else []
    assert twins.same(scenario) == ("ValueError", deprecated)


def thrown(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``call`` raised (its type) and the warnings it issued (their categories)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = raised(call)
    return kind_of(outcome), [w.category.__name__ for w in caught]


@KINDS
def test_future_del_collect(twins: Pair, kind: str) -> None:
    """A future holding a result whose ``__del__`` runs the collector is dropped
    without crashing (upstream: 100 times; 20 here)."""

    class Evil:
        def __del__(self) -> None:
            gc.collect()

    async def scenario(t: Twin) -> int:
        subjects = [await subject(t, kind) for _ in range(20)]
        for s in subjects:
            s.gate.open(Evil())
        for s in subjects:
            await settled(s.fut, turns=0)
            if s.coro is not None:
                s.coro.close()
        finished = sum(1 for s in subjects if s.fut.done())
        del s
        subjects.clear()
        await collected()
        return finished

    assert twins.same(scenario) == 20


@KINDS
def test_future_del_segfault(twins: Pair, kind: str) -> None:
    """Deleting its protocol attributes is refused (the messages are free to differ)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            seen = [
                kind_of(raised(lambda: delattr(s.fut, "_asyncio_future_blocking"))),
                kind_of(raised(lambda: delattr(s.fut, "_log_traceback"))),
            ]
            s.fut.cancel()
            return seen

    assert twins.same(scenario) == ["AttributeError", "AttributeError"]


# --- BaseFutureDoneCallbackTests ----------------------------------------------------------------


def check_removed_callbacks(twins: Pair, kind: str, removed: list[int]) -> Any:
    """Adds callbacks for 42, 17 and 100, removes those at ``removed`` (twice), then
    completes the future; returns (removal counts, bag before, bag after, result)."""

    async def scenario(t: Twin) -> list[Any]:
        bag: list[Any] = []
        async with made(t, kind) as s:
            f = s.fut
            callbacks = [make_callback(bag, thing) for thing in (42, 17, 100)]
            for cb in callbacks:
                f.add_done_callback(cb)
            counts = [f.remove_done_callback(callbacks[i]) for i in removed]
            counts += [f.remove_done_callback(callbacks[i]) for i in removed]
            before = list(bag)
            s.gate.open("foo")
            await settled(f)
            return [counts, before, bag, f.result()]

    return twins.same(scenario)


@KINDS
def test_callbacks_remove_first_callback(twins: Pair, kind: str) -> None:
    assert check_removed_callbacks(twins, kind, [0]) == [[1, 0], [], [17, 100], "foo"]


@KINDS
def test_callbacks_remove_first_and_second_callback(twins: Pair, kind: str) -> None:
    assert check_removed_callbacks(twins, kind, [0, 1]) == [[1, 1, 0, 0], [], [100], "foo"]


@KINDS
def test_callbacks_remove_third_callback(twins: Pair, kind: str) -> None:
    assert check_removed_callbacks(twins, kind, [2]) == [[1, 0], [], [42, 17], "foo"]


@KINDS
def test_callbacks_invoked_on_set_result(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        bag: list[Any] = []
        async with made(t, kind) as s:
            s.fut.add_done_callback(make_callback(bag, 42))
            s.fut.add_done_callback(make_callback(bag, 17))
            before = list(bag)
            s.gate.open("foo")
            await settled(s.fut)
            return [before, bag, s.fut.result()]

    assert twins.same(scenario) == [[], [42, 17], "foo"]


@KINDS
def test_callbacks_invoked_on_set_result__added_when_done(twins: Pair, kind: str) -> None:
    """A callback added to a done future is scheduled (``call_soon``), not called by
    ``add_done_callback``: it runs after what was scheduled before it."""

    async def scenario(t: Twin) -> list[Any]:
        loop = asyncio.get_running_loop()
        bag: list[Any] = []
        async with made(t, kind) as s:
            s.gate.open("foo")
            await settled(s.fut)
            loop.call_soon(bag.append, "before")
            s.fut.add_done_callback(make_callback(bag, 42))
            loop.call_soon(bag.append, "after")
            inline = list(bag)
            await asyncio.sleep(0)
            return [inline, bag]

    assert twins.same(scenario) == [[], ["before", 42, "after"]]


@KINDS
def test_callbacks_invoked_on_set_exception(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        bag: list[Any] = []
        exc = RuntimeError()
        async with made(t, kind) as s:
            s.fut.add_done_callback(make_callback(bag, 100))
            before = list(bag)
            s.gate.fail(exc)
            await settled(s.fut)
            return [before, bag, s.fut.exception() is exc]

    assert twins.same(scenario) == [[], [100], True]


@KINDS
def test_remove_done_callback(twins: Pair, kind: str) -> None:
    async def scenario(t: Twin) -> list[Any]:
        bag: list[Any] = []
        async with made(t, kind) as s:
            f = s.fut
            cb1, cb2, cb3 = (make_callback(bag, i) for i in (1, 2, 3))
            # Add one cb1 and one cb2.
            f.add_done_callback(cb1)
            f.add_done_callback(cb2)
            # One instance of cb2 removed. Now there's only one cb1; never had any cb3.
            counts = [f.remove_done_callback(cb2), f.remove_done_callback(cb3)]
            # After this there will be 6 instances of cb1 and one of cb2.
            f.add_done_callback(cb2)
            for _ in range(5):
                f.add_done_callback(cb1)
            # Remove all instances of cb1. One cb2 remains.
            counts.append(f.remove_done_callback(cb1))
            before = list(bag)
            s.gate.open("foo")
            await settled(f)
            return [counts, before, bag, f.result()]

    assert twins.same(scenario) == [[1, 0, 6], [], [2], "foo"]


@KINDS
def test_remove_done_callbacks_list_mutation(twins: Pair, kind: str) -> None:
    """An ``__eq__`` that removes callbacks while they are being compared (upstream
    checks that nothing crashes)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            fut = s.fut
            fut.add_done_callback(str)
            for _ in range(63):
                fut.add_done_callback(id)

            class evil:
                def __eq__(self, other: object) -> bool:
                    fut.remove_done_callback(id)
                    return False

            removed = fut.remove_done_callback(evil())
            left = [c[0] for c in fut._callbacks or ()]
            s.gate.open(None)
            await settled(fut)
            return [removed, left, fut.result()]

    assert twins.same(scenario) == [0, [str], None]


@KINDS
def test_remove_done_callbacks_list_clear(twins: Pair, kind: str) -> None:
    """An ``__eq__`` that removes the callback it is compared with (upstream checks
    that nothing crashes): all are gone."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            fut = s.fut
            fut.add_done_callback(str)
            for _ in range(63):
                fut.add_done_callback(id)

            class evil:
                def __eq__(self, other: object) -> Any:
                    fut.remove_done_callback(other)

            removed = fut.remove_done_callback(evil())
            left = [c[0] for c in fut._callbacks or ()]
            s.gate.open(None)
            await settled(fut)
            # The count is free to differ: asyncio's counts what its nested calls
            # removed (63), the bridge's what this call removed itself (0).
            return [type(removed).__name__, left, fut.result()]

    assert twins.same(scenario) == ["int", [], None]


@KINDS
def test_schedule_callbacks_list_mutation_1(twins: Pair, kind: str) -> None:
    """A callback that removes the others as the future's callbacks run: they were
    all taken when it finished, so they all run (upstream's ``str`` callbacks are
    ``rec`` here, to be seen)."""

    async def scenario(t: Twin) -> list[Any]:
        bag: list[Any] = []

        def rec(f: Any) -> None:
            bag.append("rec")

        def mut(f: Any) -> None:
            bag.append(("mut", f.remove_done_callback(rec)))

        async with made(t, kind) as s:
            s.fut.add_done_callback(mut)
            s.fut.add_done_callback(rec)
            s.fut.add_done_callback(rec)
            s.gate.open(1)
            await settled(s.fut)
            return bag

    assert twins.same(scenario) == [("mut", 0), "rec", "rec"]


@KINDS
def test_schedule_callbacks_list_mutation_2(twins: Pair, kind: str) -> None:
    """An ``__eq__`` that adds callbacks while they are being compared (upstream
    checks that nothing crashes). How many it gets to add is free to differ: asyncio
    compares the callbacks added meanwhile too (99 added), the bridge compares those
    there were when the call began (64 added)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            fut = s.fut
            fut.add_done_callback(str)
            for _ in range(63):
                fut.add_done_callback(id)
            max_extra_cbs = 100
            extra_cbs = 0

            class evil:
                def __eq__(self, other: object) -> bool:
                    nonlocal extra_cbs
                    extra_cbs += 1
                    if extra_cbs < max_extra_cbs:
                        fut.add_done_callback(id)
                    return False

            removed = fut.remove_done_callback(evil())
            s.gate.open(None)
            await settled(fut)
            return [removed, fut.result()]

    assert twins.same(scenario) == [0, None]


# --- test_futures2.py -----------------------------------------------------------------------------


@KINDS
def test_future_traceback(twins: Pair, kind: str) -> None:
    """Awaiting a failed future again and again does not grow the exception's
    traceback: the awaiting line is in it once each time."""

    async def scenario(t: Twin) -> list[int]:
        await t.value()
        s = None
        if kind == "task":
            future = asyncio.ensure_future(t.raises(TypeError(42)))
        else:
            s = await subject(t, kind)
            future = s.fut
            s.gate.fail(TypeError(42))
        await settled(future)
        counts = []
        for _ in range(5):
            try:
                await future
            except TypeError as e:
                tb = "".join(traceback.format_tb(e.__traceback__))
                counts.append(tb.count("await future"))
        if s is not None:
            s.coro.close()
        return counts

    assert twins.same(scenario) == [1] * 5


name_var: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="foo")


def test_task_exc_handler_correct_context(twins: Pair) -> None:
    """The exception handler reporting a task's unretrieved exception runs in the
    task's context (3.12+ asyncio loop: ``call_exception_handler`` uses
    ``get_context()``; 3.11 and uvloop do not). Upstream's task sets the variable
    itself; a Rust task is given a context that has it set."""

    async def scenario(t: Twin) -> list[str]:
        await t.value()
        seen: list[str] = []

        def exc_handler(loop: Any, context: dict[str, Any]) -> None:
            seen.append(name_var.get())

        loop = asyncio.get_running_loop()
        loop.set_exception_handler(exc_handler)
        ctx = contextvars.copy_context()
        ctx.run(name_var.set, "bar")
        task = loop.create_task(t.raises(ZeroDivisionError()), context=ctx)
        await settled(task)
        del task  # reported as it is collected
        await collected()
        return seen

    in_context = sys.version_info >= (3, 12) and twins.loop == "asyncio"
    assert twins.same(scenario) == ["bar" if in_context else "foo"]


@KINDS
def test_recursive_repr_for_pending_tasks(twins: Pair, kind: str) -> None:
    """A future whose result contains itself has a repr (no RecursionError)."""

    async def scenario(t: Twin) -> list[Any]:
        async with made(t, kind) as s:
            result = {s.fut}
            s.gate.open(result)
            await settled(s.fut)
            text = raised(lambda: repr(s.fut))
            result.clear()
            return [type(text).__name__, "..." in text if isinstance(text, str) else text]

    assert twins.same(scenario) == ["str", True]
