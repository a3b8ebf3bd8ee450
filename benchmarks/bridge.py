"""The async bridge, measured side by side with the two references, in one process:
the project's awaitables (a release-built cell), pyo3-async-runtimes' ``future_into_py``
and PyO3's experimental ``#[pyfunction] async fn`` coroutines (both from the crate in
``benchmarks/refs``), and plain-Python baselines.

    python benchmarks/bridge.py [--quick] [--out FILE]

Rows: sequential ``await f()`` of a future ready at once (per await, best of N repeats
of up to 20,000 awaits); 10,000 ready futures ``asyncio.gather``ed (per future, best of
N); 10,000 concurrent 100 ms tokio sleeps gathered (total, median of 3); 100,000 of them
(total, one run; a reference that would take over 60 s is skipped) and the Python-side
memory per pending future (tracemalloc peak during the gather / count); the inline path
(``#[rust_async(inline)]``), in the same rounds as row 1. Repeats of rows 1, 2 and 5 take
turns across the bridges, so a burst of load on the shared machine hits every column
alike.

Both the cell and the reference crate are built with the project's cargo driver
(``ipy_rustasync._pipeline.build``) in the release profile, into ``.test-cache/`` (cells go to
``.test-cache/bench-cache`` unless ``IPY_RUSTASYNC_CACHE_DIR`` is set; the first run
builds the dependency graphs, about 30 s each on 2 cores). Every measurement gets a fresh
event loop (``asyncio.run``, default loop) and the heap is collected between rows.
``--quick`` uses counts a tenth as large, for smoke tests. Absolute times vary run to
run on a shared machine; the ratios hold better.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import queue
import shutil
import statistics
import sys
import sysconfig
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from report import machine, publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFS = HERE / "refs"
REFS_TARGET = ROOT / ".test-cache" / "bench-refs-target"
CELL_CACHE = ROOT / ".test-cache" / "bench-cache"

CELL = """
/// Ready at once: the default (spawned) path.
pub async fn ready() -> u64 { 1 }

/// A tokio timer of `ms` milliseconds.
pub async fn sleep_ms(ms: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    1
}
"""

INLINE_CELL = """
#[rust_async(inline)]
pub async fn ready_inline() -> u64 { 1 }
"""

SLEEP_MS = 100
#: A reference run of the 100,000 sleeps longer than this is skipped (predicted or timed out).
REF_LIMIT_S = 60.0
#: Row 1 stops adding awaits to a repeat once it would take longer than this.
REPEAT_BUDGET_S = 0.5

Make = Callable[[], Awaitable[Any]]
MakeSleep = Callable[[int], Awaitable[Any]]
Figure = float | str | None  # a measurement, a reason it is missing, or not applicable


@dataclass(frozen=True)
class Counts:
    awaits: int  # row 1: awaits per repeat (at most)
    repeats: int  # rows 1-2: repeats, best taken
    gather: int  # row 2: ready futures gathered
    sleeps: int  # row 3: concurrent sleeps
    sleep_repeats: int  # row 3: repeats, median taken
    many_sleeps: int  # row 4: concurrent sleeps


FULL = Counts(awaits=20_000, repeats=7, gather=10_000, sleeps=10_000, sleep_repeats=3, many_sleeps=100_000)
QUICK = Counts(awaits=2_000, repeats=3, gather=1_000, sleeps=1_000, sleep_repeats=1, many_sleeps=10_000)


@dataclass
class Row:
    what: str
    unit: str  # "µs", "s" or "B"
    ours: Figure
    par: Figure = None  # pyo3-async-runtimes
    coro: Figure = None  # PyO3 coroutine
    baseline: Figure = None
    floor: Figure = None
    limits: tuple[Limit, ...] = ()  # ours must be within every one


@dataclass
class Limit:
    """One aim of a row: ours at most ``factor`` times ``of`` (a figure of the same run),
    or at most ``factor`` in the row's unit when ``of`` is None."""

    text: str
    factor: float
    of: Figure = None
    absolute: bool = False

    def bound(self) -> float | None:
        if self.absolute:
            return self.factor
        return self.factor * self.of if isinstance(self.of, float) else None


# --- the Python baselines ----------------------------------------------------------


async def py_ready() -> int:
    return 1


def wake_floor() -> asyncio.Future[int]:
    """One loop wake-up per future: what any bridge completing futures from another
    thread through ``call_soon_threadsafe`` pays at least."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon_threadsafe(fut.set_result, 1)
    return fut


def done_future() -> asyncio.Future[int]:
    """A future that is already complete: what ``gather`` costs on its own."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_result(1)
    return fut


def loop_completed_future() -> asyncio.Future[int]:
    """A future the loop completes itself (``call_soon``, no other thread)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon(fut.set_result, 1)
    return fut


def thread_round_trip(counts: Counts) -> float:
    """Microseconds per await of a future that a Python helper thread completes: the loop
    hands it over (``queue.SimpleQueue``), the thread wakes the loop (``call_soon_threadsafe``).
    Two thread handoffs, like the spawned path; an informational figure, not a row."""
    requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[int]] | None] = queue.SimpleQueue()

    def serve() -> None:
        while (item := requests.get()) is not None:
            loop, fut = item
            loop.call_soon_threadsafe(fut.set_result, 1)

    def make() -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        requests.put((loop, fut))
        return fut

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        timer = await_timer(make, counts)
        return min(timer() for _ in range(counts.repeats))
    finally:
        requests.put(None)
        thread.join()


def py_sleep(ms: int) -> Awaitable[None]:
    return asyncio.sleep(ms / 1000)


# --- measurements -------------------------------------------------------------------


Timer = Callable[[], float]


def await_timer(make: Make, counts: Counts) -> Timer:
    """One repeat of row 1: microseconds per sequential ``await make()``. The first
    call sizes the repeat (up to ``counts.awaits``; fewer for a slow bridge)."""

    async def run(n: int) -> float:
        for _ in range(100):  # binds the loop (and any per-loop state) before timing
            await make()
        start = time.perf_counter()
        for _ in range(n):
            await make()
        return (time.perf_counter() - start) / n

    size: int | None = None

    def once() -> float:
        nonlocal size
        if size is None:
            probe = asyncio.run(run(200))
            size = max(1_000, min(counts.awaits, int(REPEAT_BUDGET_S / probe)))
        return asyncio.run(run(size)) * 1e6

    return once


def gather_timer(make: Make, counts: Counts) -> Timer:
    """One repeat of row 2: microseconds per future when ``counts.gather`` of them are gathered."""

    async def run() -> float:
        await make()
        start = time.perf_counter()
        results = await asyncio.gather(*(make() for _ in range(counts.gather)))
        elapsed = time.perf_counter() - start
        assert len(results) == counts.gather and results[0] == 1, results[:3]
        return elapsed / counts.gather

    return lambda: asyncio.run(run()) * 1e6


def best_in_turns(
    label: str, timers: dict[str, Timer], repeats: int, *, references: tuple[str, ...] = ()
) -> dict[str, Figure]:
    """Each timer's best of ``repeats``, taken in turns (one repeat of every timer, then
    the next round), so that a burst of load on the shared machine lands on every
    column alike rather than on one. A reference (named in ``references``) that fails
    is noted and left out of later rounds; anything else failing is a bug and raises."""
    best: dict[str, Figure] = {}
    for _ in range(repeats):
        for name, timer in timers.items():
            if isinstance(best.get(name), str):
                continue
            value = attempt(f"{label}, {name}", timer) if name in references else timer()
            gc.collect()
            previous = best.get(name)
            if isinstance(value, float) and isinstance(previous, float):
                value = min(value, previous)
            best[name] = value
    return best


def sleeps_total(make: MakeSleep, n: int, *, timeout: float | None = None) -> float | None:
    """Seconds from creating ``n`` sleeps of SLEEP_MS to their gather finishing; None past ``timeout``."""

    async def run() -> float | None:
        await make(0)
        start = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(make(SLEEP_MS) for _ in range(n))), timeout)
        except TimeoutError:
            return None
        return time.perf_counter() - start

    return asyncio.run(run())


def bytes_per_pending(make: MakeSleep, n: int) -> float:
    """Python-side bytes per pending future: tracemalloc's peak during a gather of ``n``
    sleeps, over ``n``. The sleeps last 1 s here so that all ``n`` are pending at once
    even with tracemalloc slowing their creation down."""

    async def run() -> float:
        await make(0)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            await asyncio.gather(*(make(1000) for _ in range(n)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return (peak - base) / n

    return asyncio.run(run())


ERRORS: list[str] = []


def attempt(label: str, measure: Callable[[], float | None]) -> Figure:
    """A reference's measurement, or the start of its error (noted under the table)."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 -- a failing reference is a finding, not a reason to stop
        ERRORS.append(f"{label}: {type(err).__name__}: {err}")
        return f"error ({type(err).__name__})"
    finally:
        gc.collect()


def ready_row(what: str, found: dict[str, Figure], ours: str = "ours", **limits: Any) -> Row:
    """Rows 1, 2 and 5: a future ready at once, ``ours`` against the references and
    the baselines taken in the same rounds."""
    return Row(
        what,
        "µs",
        ours=found[ours],
        par=found["pyo3-async-runtimes"],
        coro=found["PyO3 coroutine"],
        baseline=found["baseline"],
        floor=found["floor"],
        **limits,
    )


# --- building -------------------------------------------------------------------------


def build_refs() -> ModuleType:
    """Builds ``benchmarks/refs`` with the project's cargo command and environment,
    release profile, and imports it as ``ira_bench_refs``."""
    from ipy_rustasync._pipeline import cargo

    manifest = REFS / "Cargo.toml"
    cmd = cargo.cargo_command(manifest, REFS_TARGET, release=True, extra=[])
    outcome = cargo.run(cmd, REFS)
    artifact = outcome.cdylib("ira_bench_refs")
    if not outcome.ok or artifact is None:
        sys.exit(f"building {manifest} failed:\n{outcome.text[-4000:]}")
    dest = REFS_TARGET / f"ira_bench_refs{sysconfig.get_config_var('EXT_SUFFIX')}"
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(artifact, tmp)
    os.replace(tmp, dest)  # never overwrite a library another process has mapped
    spec = importlib.util.spec_from_file_location("ira_bench_refs", dest)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_inline() -> ModuleType:
    """The inline-path cell."""
    from ipy_rustasync._pipeline.cells import compile_cell

    return compile_cell(INLINE_CELL, release=True).module


# --- the table ------------------------------------------------------------------------


def fmt(value: Figure, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit == "µs":
        return f"{value:.2f} µs" if value < 10 else f"{value:.0f} µs"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.0f} B"


def ratio(a: Figure, b: Figure) -> str:
    if not isinstance(a, float) or not isinstance(b, float) or b <= 0:
        return "—"
    r = a / b
    return f"{r:.0f}×" if r >= 10 else f"{r:.2g}×" if r >= 0.001 else f"{r:.1e}×"


def verdict(row: Row) -> tuple[str, str]:
    if not row.limits:
        return "—", "—"
    text = " and ".join(limit.text for limit in row.limits)
    bounds = [limit.bound() for limit in row.limits]
    if not isinstance(row.ours, float) or None in bounds:
        return text, "—"
    ours = row.ours
    return text, "✓" if all(ours <= bound for bound in bounds if bound is not None) else "✗"


def table(rows: list[Row]) -> list[str]:
    head = [
        "what",
        "ours",
        "pyo3-async-runtimes",
        "PyO3 coroutine",
        "Python baseline",
        "floor",
        "ours / floor",
        "ours / pyo3-async-runtimes",
        "ours / PyO3 coroutine",
        "target",
        "✓/✗",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        target, ok = verdict(row)
        cells = [
            row.what,
            fmt(row.ours, row.unit),
            fmt(row.par, row.unit),
            fmt(row.coro, row.unit),
            fmt(row.baseline, row.unit),
            fmt(row.floor, row.unit),
            ratio(row.ours, row.floor),
            ratio(row.ours, row.par),
            ratio(row.ours, row.coro),
            target,
            ok,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def progress(text: str) -> None:
    print(f"bridge.py: {text}", file=sys.stderr, flush=True)


# --- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="counts a tenth as large (smoke test)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    load_before = os.getloadavg()[0]
    began = time.perf_counter()

    os.environ.setdefault("IPY_RUSTASYNC_CACHE_DIR", str(CELL_CACHE))
    from ipy_rustasync._pipeline.cells import compile_cell

    progress("building the cell and the reference crate (release)")
    ours = compile_cell(CELL, release=True).module
    refs = build_refs()
    inline = build_inline()
    built = time.perf_counter() - began
    gc.collect()

    rows: list[Row] = []

    progress("rows 1 and 5: sequential awaits, ready at once (default and inline paths)")
    seq = best_in_turns(
        "rows 1 and 5",
        {
            "ours": await_timer(ours.ready, counts),
            "inline": await_timer(inline.ready_inline, counts),
            "pyo3-async-runtimes": await_timer(refs.par_ready, counts),
            "PyO3 coroutine": await_timer(refs.coro_ready, counts),
            "baseline": await_timer(py_ready, counts),
            "floor": await_timer(wake_floor, counts),
        },
        counts.repeats,
        references=("pyo3-async-runtimes", "PyO3 coroutine"),
    )
    rows.append(
        ready_row(
            f"`await f()`, ready at once, sequential, per await (best of {counts.repeats})",
            seq,
            limits=(Limit("≤ 1.5× floor", 1.5, seq["floor"]),),
        )
    )
    round_trip = thread_round_trip(counts)
    gc.collect()

    progress("row 2: gathered ready futures")
    gathered = best_in_turns(
        "row 2",
        {
            "ours": gather_timer(ours.ready, counts),
            "pyo3-async-runtimes": gather_timer(refs.par_ready, counts),
            "PyO3 coroutine": gather_timer(refs.coro_ready, counts),
            "baseline": gather_timer(py_ready, counts),
            "floor": gather_timer(wake_floor, counts),
            "done": gather_timer(done_future, counts),
            "loop": gather_timer(loop_completed_future, counts),
        },
        counts.repeats,
        references=("pyo3-async-runtimes", "PyO3 coroutine"),
    )
    rows.append(
        ready_row(
            f"{counts.gather:,} ready futures, `asyncio.gather`, per future (best of {counts.repeats})",
            gathered,
            limits=(
                Limit("≤ 0.6× PyO3 coroutine", 0.6, gathered["PyO3 coroutine"]),
                Limit(f"≤ `gather` of done asyncio futures ({fmt(gathered['done'], 'µs')})", 1.0, gathered["done"]),
            ),
        )
    )
    gc.collect()

    progress(f"row 3: {counts.sleeps:,} concurrent sleeps")

    def median_sleeps(make: MakeSleep) -> float:
        runs = [sleeps_total(make, counts.sleeps) for _ in range(counts.sleep_repeats)]
        return statistics.median(r for r in runs if r is not None)

    sleeps = Row(
        f"{counts.sleeps:,} concurrent {SLEEP_MS} ms tokio sleeps, `asyncio.gather`, total (median of {counts.sleep_repeats})",
        "s",
        ours=median_sleeps(ours.sleep_ms),
        par=attempt("row 3, pyo3-async-runtimes", lambda: median_sleeps(refs.par_sleep)),
        coro=attempt("row 3, PyO3 coroutine", lambda: median_sleeps(refs.coro_sleep)),
        baseline=median_sleeps(py_sleep),
        floor=SLEEP_MS / 1000,
        limits=(Limit("≤ 1.6× floor", 1.6, SLEEP_MS / 1000),),
    )
    rows.append(sleeps)
    gc.collect()

    progress(f"row 4: {counts.many_sleeps:,} concurrent sleeps")
    scale = counts.many_sleeps / counts.sleeps

    def bounded(label: str, make: MakeSleep, smaller: Figure) -> Figure:
        if isinstance(smaller, float) and smaller * scale > REF_LIMIT_S:
            return f"skipped (>{REF_LIMIT_S:.0f} s predicted)"
        done = attempt(label, lambda: sleeps_total(make, counts.many_sleeps, timeout=REF_LIMIT_S))
        return f"skipped (>{REF_LIMIT_S:.0f} s)" if done is None else done

    rows.append(
        Row(
            f"{counts.many_sleeps:,} concurrent {SLEEP_MS} ms tokio sleeps, `asyncio.gather`, total (one run)",
            "s",
            ours=sleeps_total(ours.sleep_ms, counts.many_sleeps),
            par=bounded("row 4, pyo3-async-runtimes", refs.par_sleep, sleeps.par),
            coro=bounded("row 4, PyO3 coroutine", refs.coro_sleep, sleeps.coro),
            baseline=sleeps_total(py_sleep, counts.many_sleeps),
            floor=SLEEP_MS / 1000,
        )
    )
    gc.collect()
    progress(f"row 4: memory per pending future ({counts.many_sleeps:,} pending)")
    rows.append(
        Row(
            f"Python-side memory per pending future, {counts.many_sleeps:,} gathered sleeps (tracemalloc peak / count)",
            "B",
            ours=bytes_per_pending(ours.sleep_ms, counts.many_sleeps),
            baseline=bytes_per_pending(py_sleep, counts.many_sleeps),
            limits=(Limit("≤ 1 KB", 1024, absolute=True),),
        )
    )
    gc.collect()

    rows.append(
        ready_row(
            f"inline path (`#[rust_async(inline)]`), ready at once, sequential, per await (best of {counts.repeats}, "
            "in turns with row 1)",
            seq,
            ours="inline",
            limits=(Limit("≤ 1.2× PyO3 coroutine", 1.2, seq["PyO3 coroutine"]),),
        )
    )

    total = time.perf_counter() - began
    lines = [
        machine(),
        "",
        "Absolute times vary run to run on a shared machine; the ratios hold better."
        + (" **Quick run: counts a tenth as large.**" if args.quick else ""),
        "",
        *table(rows),
        "",
        "- ours: a `%%rust_async` cell built `--release` (`pub async fn ready() -> u64 { 1 }`, and a "
        "`tokio::time::sleep`); pyo3-async-runtimes 0.30: `tokio::future_into_py`; PyO3 coroutine: PyO3 0.30.1 "
        "`#[pyfunction] async fn` (experimental-async), the sleeping one awaiting a `JoinHandle` spawned on a static "
        "multi-thread runtime. All built by the project's cargo driver, release profile, same toolchain.",
        "- Python baseline: an `async def` returning 1 (rows 1, 2, 5); tasks of `asyncio.sleep(0.1)` (rows 3, 4). "
        "Floor: `loop.call_soon_threadsafe(fut.set_result, 1); await fut` on a new loop future, one loop wake-up "
        "per future (rows 1, 2, 5); the sleep itself (rows 3, 4).",
        f"- One process, default asyncio loop, a fresh loop per measurement. Row 1 times up to {counts.awaits:,} "
        f"awaits per repeat (fewer for a bridge slower than {REPEAT_BUDGET_S / counts.awaits * 1e6:.0f} µs per await). "
        f"Row 4 skips a reference predicted or found to take over {REF_LIMIT_S:.0f} s. Memory counts only what "
        "Python's allocator traces (Rust-side allocations are not included).",
        f"- For scale: a future completed by a Python helper thread (the loop hands it over through a "
        f"`queue.SimpleQueue`, the thread calls `call_soon_threadsafe(fut.set_result, 1)`: two thread handoffs, "
        f"like the spawned path) costs {round_trip:.1f} µs per sequential await.",
        f"- `asyncio.gather` itself, per future: {fmt(gathered['done'], 'µs')} for asyncio futures already complete (each "
        f"done callback goes through `call_soon`), {fmt(gathered['loop'], 'µs')} for loop futures completed by "
        "`loop.call_soon` (no thread involved), on this machine in this run. Ours can come in under both: its "
        "channel runs a whole batch's done callbacks inside one loop callback.",
        f"- Run time: {total:.0f} s, of which building (or finding cached) the cell and the reference crate "
        f"{built:.0f} s. Load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
    ]
    if ERRORS:
        lines += ["", "Errors from the references:", "", *(f"- {e}" for e in ERRORS)]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
