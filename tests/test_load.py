"""Load (the hardening issue): 100,000 concurrent awaits; 300,000 sequential ones on the
default path and 1,000,000 inline (``benchmarks/soak.py`` runs 1,000,000 on the default
path: see ``SEQUENTIAL``); a cancellation storm; a new event loop per run. Every result is checked; afterwards
the memory, the file descriptors and the Rust tasks are counted.

Memory is read three ways, each after ``gc.collect()`` and glibc's ``malloc_trim(0)``
(which hands free heap pages back to the kernel, so RSS shows what is still in use):

* RSS, from ``/proc/self/statm``: catches anything, but moves by several MB from run to
  run as the tokio workers' malloc arenas fragment (measured: steps of up to ~10 MB in
  the first few runs of 100,000 gathered futures, flat over the next 25), so its bound
  is loose;
* the bytes malloc has handed out and not had back (``mallinfo2``: Rust's allocations,
  CPython's large objects): exact but for glibc's per-thread caches, which count as in
  use and fill slowly up to a few hundred KB (with them turned off,
  ``GLIBC_TUNABLES=glibc.malloc.tcache_count=0``, it stays flat to within 1 KB), so a leak
  of even a few bytes per future shows;
* the number of CPython allocator blocks in use (``sys.getallocatedblocks``): one
  leaked Python object per future would be 100,000 of them.

Timings are printed, never asserted: the machine is shared.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import textwrap
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any

import pytest

import ipy_rustasync
from benchmarks.load import CELL, STORM, storm
from benchmarks.probes import MB, Memory, open_fds, settled_memory
from ipy_rustasync import rust_module
from ipy_rustasync._settings import toolchain

from .helpers import run_python

#: uvloop is in the test extra; the storm and the loop-per-run test run on it too.
LOOPS = ["asyncio", *(["uvloop"] if importlib.util.find_spec("uvloop") else [])]


@pytest.fixture(scope="module")
def rs() -> ModuleType:
    return rust_module(CELL)


def run_on(kind: str, main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` on a new loop of ``kind`` (``asyncio`` or ``uvloop``)."""
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


# --- memory ----------------------------------------------------------------------------


def check_growth(what: str, before: Memory, after: Memory, *, rss: int, heap: int, blocks: int) -> None:
    """Prints the figures, then fails if any grew past its bound (bytes, bytes, blocks)."""
    print(f"\n{what}\n  before: {before}\n  after:  {after}")
    grown = after.rss - before.rss
    assert grown <= rss, f"{what}: RSS grew by {grown / MB:.1f} MB (bound {rss / MB:.0f} MB)"
    if before.heap is not None and after.heap is not None:
        grown = after.heap - before.heap
        assert grown <= heap, f"{what}: malloc in use grew by {grown:,} bytes (bound {heap:,})"
    grown = after.blocks - before.blocks
    assert grown <= blocks, f"{what}: {grown:,} more Python blocks in use (bound {blocks:,})"


# --- 100,000 concurrent awaits ------------------------------------------------------------

CONCURRENT = 100_000


def test_100k_concurrent_awaits_lose_nothing_and_leak_nothing(rs: ModuleType) -> None:
    """100,000 tokio sleeps of 1-5 ms gathered at once, each returning its own number
    (the lengths vary, so they finish out of order): every result lands in its place."""

    async def gathered() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*(rs.echo_after(1 + i % 5, i * 7 + 3) for i in range(CONCURRENT)))
        took = time.perf_counter() - start
        wrong = [i for i, got in enumerate(results) if got != i * 7 + 3]
        assert len(results) == CONCURRENT and not wrong, f"{len(wrong)} wrong results, first at {wrong[:5]}"
        return took

    # Two warm-up runs: the first sizes the runtime, the channel and the worker arenas.
    times = [asyncio.run(gathered()) for _ in range(2)]
    before = settled_memory()
    times += [asyncio.run(gathered()) for _ in range(2)]
    after = settled_memory()
    print("\n100,000 gathered 1-5 ms sleeps, s per run:", ", ".join(f"{t:.2f}" for t in times))
    # 200,000 futures between the readings: the heap bound is 5 bytes a future. RSS moves
    # with arena fragmentation (see the module docstring): measured +2.6 to +11.8 MB over
    # these two runs on a quiet machine, +39.1 MB once in a full run with another test
    # run alongside (malloc's bytes in use: +11 KB, Python blocks +30: nothing leaked),
    # so RSS only backstops what malloc does not see; 64 MB is 320 bytes a future.
    check_growth("100,000 concurrent awaits, two runs", before, after, rss=64 * MB, heap=1 * MB, blocks=1_000)
    assert rs.alive_tasks() == 0


# --- 1,000,000 sequential awaits ----------------------------------------------------------

#: The issue asks for 1,000,000; a default-path await costs 15-63 µs on this shared
#: 2-core machine depending on what else runs (measured: 1,000,000 took 63 s with the
#: load average at 5), too long for the suite. The leak check does not need the count:
#: malloc's in-use bytes are near exact (flat to within 10 KB over a 1,000,000 run), so
#: 300,000 awaits under a 256 KB bound (room for glibc's per-thread caches) catch a leak of
#: one byte an await.
#: `benchmarks/soak.py` runs the full 1,000,000 (and millions more in its mixed load).
SEQUENTIAL = 300_000
INLINE = 1_000_000  # 0.5-2 µs each
VIA_RUN = 50_000  # ipy_rustasync.run blocks on the runtime per call: a slice suffices


async def await_each(make: Callable[[int], Awaitable[int]], n: int) -> None:
    for i in range(n):
        got = await make(i)
        if got != i:
            raise AssertionError(f"await #{i} returned {got!r}")


# The inline poll is timed by the wall clock: on a loaded machine the OS can pause the
# thread in the middle of one of a million polls of a future that is ready at once.
@pytest.mark.filterwarnings("ignore:ready_inline.. is #.rust_async.inline.. but one poll held:RuntimeWarning")
def test_sequential_ready_awaits_leak_nothing(rs: ModuleType) -> None:
    asyncio.run(await_each(rs.ready, 20_000))  # warm-up
    asyncio.run(await_each(rs.ready_inline, 20_000))
    for i in range(1_000):
        assert ipy_rustasync.run(rs.ready(i)) == i

    figures = []
    before = settled_memory()
    start = time.perf_counter()
    asyncio.run(await_each(rs.ready, SEQUENTIAL))
    took = time.perf_counter() - start
    figures.append(f"{SEQUENTIAL:,} awaits (default path) in {took:.1f} s, {took / SEQUENTIAL * 1e6:.1f} µs each")
    after = settled_memory()
    check_growth(f"{SEQUENTIAL:,} sequential ready awaits", before, after, rss=4 * MB, heap=256 << 10, blocks=500)

    before = settled_memory()
    start = time.perf_counter()
    asyncio.run(await_each(rs.ready_inline, INLINE))
    took = time.perf_counter() - start
    figures.append(f"{INLINE:,} inline awaits in {took:.1f} s, {took / INLINE * 1e6:.2f} µs each")
    start = time.perf_counter()
    for i in range(VIA_RUN):
        got = ipy_rustasync.run(rs.ready(i))
        if got != i:
            raise AssertionError(f"ipy_rustasync.run #{i} returned {got!r}")
    took = time.perf_counter() - start
    figures.append(f"{VIA_RUN:,} ipy_rustasync.run calls in {took:.1f} s, {took / VIA_RUN * 1e6:.1f} µs each")
    after = settled_memory()
    print("\n" + "\n".join(figures))
    check_growth(
        f"{INLINE:,} inline awaits + {VIA_RUN:,} ipy_rustasync.run",
        before,
        after,
        rss=4 * MB,
        heap=256 << 10,
        blocks=500,
    )
    assert rs.alive_tasks() == 0


# --- a cancellation storm -----------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_cancellation_storm_leaves_nothing_behind(rs: ModuleType, loop_kind: str, debug: bool) -> None:
    """With the loop in debug mode (asyncio then also checks that every ``call_soon``
    comes from the loop's thread) and without: debug mode slows asyncio's loop about
    tenfold, so that most futures finish before their cancellation comes round, while
    without it about three quarters of them are cancelled mid-flight."""
    handler_calls: list[dict[str, Any]] = []

    async def main() -> list[dict[str, int]]:
        loop = asyncio.get_running_loop()
        loop.set_debug(debug)
        loop.set_exception_handler(lambda _loop, context: handler_calls.append(context))
        started, dropped = rs.started(), rs.dropped()
        rounds = [await storm(rs, seed) for seed in (1, 2, 3)]
        # Every Rust future that began has been dropped and no task is left on the
        # runtime (an aborted task is dropped by a worker, so give it a moment).
        deadline = time.monotonic() + 10
        while (rs.alive_tasks() or rs.dropped() - dropped != rs.started() - started) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        print(
            f"\nstorm on {loop_kind}{' (debug)' if debug else ''}: Rust futures begun {rs.started() - started:,}, dropped {rs.dropped() - dropped:,}; "
            f"tasks alive on the runtime: {rs.alive_tasks()}"
        )
        assert rs.dropped() - dropped == rs.started() - started
        assert rs.alive_tasks() == 0
        # The mutex is free: no cancelled holder kept it.
        assert await asyncio.wait_for(rs.contend(7, 0, 0), 5) == 7
        return rounds

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rounds = run_on(loop_kind, main())
    for seed, ended in zip((1, 2, 3), rounds, strict=True):
        print(f"  seed {seed}: {ended}")
        assert sum(ended.values()) == STORM
        assert ended["cancelled"] + ended["timed out"] > 0
    assert handler_calls == [], handler_calls
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


# --- a new loop per run -------------------------------------------------------------------


def test_edited_cells_give_their_sockets_back_once_idle() -> None:
    """Each copy of the bridge (one per cell library, or one for every cell on the
    shared runtime) has a wake-up socket pair on the loop that awaits it; once its
    runtime is idle, the loop stops watching it and closes it (20 edits in a kernel used
    to keep 40 descriptors open for good)."""
    code = textwrap.dedent(
        """
        import asyncio, os
        from ipy_rustasync import rust_module

        def fds():
            return len(os.listdir("/proc/self/fd"))

        loop = asyncio.new_event_loop()  # one long-lived loop, like a kernel's
        async def settle(seconds):
            await asyncio.sleep(seconds)
        loop.run_until_complete(settle(0))
        edits = [rust_module(f"pub async fn edited() -> u32 {{ {i} }}") for i in range(8)]
        before = fds()
        for i, mod in enumerate(edits):
            assert loop.run_until_complete(mod.edited()) == i
        during = fds()
        loop.run_until_complete(settle(2.0))  # past the idle period: every runtime stops
        print(before, during, fds())
        """
    )
    out = run_python(code, env={"IPY_RUSTASYNC_IDLE_SECONDS": "0.5"})
    assert out.returncode == 0, out.stderr
    before, during, after = map(int, out.stdout.split())
    copies = 1 if toolchain.shared_runtime() else 8
    assert during >= before + 2 * copies, (before, during, after)  # a socket pair per copy while in use
    assert after <= before + 2, (before, during, after)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_loop_per_run_leaks_no_sockets(rs: ModuleType, loop_kind: str) -> None:
    """Each loop gets a channel with a socket pair for wake-ups; it must close with the
    loop. (It did not: the channel and its loop callback held each other in an `Arc`
    cycle no collector sees, so every `asyncio.run` that awaited a Rust future kept two
    file descriptors open for good, and a long-lived process ran out of them.)"""

    async def once(i: int) -> None:
        assert await rs.ready(i) == i  # the spin path
        assert await rs.echo_after(2, i) == i  # the socket wake-up path

    runs = 300
    for i in range(3):
        run_on(loop_kind, once(i))
    gc.collect()
    before = open_fds()
    for i in range(runs):
        run_on(loop_kind, once(i))
    gc.collect()
    after = open_fds()
    print(f"\n{runs} {loop_kind} loops, each awaiting Rust futures: open file descriptors {before} -> {after}")
    # The last loop's channel may stay (a per-thread memo keeps it): at most one pair.
    assert after - before <= 2, f"{after - before} file descriptors left open by {runs} loops"


# --- threads after the load ---------------------------------------------------------------


def test_runtime_threads_go_one_idle_period_after_the_last_call() -> None:
    """An idle runtime gives its threads back one idle period after the last call ends.
    (It took up to two: the watcher, started by a lull before the last calls, slept whole
    periods, so work that ended just after it started waited out a second period.)"""
    period = 3.0
    code = textwrap.dedent(
        f"""
        import asyncio, os, time
        from ipy_rustasync import rust_module
        rs = rust_module({CELL!r})
        def threads():
            return len(os.listdir("/proc/self/task"))
        base = threads()
        async def main():
            assert await rs.ready(1) == 1  # its end starts the idle watcher
            await asyncio.sleep(0.05)  # a lull, then a load whose end is the last call
            assert await asyncio.gather(*(rs.echo_after(1, i) for i in range(1000))) == list(range(1000))
        asyncio.run(main())
        last = time.monotonic()
        busy = threads()
        while threads() > base and time.monotonic() - last < 20:
            time.sleep(0.02)
        print(base, busy, threads(), time.monotonic() - last)
        """
    )
    out = run_python(code, env={"IPY_RUSTASYNC_IDLE_SECONDS": str(period)}, timeout=300)
    assert out.returncode == 0, out.stderr
    base, busy, idle, took = out.stdout.split()
    print(
        f"\nthreads: {base} before, {busy} busy, {idle} {float(took):.2f} s after the last call (idle period {period:g} s)"
    )
    assert int(busy) > int(base) and int(idle) <= int(base)
    # Without the fix: about 2 x period - 0.05 s. The margin is for a loaded machine.
    assert float(took) < period + 1.5, f"the runtime's threads went {float(took):.1f} s after the last call"
