"""The differences reported in issue 11, each a twin scenario: what asyncio does
with an ``async def`` coroutine (or its Task) and what a Rust call does must match.
Each of these failed before the coroutine/task split."""

from __future__ import annotations

import asyncio
import inspect
import pickle
from types import ModuleType
from typing import Any

import pytest

from .twins import Pair, Raised, Twin, araised, raised


def test_iterating_a_coroutine_is_a_type_error(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        coro = t.value(1)
        seen = [raised(lambda: list(coro)), raised(lambda: next(iter(coro)))]  # type: ignore[call-overload]
        seen.append(raised(lambda: [x for x in coro]))  # type: ignore[attr-defined]
        coro.close()
        return [s.type if isinstance(s, Raised) else s for s in seen]

    assert twins.same(scenario) == ["TypeError"] * 3


def test_stop_iteration_from_the_body_is_a_runtime_error(twins: Pair) -> None:
    """PEP 479: a coroutine that raises StopIteration raises RuntimeError instead;
    gather over it ends (it once hung)."""

    async def scenario(t: Twin) -> list[Any]:
        direct = await araised(t.raises(StopIteration(5)))
        try:
            await t.raises(StopIteration(6))
        except RuntimeError as err:
            cause = repr(err.__cause__)
        gathered = await asyncio.wait_for(asyncio.gather(t.raises(StopIteration(7)), return_exceptions=True), 5)
        return [direct, cause, [Raised.of(e) for e in gathered]]

    assert twins.same(scenario)[0] == Raised("RuntimeError", "coroutine raised StopIteration")


def test_remove_done_callback_with_an_eq_that_adds_callbacks(twins: Pair) -> None:
    """asyncio's test_schedule_callbacks_list_mutation_2 on a Rust task: no panic."""

    async def scenario(t: Twin) -> int:
        coro, gate = t.gated()
        fut = asyncio.ensure_future(coro)
        fut.add_done_callback(str)
        for _ in range(63):
            fut.add_done_callback(id)
        extra = 0

        class Evil:
            def __eq__(self, other: object) -> bool:
                nonlocal extra
                extra += 1
                if extra < 100:
                    fut.add_done_callback(id)
                return False

        removed = fut.remove_done_callback(Evil())
        gate.open(None)
        await fut
        return removed

    assert twins.same(scenario) == 0


def test_observing_a_coroutine_does_not_start_or_bind_it(twins: Pair) -> None:
    """isfuture, inspect.getmembers and repr leave it untouched: it can still be
    run on another loop afterwards."""

    async def scenario(t: Twin) -> list[Any]:
        coro = t.value(3)
        looks = [asyncio.isfuture(coro), asyncio.iscoroutine(coro), inspect.isawaitable(coro)]
        inspect.getmembers(coro)
        repr(coro)
        other = await asyncio.to_thread(lambda: raised(lambda: asyncio.run(coro)))
        return [*looks, other]

    assert twins.same(scenario) == [False, True, True, 3]


def test_wait_for_zero_never_starts_the_body(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        runs = []
        for _ in range(20):
            coro, gate = t.gated()
            outcome = await araised(asyncio.wait_for(coro, 0))
            runs.append((outcome, gate.state()[0]))
        return sorted(set(runs), key=repr)

    assert twins.same(scenario) == [(Raised("TimeoutError", ""), False)]


def test_ensure_future_gives_a_task_that_wait_takes_and_that_awaits_twice(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        task = asyncio.ensure_future(t.value(4))
        done, _ = await asyncio.wait([task])
        again = [await task, await task]
        coro = t.value(5)
        refused = await araised(asyncio.wait([coro]))
        coro.close()
        return [asyncio.iscoroutine(task), asyncio.isfuture(task), len(done), again, refused]

    assert twins.same(scenario) == [
        False,
        True,
        1,
        [4, 4],
        Raised("TypeError", "Passing coroutines is forbidden, use tasks explicitly."),
    ]


def test_a_task_exception_nobody_retrieves_is_reported(twins: Pair) -> None:
    async def scenario(t: Twin) -> list[Any]:
        task = asyncio.ensure_future(t.raises(ValueError("lost")))
        await asyncio.sleep(0.05)
        del task
        return []

    twins.same(scenario)
    for name in ("asyncio", "rust"):
        messages = [(c["message"], repr(c.get("exception"))) for c in twins.handled[name]]
        assert messages == [("Task exception was never retrieved", "ValueError('lost')")], (name, messages)


def test_a_stored_traceback_does_not_grow(twins: Pair) -> None:
    """asyncio's test_future_traceback: raising a stored exception again does not
    add frames to it."""

    async def scenario(t: Twin) -> bool:
        task = asyncio.ensure_future(t.raises(ValueError("tb")))
        await araised(task)
        depths = []
        for _ in range(3):
            try:
                task.result()
            except ValueError as err:
                depth, tb = 0, err.__traceback__
                while tb is not None:
                    depth, tb = depth + 1, tb.tb_next
                depths.append(depth)
        return len(set(depths)) == 1

    assert twins.same(scenario) is True


def test_coroutine_functions_are_recognised(twins: Pair, control: ModuleType) -> None:
    def flags(f: Any) -> list[bool]:
        marked = [inspect.iscoroutinefunction(f)]
        if hasattr(asyncio, "iscoroutinefunction"):
            with pytest.warns(DeprecationWarning) if _asyncio_iscoroutinefunction_deprecated() else _nothing():
                marked.append(asyncio.iscoroutinefunction(f))
        return marked

    async def python_value(v: Any = None) -> Any:
        return v

    assert flags(control.value) == flags(python_value) == [True] * len(flags(python_value))
    assert str(inspect.signature(control.value)) == "(v)"


def test_sending_a_value_into_a_fresh_coroutine_is_a_type_error(twins: Pair) -> None:
    async def scenario(t: Twin) -> Any:
        coro = t.value(1)
        outcome = raised(lambda: coro.send(42))
        coro.close()
        return outcome

    assert twins.same(scenario) == Raised("TypeError", "can't send non-None value to a just-started coroutine")


@pytest.mark.parametrize(
    "mistake",
    [
        lambda c: int(c),
        lambda c: [c][5],
        lambda c: pickle.dumps(c),
        lambda c: asyncio.wait_for(c),  # the timeout argument forgotten
        lambda c: asyncio.gather(c, return_exception=True),  # a typo
    ],
    ids=["int", "index", "pickle", "wait_for-without-timeout", "gather-typo"],
)
def test_a_mistake_with_an_unawaited_coroutine_raises_its_own_error(twins: Pair, mistake: Any) -> None:
    """The "never awaited" warning issued as the coroutine is dropped must not
    replace the exception in flight (it once became a SystemError)."""

    async def scenario(t: Twin) -> Any:
        with pytest.warns(RuntimeWarning, match="was never awaited"):
            outcome = raised(lambda: mistake(t.value(1)))
            import gc

            gc.collect()
        return outcome.type if isinstance(outcome, Raised) else outcome

    assert twins.same(scenario) in ("TypeError", "IndexError")


def _asyncio_iscoroutinefunction_deprecated() -> bool:
    import sys

    return sys.version_info >= (3, 14)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
