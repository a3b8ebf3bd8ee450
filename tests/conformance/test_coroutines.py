"""CPython's ``Lib/test/test_coroutines.py`` and ``Lib/test/test_asyncio/test_pep492.py``
(3.11 and 3.13), ported to twins: the coroutine protocol as the interpreter,
``inspect``, ``types`` and asyncio see it, with an ``async def`` coroutine and with a
Rust coroutine side by side.

A Rust coroutine needs a running loop to *start*, unless its function is
``#[rust_async(inline)]`` and ready at once: the tests that drive a coroutine by hand
without a loop (upstream's ``run_async``) use ``t.value_inline`` (or this file's
inline cell), the others drive it by hand inside a loop. Differences that follow
from Rust having no Python frame or code object, and from the interpreter
special-casing ``types.CoroutineType``, are asserted as they are, per twin, with the
reason next to them.

Not ported, grouped by reason (upstream names):

Syntax, compiler and tokenizer (no coroutine object involved):
    test_badsyntax_1, test_badsyntax_2, test_badsyntax_3, test_badsyntax_4: compile errors.
    test_oneline_defs: tokenizer regression.
    test_comp_3, test_comp_4, test_comp_4_2, test_comp_5, test_comp_6, test_comp_7, test_comp_8,
    test_comp_9, test_comp_10, test_nested_comp: async comprehensions over async generators (no
    awaitable of ours; awaiting in comprehensions is test_comp_1 and test_comp_2).
The ``async with`` / ``async for`` statements misused with Python objects:
    test_with_2, test_with_3, test_with_4: a manager missing __aenter__/__aexit__.
    test_with_5: compiler regression (an assert inside ``async with``).
    test_with_6, test_with_7, test_with_8: __aenter__/__aexit__ returning a non-awaitable int.
    test_for_2, test_for_3, test_for_4: ``async for`` over objects without __aiter__/__anext__.
    test_for_6: refcounts of Python managers and iterators.
    test_for_7, test_for_8: __aiter__ raising (no awaitable is made).
    test_for_11: __anext__ returning an object whose __await__ raises.
    test_for_tuple, test_for_stop_iteration: iterator classes deriving from tuple/StopIteration.
    test_for_assign_raising_stop_async_iteration, test_for_assign_raising_stop_async_iteration_2:
    async generator and ``async for`` target assignment internals.
Objects that are not ours being awaited (the interpreter's checks of Python classes):
    test_await_1, test_await_2: awaiting an int / a list.
    test_await_3, test_await_6, test_await_7: __await__ of Python classes yielding values.
    test_await_5, test_await_8, test_await_13: __await__ missing or returning a non-iterator.
Generators and generator-based coroutines:
    test_gen_1: a generator has no __await__.
    test_func_14: a coroutine catching GeneratorExit and awaiting again; a Rust future cannot
    intercept close() (it is dropped), so "coroutine ignored GeneratorExit" cannot arise.
Python frames and CPython internals:
    test_bpo_45813_1, test_bpo_45813_2: cr_frame.clear() crashes (a Rust coroutine has no frame).
    test_stack_in_coroutine_throw: Python stack depth seen from a generator during throw().
    test_unawaited_warning_when_module_broken: CPython's private warnings._warn_unawaited_coroutine
    hook (the bridge warns through the warnings module directly).
    test_tp_await_1, test_tp_await_2, test_tp_await_3: _testcapi's awaitType.
    test_debug_mode_manages_coroutine_origin_tracking (pep492): asyncio debug mode's own bookkeeping
    (origin tracking of Rust coroutines is test_origin_tracking).
asyncio primitives with no coroutine of ours (pep492):
    test_context_manager_async_with, test_context_manager_with_await: asyncio locks.
    test_readline: StreamReader.

Ported in part (the rest is about Python-only objects): test_func_5 and test_func_8 (the
@types.coroutine generators' own iteration), test_func_10 (``aw.send(10)`` into a generator),
test_corotype_1 (types.CoroutineType's docstrings), test_origin_tracking (setting a negative
depth), test_with_1 and test_for_1 (the values AsyncYieldFrom/AsyncYield yield to the driver).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import copy
import gc
import inspect
import io
import pickle
import re
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ipy_rustasync import rust_module

from .twins import Pair, PythonTwin, Raised, RustTwin, Twin, araised, new_loop, raised

#: Inline functions the control cell lacks: ready at once, so they run by hand
#: without a loop, and the second one runs Python code while the coroutine runs.
EXTRA = r"""
use pyo3::prelude::*;

/// Raises `exc` (an exception instance) when first polled, on the awaiting thread.
#[rust_async(inline)]
pub async fn raises_inline(exc: Py<PyAny>) -> PyResult<Py<PyAny>> {
    Python::attach(|py| Err(PyErr::from_value(exc.into_bound(py))))
}

/// Returns `f()`, called while the coroutine is being polled (running).
#[rust_async(inline)]
pub async fn call_inline(f: Py<PyAny>) -> PyResult<Py<PyAny>> {
    Python::attach(|py| f.call0(py))
}
"""


@pytest.fixture(scope="module")
def extra() -> ModuleType:
    return rust_module(EXTRA)


class InlinePythonTwin(PythonTwin):
    async def raises_inline(self, exc: BaseException) -> Any:
        raise exc

    async def call_inline(self, f: Callable[[], Any]) -> Any:
        return f()


class InlineRustTwin(RustTwin):
    def __init__(self, mod: ModuleType, extra: ModuleType) -> None:
        super().__init__(mod)
        self.extra = extra

    def raises_inline(self, exc: BaseException) -> Coroutine[Any, Any, Any]:
        return self.extra.raises_inline(exc)  # type: ignore[no-any-return]

    def call_inline(self, f: Callable[[], Any]) -> Coroutine[Any, Any, Any]:
        return self.extra.call_inline(f)  # type: ignore[no-any-return]


@pytest.fixture
def twins(control: ModuleType, extra: ModuleType, loop_kind: str) -> Pair:
    """The conftest's twins, with this file's inline functions."""
    return Pair(InlinePythonTwin(), InlineRustTwin(control, extra), loop_kind)


def raises_inline(t: Twin, exc: BaseException) -> Coroutine[Any, Any, Any]:
    return t.raises_inline(exc)  # type: ignore[attr-defined, no-any-return]


def call_inline(t: Twin, f: Callable[[], Any]) -> Coroutine[Any, Any, Any]:
    return t.call_inline(f)  # type: ignore[attr-defined, no-any-return]


def each(twins: Pair, scenario: Callable[[Twin], Any], *, sync: bool = False) -> dict[str, Any]:
    """What each twin observes, for a difference that is inherent: compared whole
    against the expected per-twin outcome, so a failure shows both."""
    return {twin.name: twins.observe(twin, scenario, sync=sync) for twin in (twins.python, twins.rust)}


def run_async(coro: Any) -> tuple[list[Any], Any]:
    """Upstream's helper: drives ``coro`` by hand; (what it yielded, its result)."""
    buffer: list[Any] = []
    while True:
        try:
            buffer.append(coro.send(None))
        except StopIteration as ex:
            return buffer, ex.args[0] if ex.args else None


def run_async__await__(coro: Any) -> tuple[list[Any], Any]:
    """Upstream's helper: drives ``coro.__await__()``, alternating send and next."""
    aw = coro.__await__()
    buffer: list[Any] = []
    i = 0
    while True:
        try:
            buffer.append(next(aw) if i % 2 else aw.send(None))
            i += 1
        except StopIteration as ex:
            return buffer, ex.args[0] if ex.args else None


def type_name(obj: object) -> str:
    """How CPython's messages name ``type(obj)``."""
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def generic(seen: Any, obj: object) -> Any:
    """``seen`` with ``obj``'s type name in a :class:`Raised` message made ``<type>``
    (the coroutine types are named differently; the rule is the same)."""
    if isinstance(seen, Raised):
        return Raised(seen.type, seen.message.replace(f"'{type_name(obj)}'", "'<type>'"))
    return seen


def addressless(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x?", text)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Waits (sleeping on the loop) until ``condition()``; False after ``timeout``.
    A spawned Rust body starts on a runtime thread, not at the ``send``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


async def suspended(t: Twin) -> tuple[Any, Any, Any]:
    """A gated coroutine sent into once by hand: (coroutine, gate, the future it
    yielded), its body started."""
    coro, gate = t.gated()
    yielded = coro.send(None)
    assert await until(lambda: gate.state()[0]), "the body never started"
    return coro, gate, yielded


async def dropped(gate: Any) -> tuple[bool, bool]:
    """The gate's state once its body was dropped (or after the timeout)."""
    await until(lambda: gate.state()[1])
    return gate.state()  # type: ignore[no-any-return]


def three_arg_throw_warnings() -> list[str]:
    """What a multi-argument throw() warns: deprecated from 3.12."""
    return ["DeprecationWarning"] if sys.version_info >= (3, 12) else []


# --- CoroutineTest -----------------------------------------------------------------


def test_func_1(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        coro = t.value_inline(10)
        kinds = [
            isinstance(coro, types.CoroutineType),
            inspect.iscoroutine(coro),
            asyncio.iscoroutine(coro),
            isinstance(coro, collections.abc.Coroutine),
            coro.cr_code is not None and bool(coro.cr_code.co_flags & inspect.CO_COROUTINE),  # type: ignore[attr-defined]
        ]
        return [*kinds, run_async(coro), run_async__await__(t.value_inline(10))]

    # A Rust coroutine is a coroutine to asyncio and collections.abc, not a
    # types.CoroutineType (like Cython's): inspect.iscoroutine is False and it has no
    # code object.
    assert each(twins, scenario, sync=True) == {
        "asyncio": [True, True, True, True, True, ([], 10), ([], 10)],
        "rust": [False, False, True, True, False, ([], 10), ([], 10)],
    }


def test_func_2(twins: Pair) -> None:
    """PEP 479: StopIteration out of the body is a RuntimeError."""

    def scenario(t: Twin) -> list[Any]:
        try:
            run_async(raises_inline(t, StopIteration()))
        except RuntimeError as err:
            return [Raised.of(err), repr(err.__cause__)]
        return []

    assert twins.same(scenario, sync=True) == [
        Raised("RuntimeError", "coroutine raised StopIteration"),
        "StopIteration()",
    ]


def test_func_2__thrown_into_a_fresh_coroutine(twins: Pair) -> None:
    """throw(StopIteration) into a coroutine that never ran: before 3.12 the
    exception is raised in its body, so PEP 479 turns it into a RuntimeError; from
    3.12 that conversion is an exception handler the body's first instruction is
    not covered by, so the StopIteration comes out as it is."""

    def scenario(t: Twin) -> list[Any]:
        seen = []
        for exc in (StopIteration, StopIteration(3)):
            coro = t.value_inline("spam")
            seen.append(raised(lambda: coro.throw(exc)))  # noqa: B023 - called at once
            seen.append(raised(lambda: coro.send(None)))  # noqa: B023 - called at once
        return seen

    reused = Raised("RuntimeError", "cannot reuse already awaited coroutine")
    if sys.version_info >= (3, 12):
        expected = [Raised("StopIteration", ""), reused, Raised("StopIteration", "3"), reused]
    else:
        expected = [Raised("RuntimeError", "coroutine raised StopIteration"), reused] * 2
    assert twins.same(scenario, sync=True) == expected


def test_func_3(twins: Pair) -> None:
    def scenario(t: Twin) -> str:
        coro = t.value_inline(1)
        text = addressless(repr(coro))
        coro.close()
        return text

    # Upstream: '^<coroutine object.* at 0x.*>$'; the Rust type names itself.
    assert each(twins, scenario, sync=True) == {
        "asyncio": "<coroutine object PythonTwin.value_inline at 0x?>",
        "rust": "<RustCoroutine object value_inline at 0x?>",
    }


def test_func_4(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        coro: Any = t.value_inline(1)

        def loop() -> None:
            for _ in coro:
                pass

        attempts = [
            lambda: list(coro),
            lambda: tuple(coro),
            lambda: sum(coro),
            lambda: iter(coro),
            loop,
            lambda: [i for i in coro],
        ]
        seen = [generic(raised(attempt), coro) for attempt in attempts]
        coro.close()
        return seen

    assert twins.same(scenario, sync=True) == [Raised("TypeError", "'<type>' object is not iterable")] * 6


def test_func_5(twins: Pair) -> None:
    """Not iterable either once started (suspended on its future)."""

    async def scenario(t: Twin) -> list[Any]:
        fresh: Any = t.value_inline(1)
        seen = [generic(raised(lambda: [el for el in fresh]), fresh)]
        fresh.close()
        coro, _gate, _ = await suspended(t)
        seen.append(generic(raised(lambda: [el for el in coro]), coro))
        coro.close()
        return seen

    assert twins.same(scenario) == [Raised("TypeError", "'<type>' object is not iterable")] * 2


def test_func_6(twins: Pair) -> None:
    """Driven by hand: it yields the future it waits on (blocking, as a Task expects),
    returns with StopIteration once that is done, and is finished afterwards."""

    async def scenario(t: Twin) -> list[Any]:
        coro, gate, yielded = await suspended(t)
        seen: list[Any] = [asyncio.isfuture(yielded), yielded._asyncio_future_blocking, yielded.done()]
        gate.open(2)
        await asyncio.wait([yielded])
        seen += [raised(lambda: coro.send(None)), raised(lambda: coro.send(None)), gate.state()]
        return seen

    assert twins.same(scenario) == [
        True,
        True,
        False,
        Raised("StopIteration", "2"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        (True, False),
    ]


def test_func_7(twins: Pair) -> None:
    def scenario(t: Twin) -> Any:
        coro = t.value_inline(10)

        def foo() -> Iterator[Any]:
            yield from coro  # type: ignore[misc]

        seen = raised(lambda: list(foo()))
        coro.close()
        return seen

    # The interpreter names the mistake only for types.CoroutineType; for any other
    # coroutine ``yield from`` asks for an iterator, and a coroutine is not one.
    assert each(twins, scenario, sync=True) == {
        "asyncio": Raised("TypeError", "cannot 'yield from' a coroutine object in a non-coroutine generator"),
        "rust": Raised("TypeError", "'ipy_rustasync.RustCoroutine' object is not iterable"),
    }


def test_func_8(twins: Pair) -> None:
    """A generator-based coroutine delegating to a coroutine."""

    def scenario(t: Twin) -> list[Any]:
        @types.coroutine
        def bar(aw: Any) -> Any:
            return (yield from aw)

        coro = t.value_inline("spam")
        direct = raised(lambda: run_async(bar(coro)))
        coro.close()
        # What works for every awaitable: delegating to its __await__() iterator.
        return [direct, run_async(bar(t.value_inline("spam").__await__()))]

    # ``yield from coroutine`` in a @types.coroutine generator is special-cased by the
    # interpreter for types.CoroutineType only.
    assert each(twins, scenario, sync=True) == {
        "asyncio": [([], "spam"), ([], "spam")],
        "rust": [Raised("TypeError", "'ipy_rustasync.RustCoroutine' object is not iterable"), ([], "spam")],
    }


def test_func_9(twins: Pair) -> None:
    """A coroutine never awaited warns when collected, also with an exception in
    flight (bpo-32703)."""

    def scenario(t: Twin) -> list[Any]:
        seen: list[Any] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t.value(1)
            gc.collect()
            seen.append(raised(lambda: [None for _ in t.value(2)]))  # type: ignore[attr-defined]
            gc.collect()
        pattern = r"coroutine '(\w+\.)?value' was never awaited"
        seen.append([(w.category.__name__, bool(re.fullmatch(pattern, str(w.message)))) for w in caught])
        return [s.type if isinstance(s, Raised) else s for s in seen]

    assert twins.same(scenario, sync=True) == ["TypeError", [("RuntimeWarning", True)] * 2]


def test_func_10(twins: Pair) -> None:
    """The __await__ iterator: its own iterator; close() and throw() reach the body."""

    async def scenario(t: Twin) -> list[Any]:
        seen: list[Any] = []
        coro, gate = t.gated()
        aw = coro.__await__()
        seen.append(aw is iter(aw))
        yielded = next(aw)
        seen.append(asyncio.isfuture(yielded))
        await until(lambda: gate.state()[0])
        aw.close()
        seen += [await dropped(gate), raised(lambda: next(aw))]

        coro, gate = t.gated()
        aw = coro.__await__()
        next(aw)
        await until(lambda: gate.state()[0])
        seen += [raised(lambda: aw.throw(ZeroDivisionError())), await dropped(gate)]

        coro, gate = t.gated()
        aw = coro.__await__()
        next(aw)
        await until(lambda: gate.state()[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen.append(raised(lambda: aw.throw(ZeroDivisionError, ZeroDivisionError(), None)))
        # (a coroutine suspended on an asyncio future warns twice: the future's
        # iterator, which it delegates to, warns too)
        seen += [sorted({w.category.__name__ for w in caught}), await dropped(gate)]
        return seen

    assert twins.same(scenario) == [
        True,
        True,
        (True, True),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        Raised("ZeroDivisionError", ""),
        (True, True),
        Raised("ZeroDivisionError", ""),
        three_arg_throw_warnings(),
        (True, True),
    ]


THROW_FORMS: list[tuple[Any, ...]] = [
    (ValueError,),
    (ValueError, "v"),
    (ValueError, ("a", "b")),
    (ValueError("i"),),
    (ValueError, ValueError("i2"), None),
    (ValueError("i"), "v"),
    (1,),
    (int,),
    (ValueError, ValueError("z"), "not a traceback"),
    (GeneratorExit,),
    (KeyboardInterrupt(),),
]


async def thrown(t: Twin, forms: list[tuple[Any, ...]]) -> list[Any]:
    """``throw(*args)`` for each of ``forms``, into a fresh coroutine and into a
    suspended one: (what it raised, the warning categories)."""
    seen = []
    for args in forms:
        fresh = t.value_inline("spam")
        coro, _gate, _ = await suspended(t)
        for target in (fresh, coro):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outcome = raised(lambda: target.throw(*args))  # noqa: B023 - called at once
            if target is coro and isinstance(outcome, Raised):
                # A coroutine suspended on an asyncio future lets the future's
                # iterator check the arguments (asyncio's own wording), and warn again.
                outcome = outcome.type
            seen.append((args, outcome, sorted({w.category.__name__ for w in caught})))
        fresh.close()
        coro.close()
    return seen


def test_func_10__throw_forms(twins: Pair) -> None:
    """throw()'s argument forms, their errors, and the 3.12+ DeprecationWarning of
    the (type, value, tb) form, into a fresh coroutine and into a suspended one."""
    seen = twins.same(lambda t: thrown(t, THROW_FORMS))
    modern = three_arg_throw_warnings()
    assert [(outcome, warned) for _, outcome, warned in seen[8:10]] == [
        (Raised("ValueError", "i2"), modern),
        ("ValueError", modern),
    ]
    assert seen[10][1] == Raised("TypeError", "instance exception may not have a separate value")


def test_func_10__throw_forms_with_none(twins: Pair) -> None:
    """From 3.12 every multi-argument throw() is deprecated, None arguments included."""
    forms: list[tuple[Any, ...]] = [(ValueError, None), (ValueError, None, None), (1, None)]
    seen = twins.same(lambda t: thrown(t, forms))
    assert [warned for _, _, warned in seen] == [three_arg_throw_warnings()] * 6


def test_func_11(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        coro = t.value_inline(1)
        aw = coro.__await__()
        seen = ["__await__" in dir(coro), "__iter__" in dir(aw), "__next__" in dir(aw), addressless(repr(aw))]
        coro.close()
        return seen

    # Upstream: 'coroutine_wrapper' in repr(coro.__await__()); the Rust iterator type
    # has its own name.
    assert each(twins, scenario, sync=True) == {
        "asyncio": [True, True, True, "<coroutine_wrapper object at 0x?>"],
        "rust": [True, True, True, "<ipy_rustasync.RustCoroutineWrapper object at 0x?>"],
    }


def test_func_12(twins: Pair) -> None:
    """A coroutine sent into (or closed, or thrown into) while it runs."""

    def scenario(t: Twin) -> list[Any]:
        box: dict[str, Any] = {}
        seen = []
        for act in (lambda: box["me"].send(None), lambda: box["me"].close(), lambda: box["me"].throw(KeyError("k"))):
            box["me"] = call_inline(t, act)
            seen.append(raised(lambda: box["me"].send(None)))
        return seen

    assert twins.same(scenario, sync=True) == [Raised("ValueError", "coroutine already executing")] * 3


def test_func_13(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        seen = []
        for coro in (t.value("x"), t.value_inline("x")):
            seen.append(raised(lambda: coro.send("spam")))  # noqa: B023 - called at once
            coro.close()
        return seen

    assert (
        twins.same(scenario, sync=True)
        == [Raised("TypeError", "can't send non-None value to a just-started coroutine")] * 2
    )


def test_func_15(twins: Pair) -> None:
    """bpo-25887: a coroutine awaited to the end cannot be awaited again."""

    def scenario(t: Twin) -> list[Any]:
        async def reader(coro: Any) -> Any:
            return await coro

        spammer = t.value_inline("spam")
        return [raised(lambda: reader(spammer).send(None)), raised(lambda: reader(spammer).send(None))]

    assert twins.same(scenario, sync=True) == [
        Raised("StopIteration", "spam"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
    ]


def test_func_16(twins: Pair) -> None:
    """bpo-25887: an exception thrown into a coroutine awaiting ours ends ours; a new
    awaiter of it is refused."""

    async def scenario(t: Twin) -> list[Any]:
        @types.coroutine
        def nop() -> Iterator[None]:
            yield

        async def read(coro: Any) -> Any:
            await nop()
            return await coro

        spammer, gate = t.gated()
        reader = read(spammer)
        seen: list[Any] = [reader.send(None)]
        seen.append(asyncio.isfuture(reader.send(None)))
        await until(lambda: gate.state()[0])
        seen += [raised(lambda: reader.throw(Exception("ham"))), await dropped(gate)]

        reader = read(spammer)
        seen += [reader.send(None), raised(lambda: reader.send(None)), raised(lambda: reader.throw(Exception("wat")))]
        return seen

    assert twins.same(scenario) == [
        None,
        True,
        Raised("Exception", "ham"),
        (True, True),
        None,
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
    ]


def test_func_17(twins: Pair) -> None:
    """bpo-25887: send after the end is refused; close is always allowed."""

    def scenario(t: Twin) -> list[Any]:
        coro = t.value_inline("spam")
        return [raised(lambda: coro.send(None)), raised(lambda: coro.send(None)), coro.close(), coro.close()]

    assert twins.same(scenario, sync=True) == [
        Raised("StopIteration", "spam"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        None,
        None,
    ]


def test_func_17__throw(twins: Pair) -> None:
    """bpo-25887: throw after the end is refused like send, rather than raising
    the thrown exception as if the coroutine had let it through."""

    def scenario(t: Twin) -> list[Any]:
        finished = t.value_inline("spam")
        seen = [raised(lambda: finished.send(None)), raised(lambda: finished.throw(Exception("wat")))]
        closed = t.value_inline("spam")
        closed.close()
        return [*seen, raised(lambda: closed.throw(Exception("wat")))]

    assert twins.same(scenario, sync=True) == [
        Raised("StopIteration", "spam"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
    ]


def test_func_18(twins: Pair) -> None:
    """bpo-25887, through the __await__ iterator: next() after the end raises
    RuntimeError (not StopIteration), so ``await`` notices."""

    def scenario(t: Twin) -> list[Any]:
        it = iter(t.value_inline("spam").__await__())
        return [
            raised(lambda: it.send(None)),
            raised(lambda: it.send(None)),
            raised(lambda: next(it)),
            it.close(),
            it.close(),
        ]

    assert twins.same(scenario, sync=True) == [
        Raised("StopIteration", "spam"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        None,
        None,
    ]


def test_func_18__throw(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        it = iter(t.value_inline("spam").__await__())
        return [
            raised(lambda: it.send(None)),
            raised(lambda: it.throw(Exception("wat"))),
            raised(lambda: it.throw(Exception("wat"))),
        ]

    assert twins.same(scenario, sync=True) == [
        Raised("StopIteration", "spam"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
    ]


def test_func_19(twins: Pair) -> None:
    """close() of a suspended coroutine ends its body once; closing again does nothing."""

    async def scenario(t: Twin) -> list[Any]:
        coro, gate, _ = await suspended(t)
        seen: list[Any] = [coro.close(), await dropped(gate)]
        seen += [[coro.close() for _ in range(3)], gate.state(), raised(lambda: coro.send(None))]
        return seen

    assert twins.same(scenario) == [
        None,
        (True, True),
        [None, None, None],
        (True, True),
        Raised("RuntimeError", "cannot reuse already awaited coroutine"),
    ]


def test_coro_wrapper_send_tuple(twins: Pair) -> None:
    assert twins.same(lambda t: run_async__await__(t.value_inline((10,))), sync=True) == ([], (10,))


def test_coro_wrapper_send_tuple__none(twins: Pair) -> None:
    """What the end of a coroutine returning None raises: a bare StopIteration
    (``args == ()``, ``str(e) == ""``), through send, next and the __await__ iterator."""

    def scenario(t: Twin) -> list[Any]:
        seen = []
        for step in (lambda c: c.send(None), lambda c: c.__await__().send(None), lambda c: next(c.__await__())):
            try:
                step(t.value_inline(None))
            except StopIteration as ex:
                seen.append((ex.args, ex.value, str(ex)))
        return seen

    assert twins.same(scenario, sync=True) == [((), None, "")] * 3


def test_coro_wrapper_send_stop_iterator(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        _, result = run_async__await__(t.value_inline(StopIteration(10)))
        return [type(result).__name__, result.value]

    assert twins.same(scenario, sync=True) == ["StopIteration", 10]


def returned(call: Callable[[], Any]) -> Any:
    """("returned", value) for a ``send`` that ends the coroutine, ("yielded", x)
    for one that suspends it, or a :class:`Raised`."""
    try:
        return ("yielded", call())
    except StopIteration as ex:
        return ("returned", ex.value)
    except BaseException as exc:  # noqa: BLE001 - every outcome is an observation here
        return Raised.of(exc)


def state(coro: Any) -> list[Any]:
    return [inspect.getcoroutinestate(coro), coro.cr_await is not None, coro.cr_running, coro.cr_suspended]


def test_cr_await(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        me: Any = None
        me = call_inline(t, lambda: state(me))
        running = returned(lambda: me.send(None))
        coro, gate = t.gated()
        seen = [state(coro)]
        yielded = coro.send(None)
        seen.append(state(coro))
        gate.open(None)
        await asyncio.wait([yielded])
        seen += [returned(lambda: coro.send(None)), state(coro), running]
        return seen

    created = ["CORO_CREATED", False, False, False]
    running = ("returned", ["CORO_RUNNING", False, True, False])
    rest = [
        ["CORO_SUSPENDED", True, False, True],
        ("returned", None),
        ["CORO_CLOSED", False, False, False],
    ]
    # Up to 3.14 inspect.getcoroutinestate reads "created" from cr_frame, which a Rust
    # coroutine never has: a fresh one reads as closed (cr_running and cr_suspended are
    # right). From 3.15 it reads cr_state, which a Rust coroutine has.
    fresh = created if sys.version_info >= (3, 15) else ["CORO_CLOSED", False, False, False]
    assert each(twins, scenario) == {
        "asyncio": [created, *rest, running],
        "rust": [fresh, *rest, running],
    }


def test_cr_state_only_where_coroutines_have_it(twins: Pair) -> None:
    """cr_state is new in 3.15: before, a coroutine has no such attribute."""

    async def scenario(t: Twin) -> list[Any]:
        coro, _gate = t.gated()
        seen = [hasattr(coro, "cr_state")]
        coro.close()
        return [*seen, hasattr(coro, "cr_state")]

    assert twins.same(scenario) == [sys.version_info >= (3, 15)] * 2


def test_cr_await__under_a_task(twins: Pair) -> None:
    """A coroutine a Task is driving is suspended (on a fresh loop the bridge's
    coroutine is driven by an asyncio.Task)."""

    async def scenario(t: Twin) -> list[Any]:
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        await until(lambda: gate.state()[0])
        seen = [isinstance(task, asyncio.Task), state(coro)]
        gate.open(1)
        return [*seen, await task, state(coro)]

    assert twins.same(scenario) == [
        True,
        ["CORO_SUSPENDED", True, False, True],
        1,
        ["CORO_CLOSED", False, False, False],
    ]


def test_cr_await__under_a_rust_task(twins: Pair) -> None:
    """The same once the bridge has run on the loop (its task factory makes RustTasks).
    The coroutine reads as suspended while its task runs, but awaits nothing from
    Python's point of view (the RustTask itself is the future it waits on)."""

    async def scenario(t: Twin) -> list[Any]:
        await t.value(0)
        coro, gate = t.gated()
        task = asyncio.ensure_future(coro)
        await until(lambda: gate.state()[0])
        seen = [state(coro)]
        gate.open(1)
        return [*seen, await task, state(coro)]

    closed = ["CORO_CLOSED", False, False, False]
    assert each(twins, scenario) == {
        "asyncio": [["CORO_SUSPENDED", True, False, True], 1, closed],
        "rust": [["CORO_SUSPENDED", False, False, True], 1, closed],
    }


def test_corotype_1(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        coro = t.value_inline(1)
        seen = [type(coro).__name__, "coroutine object" in repr(coro).lower()]
        coro.close()
        return seen

    # CPython's docstrings of types.CoroutineType are not ported; the type name is its own.
    assert each(twins, scenario, sync=True) == {"asyncio": ["coroutine", True], "rust": ["RustCoroutine", True]}


def test_await_4(twins: Pair) -> None:
    def scenario(t: Twin) -> Any:
        async def foo() -> Any:
            return await t.value_inline(42)

        return run_async(foo())

    assert twins.same(scenario, sync=True) == ([], 42)


def test_await_9(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        def bar() -> Any:
            return t.value_inline(42)

        def wrap() -> Any:
            return bar

        async def foo() -> Any:
            db = {"b": lambda: wrap}

            class DB:
                b = wrap

            return await bar() + await wrap()() + await db["b"]()()() + await bar() * 1000 + await DB.b()()

        async def foo2() -> Any:
            return -await bar()

        return [run_async(foo()), run_async(foo2())]

    assert twins.same(scenario, sync=True) == [([], 42168), ([], -42)]


def test_await_10(twins: Pair) -> None:
    """A coroutine whose result is a coroutine."""

    def scenario(t: Twin) -> Any:
        async def foo() -> Any:
            return await (await t.value_inline(t.value_inline(42)))

        return run_async(foo())

    assert twins.same(scenario, sync=True) == ([], 42)


def test_await_11(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        def ident(val: Any) -> Any:
            return val

        async def foo() -> Any:
            return ident(val=await t.value_inline("spam"))

        async def foo2() -> Any:
            return await t.value_inline("spam"), "ham"

        return [run_async(foo()), run_async(foo2())]

    assert twins.same(scenario, sync=True) == [([], "spam"), ([], ("spam", "ham"))]


def test_await_12(twins: Pair) -> None:
    """__await__ returning a coroutine (instead of its iterator)."""

    def scenario(t: Twin) -> Any:
        coro = t.value_inline("spam")

        class Awaitable:
            def __await__(self) -> Any:
                return coro

        async def foo() -> Any:
            return await Awaitable()

        seen = raised(lambda: run_async(foo()))
        coro.close()
        return seen

    # The interpreter names the mistake for types.CoroutineType; any other coroutine
    # is refused as what it is to it, a non-iterator. 3.15 words both alike.
    if sys.version_info >= (3, 15):
        where = f"{__name__}.test_await_12.<locals>.scenario.<locals>.Awaitable.__await__()"
        assert each(twins, scenario, sync=True) == {
            "asyncio": Raised("TypeError", f"{where} must return an iterator, not coroutine"),
            "rust": Raised("TypeError", f"{where} must return an iterator, not ipy_rustasync.RustCoroutine"),
        }
        return
    assert each(twins, scenario, sync=True) == {
        "asyncio": Raised("TypeError", "__await__() returned a coroutine"),
        "rust": Raised("TypeError", "__await__() returned non-iterator of type 'ipy_rustasync.RustCoroutine'"),
    }


def test_await_14(twins: Pair) -> None:
    """An awaitable whose __await__ is the coroutine's: results and exceptions pass
    through it."""

    class Marker(Exception):
        pass

    async def scenario(t: Twin) -> list[Any]:
        class Wrapper:
            def __init__(self, coro: Any) -> None:
                self.coro = coro

            def __await__(self) -> Any:
                return self.coro.__await__()

        async def coro2(coro: Any) -> Any:
            try:
                return await Wrapper(coro)
            except ZeroDivisionError:
                raise Marker from None

        inner, gate = t.gated()
        c = coro2(inner)
        yielded = c.send(None)
        gate.open("spam")
        await asyncio.wait([yielded])
        seen = [raised(lambda: c.send(None))]

        inner, gate = t.gated()
        c = coro2(inner)
        c.send(None)
        await until(lambda: gate.state()[0])
        return [*seen, raised(lambda: c.throw(ZeroDivisionError)), await dropped(gate)]

    assert twins.same(scenario) == [Raised("StopIteration", "spam"), Raised("Marker", ""), (True, True)]


def test_await_15(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        async def waiter(coro: Any) -> Any:
            await coro

        coro, _gate, _ = await suspended(t)
        seen = raised(lambda: waiter(coro).send(None))
        coro.close()
        return seen

    assert twins.same(scenario) == Raised("RuntimeError", "coroutine is being awaited already")


def test_await_16(twins: Pair) -> None:
    """bpo-29600: an exception *returned* by an awaited coroutine inside an except
    block gets no __context__."""

    def scenario(t: Twin) -> list[Any]:
        async def g() -> Any:
            try:
                raise KeyError
            except KeyError:
                return await t.value_inline(ValueError())

        _, result = run_async(g())
        return [repr(result), result.__context__]

    assert twins.same(scenario, sync=True) == ["ValueError()", None]


class Manager:
    """An asynchronous context manager whose __aenter__/__aexit__ return the twin's
    coroutines (as a Rust class with async methods would)."""

    def __init__(self, t: Twin, name: str, log: list[Any]) -> None:
        self.t, self.name, self.log = t, name, log

    def __aenter__(self) -> Any:
        self.log.append("enter-" + self.name)
        return self.t.value(self)

    def __aexit__(self, *args: Any) -> Any:
        self.log.append("exit-" + self.name)
        return self.t.value(self.name == "B")


def test_with_1(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        log: list[Any] = []
        async with Manager(t, "A", log) as a, Manager(t, "B", log) as b:
            log.append(("managers", a.name, b.name))
            1 / 0  # noqa: B018 - suppressed by B's __aexit__
        suppressed = list(log)
        log.clear()
        try:
            async with Manager(t, "A", log) as a, Manager(t, "C", log) as c:
                log.append(("managers", a.name, c.name))
                1 / 0  # noqa: B018 - propagates
        except ZeroDivisionError:
            log.append("raised")
        return [suppressed, log]

    assert twins.same(scenario) == [
        ["enter-A", "enter-B", ("managers", "A", "B"), "exit-B", "exit-A"],
        ["enter-A", "enter-C", ("managers", "A", "C"), "exit-C", "exit-A", "raised"],
    ]


class Raising:
    """A manager whose awaited __aenter__ or __aexit__ is a twin's coroutine raising
    a new ``enter`` or ``exit`` (exception classes); otherwise it returns ``self`` or
    ``exit``. ``inline``: coroutines ready at their first poll, to drive by hand."""

    def __init__(self, t: Twin, *, enter: type[BaseException] | None = None, exit: Any = None, inline: bool = False):
        self.t, self.enter, self.exit, self.inline = t, enter, exit, inline

    def _raise(self, exc: BaseException) -> Any:
        return raises_inline(self.t, exc) if self.inline else self.t.raises(exc)

    def _value(self, v: Any) -> Any:
        return self.t.value_inline(v) if self.inline else self.t.value(v)

    def __aenter__(self) -> Any:
        return self._raise(self.enter()) if self.enter is not None else self._value(self)

    def __aexit__(self, *args: Any) -> Any:
        if isinstance(self.exit, type) and issubclass(self.exit, BaseException):
            return self._raise(self.exit())
        return self._value(self.exit)


def test_with_9(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        count = 0
        try:
            async with Raising(t, exit=ZeroDivisionError):
                count += 1
        except ZeroDivisionError as err:
            return [count, Raised.of(err)]
        return [count]

    assert twins.same(scenario) == [1, Raised("ZeroDivisionError", "")]


def chain(err: BaseException | None) -> list[str]:
    seen = []
    while err is not None:
        seen.append(type(err).__name__)
        err = err.__context__
    return seen


def test_with_10(twins: Pair) -> None:
    """An exception raised by an awaited __aexit__ while another propagates has that
    one as its __context__."""

    async def scenario(t: Twin) -> list[str]:
        try:
            async with Raising(t, exit=ZeroDivisionError), Raising(t, exit=ZeroDivisionError):
                raise RuntimeError
        except ZeroDivisionError as err:
            return chain(err)
        return []

    assert twins.same(scenario) == ["ZeroDivisionError", "ZeroDivisionError", "RuntimeError"]


def test_with_10__inline(twins: Pair) -> None:
    """The same with coroutines that raise at their first poll, driven by hand."""

    def scenario(t: Twin) -> list[str]:
        async def foo() -> Any:
            async with Raising(t, exit=ZeroDivisionError, inline=True), Raising(t, exit=ZeroDivisionError, inline=True):
                raise RuntimeError

        try:
            run_async(foo())
        except ZeroDivisionError as err:
            return chain(err)
        return []

    assert twins.same(scenario, sync=True) == ["ZeroDivisionError", "ZeroDivisionError", "RuntimeError"]


def test_with_11(twins: Pair) -> None:
    """An exception from an awaited __aenter__ has no __context__ (the body never ran)."""

    async def scenario(t: Twin) -> list[Any]:
        try:
            async with Raising(t, enter=NotImplementedError, exit=ZeroDivisionError):
                raise RuntimeError
        except NotImplementedError as err:
            return chain(err)
        return []

    assert twins.same(scenario) == ["NotImplementedError"]


def test_with_12(twins: Pair) -> None:
    """An awaited __aexit__ returning True suppresses the exception."""

    async def scenario(t: Twin) -> list[Any]:
        log: list[Any] = []
        async with Manager(t, "B", log) as cm:
            log.append(type(cm).__name__)
            raise RuntimeError
        return log

    assert twins.same(scenario) == ["enter-B", "Manager", "exit-B"]


def test_with_13(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        count = 1
        try:
            async with Raising(t, enter=ZeroDivisionError, exit=True):
                count += 1000
            count += 10000
        except ZeroDivisionError as err:
            return [count, Raised.of(err)]
        return [count]

    assert twins.same(scenario) == [1, Raised("ZeroDivisionError", "")]


def test_for_1(twins: Pair) -> None:
    """``async for`` over an iterator whose __anext__ returns the twin's coroutines,
    ending with StopAsyncIteration raised by one."""

    async def scenario(t: Twin) -> list[Any]:
        aiter_calls = 0

        class AsyncIter:
            def __init__(self) -> None:
                self.i = 0

            def __aiter__(self) -> AsyncIter:
                nonlocal aiter_calls
                aiter_calls += 1
                return self

            def __anext__(self) -> Any:
                self.i += 1
                if self.i > 30:
                    return t.raises(StopAsyncIteration())
                return t.value((self.i, self.i))

        seen: list[Any] = []
        buffer: list[Any] = []
        async for i1, i2 in AsyncIter():
            buffer.append(i1 + i2)
        seen += [aiter_calls, buffer == [i * 2 for i in range(1, 31)]]

        buffer = []
        async for i in AsyncIter():
            buffer.append(i[0])
            if i[0] == 20:
                break
        else:
            buffer.append("what?")
        buffer.append("end")
        seen += [aiter_calls, buffer == [*range(1, 21), "end"]]

        buffer = []
        async for i in AsyncIter():
            if i[0] > 20:
                continue
            buffer.append(i[0])
        else:
            buffer.append("what?")
        buffer.append("end")
        return [*seen, aiter_calls, buffer == [*range(1, 21), "what?", "end"]]

    assert twins.same(scenario) == [1, True, 2, True, 3, True]


def test_comp_1(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        def f(i: Any) -> Any:
            return t.value(i)

        return [
            [await c for c in [f(1), f(41)]],
            {await c for c in [f(1), f(41)]},
            {await c: "a" for c in [f(1), f(41)]},
            {i: await c for i, c in enumerate([f(1), f(41)])},
        ]

    assert twins.same(scenario) == [[1, 41], {1, 41}, {1: "a", 41: "a"}, {0: 1, 1: 41}]


def test_comp_2(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        f = t.value
        return [
            [s for c in [f(""), f("abc"), f(""), f(["de", "fg"])] for s in await c],
            {d for c in [f([f([10, 30]), f([20])])] for s in await c for d in await s},
            {await s for c in [f([f(10), f(20)])] for s in await c},
        ]

    assert twins.same(scenario) == [["a", "b", "c", "de", "fg"], {10, 20, 30}, {10, 20}]


def test_copy(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        coro = t.value_inline(1)
        aw = coro.__await__()
        seen = [generic(raised(lambda: copy.copy(coro)), coro), generic(raised(lambda: copy.copy(aw)), aw)]
        aw.close()
        return seen

    assert twins.same(scenario, sync=True) == [
        Raised("TypeError", "cannot pickle '<type>' object"),
        Raised("TypeError", "cannot pickle '<type>' object"),
    ]


def test_pickle(twins: Pair) -> None:
    def scenario(t: Twin) -> list[bool]:
        coro = t.value_inline(1)
        aw = coro.__await__()
        seen = []
        for obj in (coro, aw):
            for proto in range(pickle.HIGHEST_PROTOCOL + 1):
                try:
                    pickle.dumps(obj, proto)
                    seen.append(False)
                except (TypeError, pickle.PicklingError):
                    seen.append(True)
        aw.close()
        return seen

    assert twins.same(scenario, sync=True) == [True] * 2 * (pickle.HIGHEST_PROTOCOL + 1)


def unraisable_never_awaited(t: Twin) -> list[Any]:
    """A coroutine dropped unawaited with warnings as errors: the warning becomes an
    unraisable exception (issue 27811); what the hook gets: the coroutine as its object
    up to 3.13, from 3.14 a message naming it and no object."""
    seen: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error")
            coro = t.value(1)
            # only its repr, to not keep it alive
            text = repr(coro)
            del coro
            gc.collect()
    finally:
        sys.unraisablehook = previous
    return [
        (
            type(u.exc_value).__name__,
            bool(re.fullmatch(r"coroutine '(\w+\.)?value' was never awaited", str(u.exc_value))),
            repr(u.object) == text,
            u.err_msg == f"Exception ignored while finalizing coroutine {text}",
        )
        for u in seen
    ]


def test_fatal_coro_warning(twins: Pair) -> None:
    seen = twins.same(lambda t: [s[:2] for s in unraisable_never_awaited(t)], sync=True)
    assert seen == [("RuntimeWarning", True)]


def test_fatal_coro_warning__object(twins: Pair) -> None:
    by_object = sys.version_info < (3, 14)
    assert twins.same(unraisable_never_awaited, sync=True) == [("RuntimeWarning", True, by_object, not by_object)]


def test_cr_frame_after_close(twins: Pair) -> None:
    def scenario(t: Twin) -> list[bool]:
        coro = t.value_inline(1)
        before = coro.cr_frame is None  # type: ignore[attr-defined]
        coro.close()
        return [before, coro.cr_frame is None]  # type: ignore[attr-defined]

    # A Rust coroutine has no Python frame at any time.
    assert each(twins, scenario, sync=True) == {"asyncio": [False, True], "rust": [True, True]}


# --- CoroAsyncIOCompatTest ---------------------------------------------------------


def test_asyncio_1(twins: Pair) -> None:
    class MyException(Exception):
        pass

    async def scenario(t: Twin) -> list[Any]:
        buffer: list[Any] = []

        class CM:
            async def __aenter__(self) -> CM:
                buffer.append(1)
                await t.sleep(0.01)
                buffer.append(2)
                return self

            async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
                await t.sleep(0.01)
                buffer.append(exc_type.__name__)

        async def f() -> None:
            async with CM():
                await t.sleep(0.01)
                raise MyException
            buffer.append("unreachable")

        return [await araised(f()), buffer]

    assert twins.same(scenario) == [Raised("MyException", ""), [1, 2, "MyException"]]


# --- OriginTrackingTest ------------------------------------------------------------


def coroutine_function(t: Twin, name: str) -> Callable[..., Any]:
    """The twin's coroutine function itself (the Rust twin's methods wrap the cell's
    functions, which would add a frame where the coroutine is made)."""
    if isinstance(t, RustTwin):
        return getattr(t.mod, name)  # type: ignore[no-any-return]
    return getattr(t, name)  # type: ignore[no-any-return]


@contextlib.contextmanager
def origin_depth(depth: int) -> Iterator[None]:
    previous = sys.get_coroutine_origin_tracking_depth()
    sys.set_coroutine_origin_tracking_depth(depth)
    try:
        yield
    finally:
        sys.set_coroutine_origin_tracking_depth(previous)


def here() -> tuple[str, int]:
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    info = inspect.getframeinfo(frame.f_back)
    return info.filename, info.lineno


def test_origin_tracking(twins: Pair) -> None:
    """Inherent difference: a Rust coroutine records no origin (cr_origin is None at
    any sys.set_coroutine_origin_tracking_depth). Asking the depth at every call
    would cost a Python call per call; the README lists it."""

    def scenario(t: Twin) -> list[Any]:
        corofn = coroutine_function(t, "value_inline")
        seen: list[Any] = []
        with origin_depth(0), contextlib.closing(corofn(1)) as coro:
            seen.append(coro.cr_origin)

        with origin_depth(1):
            fname, lineno = here()
            with contextlib.closing(corofn(1)) as coro:
                seen.append(coro.cr_origin == ((fname, lineno + 1, "scenario"),))

        with origin_depth(2):

            def nested() -> tuple[tuple[str, int], Any]:
                return (here(), corofn(1))

            fname, lineno = here()
            ((nested_fname, nested_lineno), coro) = nested()
            with contextlib.closing(coro):
                expected = ((nested_fname, nested_lineno, "nested"), (fname, lineno + 1, "scenario"))
                seen.append(coro.cr_origin == expected)

        # running out of frames
        with origin_depth(1000), contextlib.closing(corofn(1)) as coro:
            seen.append(2 < len(coro.cr_origin or ()) < 1000)
        return seen

    assert each(twins, scenario, sync=True) == {
        "asyncio": [None, True, True, True],
        "rust": [None, False, False, False],
    }


def test_origin_tracking_warning(twins: Pair) -> None:
    """The "never awaited" warning says where the coroutine was made, as deep as the
    tracking depth (a Rust coroutine's, having no origin, says only what it is)."""

    def scenario(t: Twin) -> list[str]:
        corofn = coroutine_function(t, "value_inline")

        a1_filename, a1_lineno = here()

        def a1() -> Any:
            return corofn(1)  # comment in a1

        a1_lineno += 3

        a2_filename, a2_lineno = here()

        def a2() -> Any:
            return a1()  # comment in a2

        a2_lineno += 3

        def check(depth: int) -> str:
            with origin_depth(depth), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                a2()
                gc.collect()
            assert len(caught) == 1, caught
            return str(caught[0].message).replace(f"'{corofn.__qualname__}'", "'<corofn>'")

        expected = [
            "coroutine '<corofn>' was never awaited",
            "".join(
                [
                    "coroutine '<corofn>' was never awaited\n",
                    "Coroutine created at (most recent call last)\n",
                    f'  File "{a1_filename}", line {a1_lineno}, in a1\n',
                    "    return corofn(1)  # comment in a1",
                ]
            ),
            "".join(
                [
                    "coroutine '<corofn>' was never awaited\n",
                    "Coroutine created at (most recent call last)\n",
                    f'  File "{a2_filename}", line {a2_lineno}, in a2\n',
                    "    return a1()  # comment in a2\n",
                    f'  File "{a1_filename}", line {a1_lineno}, in a1\n',
                    "    return corofn(1)  # comment in a1",
                ]
            ),
        ]
        return [check(depth) == text for depth, text in enumerate(expected)]

    assert each(twins, scenario, sync=True) == {"asyncio": [True, True, True], "rust": [True, False, False]}


# --- UnawaitedWarningDuringShutdownTest --------------------------------------------

ROOT = Path(__file__).resolve().parents[2]

#: ``f()`` makes the twin's coroutine in a fresh interpreter (inline: the Rust one
#: is done in a task's first step, as the ``async def`` one is).
PRELUDE = {
    "asyncio": "async def f():\n    pass\n",
    "rust": (
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from ipy_rustasync import rust_module\n"
        "from tests.conformance.twins import CONTROL\n"
        "_cell = rust_module(CONTROL)\n"
        "def f():\n    return _cell.value_inline(None)\n"
    ),
}

RUNNER = {
    "asyncio": "asyncio.run(t())\n",
    "uvloop": "import uvloop\nwith asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:\n    runner.run(t())\n",
}


def test_unawaited_warning_during_shutdown(twins: Pair) -> None:
    """bpo-32591: coroutines (and a task gathering one) left over at interpreter
    shutdown neither crash it nor make it fail."""
    pytest.importorskip(twins.loop)
    codes = [
        "import asyncio\nasync def t():\n    asyncio.gather(f())\n" + RUNNER[twins.loop],
        # the same once the bridge has run on the loop (a RustTask)
        "import asyncio\nasync def t():\n    await f()\n    asyncio.gather(f())\n" + RUNNER[twins.loop],
    ]
    if twins.loop == "asyncio":  # no loop in these
        codes += [
            "import sys\nsys.coro = f()\n",
            "import sys\nsys.corocycle = [f()]\nsys.corocycle.append(sys.corocycle)\n",
        ]

    def scenario(t: Twin) -> list[Any]:
        seen = []
        for code in codes:
            proc = subprocess.run(
                [sys.executable, "-X", "faulthandler", "-c", PRELUDE[t.name] + code],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=300,
            )
            seen.append((proc.returncode, proc.stderr))
        return seen

    assert twins.same(scenario, sync=True) == [(0, "")] * len(codes)


# --- test_pep492.CoroutineTests ----------------------------------------------------


def test_iscoroutine(twins: Pair) -> None:
    def scenario(t: Twin) -> list[bool]:
        coro = t.value(1)
        try:
            return [
                asyncio.iscoroutine(coro),
                isinstance(coro, collections.abc.Coroutine),
                inspect.isawaitable(coro),
                inspect.iscoroutine(coro),
            ]
        finally:
            coro.close()

    # inspect.iscoroutine is types.CoroutineType only (False for Cython's coroutines too).
    assert each(twins, scenario, sync=True) == {"asyncio": [True] * 4, "rust": [True, True, True, False]}


def test_iscoroutine_generator(twins: Pair) -> None:
    """(3.11) An iterator is not a coroutine: the coroutine's __await__ iterator, a
    generator in all but name, is not one either."""

    def scenario(t: Twin) -> list[bool]:
        coro = t.value(1)
        aw = coro.__await__()
        try:
            return [asyncio.iscoroutine(aw), isinstance(aw, collections.abc.Generator), inspect.isawaitable(aw)]
        finally:
            aw.close()

    assert twins.same(scenario, sync=True) == [False, True, False]


def test_iscoroutinefunction(twins: Pair) -> None:
    def scenario(t: Twin) -> list[bool]:
        fn = coroutine_function(t, "value")
        marked = [inspect.iscoroutinefunction(fn)]
        if sys.version_info < (3, 14):  # deprecated from 3.14
            marked.append(asyncio.iscoroutinefunction(fn))
        return marked

    assert twins.same(scenario, sync=True) == [True] * (2 if sys.version_info < (3, 14) else 1)


def test_async_def_coroutines(twins: Pair) -> None:
    def scenario(t: Twin) -> list[Any]:
        async def foo() -> Any:
            return await t.value("spam")

        loop = new_loop(twins.loop)
        try:
            data = [loop.run_until_complete(foo())]
            loop.set_debug(True)
            data.append(loop.run_until_complete(foo()))
        finally:
            loop.close()
        return data

    assert twins.same(scenario, sync=True) == ["spam", "spam"]


def test_types_coroutine(twins: Pair) -> None:
    """types.coroutine passes a coroutine a function returns through as it is."""

    async def scenario(t: Twin) -> list[Any]:
        made: list[Any] = []

        @types.coroutine
        def func() -> Any:
            made.append(t.value("spam"))
            return made[0]

        wrapper = func()
        return [wrapper is made[0], await wrapper]

    assert twins.same(scenario) == [True, "spam"]


def test_task_print_stack(twins: Pair) -> None:
    """A task's stack, from outside (a Rust body cannot ask for it): on a fresh loop
    (an asyncio.Task) and once the bridge ran on it (a RustTask)."""

    async def scenario(t: Twin) -> list[Any]:
        seen = []
        for _ in ("fresh", "bridged"):
            coro, gate = t.gated()
            task = asyncio.ensure_future(coro)
            await until(lambda: gate.state()[0])  # noqa: B023 - called at once
            frames = task.get_stack(limit=1)
            out = io.StringIO()
            task.print_stack(limit=1, file=out)
            gate.open(None)
            await task
            seen.append([type(task).__name__, [f.f_code.co_name for f in frames], out.getvalue().split(" ")[0]])
            await t.value(0)
        return seen

    # A Rust coroutine has no Python frame: its stack is empty, printed as such.
    assert each(twins, scenario) == {
        "asyncio": [["Task", ["body"], "Stack"]] * 2,
        "rust": [["Task", [], "No"], ["RustTask", [], "No"]],
    }


def double_await(t: Twin) -> Any:
    async def scenario() -> Any:
        asyncio.get_running_loop().set_debug(True)
        coro, _gate = t.gated()
        task = asyncio.get_running_loop().create_task(coro)
        try:
            await asyncio.sleep(0)
            return await araised(coro)
        finally:
            task.cancel()
            await araised(task)

    return scenario()


def test_double_await(twins: Pair) -> None:
    """Awaiting a coroutine a task is running (on a fresh loop: an asyncio.Task)."""
    assert twins.same(double_await) == Raised("RuntimeError", "coroutine is being awaited already")


def test_double_await__rust_task(twins: Pair) -> None:
    """The same once the bridge has run on the loop (a RustTask runs the coroutine)."""

    async def scenario(t: Twin) -> Any:
        await t.value(0)
        return await double_await(t)

    assert twins.same(scenario) == Raised("RuntimeError", "coroutine is being awaited already")
