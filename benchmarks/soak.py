"""A soak: minutes of mixed load on one cell, sampling memory, threads and throughput.

    python benchmarks/soak.py [--minutes 3] [--interval 10] [--out FILE]

First 1,000,000 sequential awaits of a Rust future that is ready at once (the figure the
hardening issue asks for; ``tests/test_load.py`` runs fewer), with the settled memory
before and after. Then ``--minutes`` of rounds mixing every kind of call the bridge
serves: sequential ready awaits (default and inline paths), gathers of ready futures and
of 1-5 ms tokio sleeps, a cancellation storm (tasks awaiting a tokio mutex or a sleep,
cancelled 0-2 ms after they start, three ways), a Rust stream read with ``async for``,
Rust awaiting a Python async callback, and ``ipy_rustasync.run`` from synchronous code.
A new event loop starts every ``LOOP_ROUNDS`` rounds, alternating asyncio and uvloop
when uvloop is installed. Every result is checked (a wrong one stops the run).

Every ``--interval`` seconds it samples throughput (checked operations per second: one
await, one gathered future, one stream item, one callback, one cancelled-or-finished
task), RSS (``/proc/self/statm``), malloc's bytes in use (glibc ``mallinfo2``), threads
(``/proc/self/status``), open file descriptors and the Rust tasks alive on the cell's
runtime. "Settled" memory is read after ``gc.collect()`` and ``malloc_trim(0)``. At the
end it waits out the runtime's idle period and counts threads again. The report goes to
``benchmarks/results/soak.md`` (``--out``).

The cell is built ``--release`` into ``.test-cache/bench-cache`` unless
``IPY_RUSTASYNC_CACHE_DIR`` is set, as ``benchmarks/bridge.py`` does. The cell and the
cancellation storm (``load.py``) and the memory, thread and file-descriptor probes
(``probes.py``) are ``tests/test_load.py``'s too.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from load import CELL, storm
from probes import MB, Memory, open_fds, rss, settled_memory, threads
from report import machine, publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELL_CACHE = ROOT / ".test-cache" / "bench-cache"

SEQUENTIAL = 1_000_000
#: One round of the mixed load (counts per kind).
SEQ_READY, SEQ_INLINE, GATHER_READY, GATHER_SLEEPS = 500, 2_000, 2_000, 1_000
STORM, STREAM_ITEMS, CALLBACKS, VIA_RUN = 200, 500, 50, 100
#: A new event loop every this many rounds (and the `ipy_rustasync.run` calls between).
LOOP_ROUNDS = 10


def mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MB:.1f} MB"


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the mixed load began
    ops_per_s: float
    rss: int  # as it is
    settled: Memory  # after gc.collect() and malloc_trim(0)
    threads: int
    fds: int
    tasks: int


def sample(t: float, ops_per_s: float, rs: ModuleType) -> Sample:
    return Sample(t, ops_per_s, rss(), settled_memory(), threads(), open_fds(), rs.alive_tasks())


def progress(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


# --- the load ------------------------------------------------------------------------


async def sequential(make: Any, n: int) -> int:
    for i in range(n):
        got = await make(i)
        if got != i:
            raise AssertionError(f"{make.__name__}({i}) returned {got!r}")
    return n


async def gathered(aws: list[Awaitable[int]], want: list[int], what: str) -> int:
    got = await asyncio.gather(*aws)
    if got != want:
        wrong = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        raise AssertionError(f"{what}: {len(wrong)} wrong results, first at {wrong[:5]}")
    return len(aws)


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def one_round(rs: ModuleType, rng: random.Random, ops: Counter[str], ended: Counter[str]) -> None:
    ops["sequential awaits"] += await sequential(rs.ready, SEQ_READY)
    ops["inline awaits"] += await sequential(rs.ready_inline, SEQ_INLINE)
    ops["gathered ready"] += await gathered(
        [rs.ready(i) for i in range(GATHER_READY)], list(range(GATHER_READY)), "gathered ready"
    )
    ops["gathered sleeps"] += await gathered(
        [rs.echo_after(1 + i % 5, i) for i in range(GATHER_SLEEPS)], list(range(GATHER_SLEEPS)), "gathered sleeps"
    )
    ended.update(await storm(rs, rng.randrange(1 << 30), STORM))
    ops["storm tasks"] += STORM
    items = [x async for x in rs.count_to(STREAM_ITEMS)]
    if items != list(range(STREAM_ITEMS)):
        raise AssertionError("the stream's items came wrong")
    ops["stream items"] += STREAM_ITEMS
    total = await rs.sum_via(list(range(CALLBACKS)), double)
    if total != CALLBACKS * (CALLBACKS - 1):
        raise AssertionError(f"sum_via returned {total}")
    ops["Python callbacks"] += CALLBACKS


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# --- main ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the mixed load (default 3)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument(
        "--sequential", type=int, default=SEQUENTIAL, help="sequential awaits first (default 1,000,000)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.md", help="where the markdown goes")
    args = parser.parse_args()
    # Recorded rather than printed (printing one loads the source lines into Python's
    # memory, which the samples would count), and listed in the report.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = run(args, caught)
    publish(lines, args.out)


def run(args: argparse.Namespace, caught: list[warnings.WarningMessage]) -> list[str]:
    """The whole soak; returns the report's lines."""
    load_before = os.getloadavg()[0]
    began = time.perf_counter()

    os.environ.setdefault("IPY_RUSTASYNC_CACHE_DIR", str(CELL_CACHE))
    import ipy_rustasync
    from ipy_rustasync._pipeline.cells import compile_cell

    progress("building the cell (release)")
    rs = compile_cell(CELL, release=True).module
    built = time.perf_counter() - began
    kinds = ["asyncio", *(["uvloop"] if importlib.util.find_spec("uvloop") else [])]
    rng = random.Random(2024)
    threads_idle_before = threads()

    # Warm-up: one round on each loop kind sizes the runtime, channels and arenas.
    for kind in kinds:
        with asyncio.Runner(loop_factory=lambda kind=kind: new_loop(kind)) as runner:
            runner.run(one_round(rs, rng, Counter(), Counter()))

    # --- 1,000,000 sequential awaits
    progress(f"{args.sequential:,} sequential ready awaits")
    seq_before = settled_memory()
    start = time.perf_counter()
    asyncio.run(sequential(rs.ready, args.sequential))
    seq_took = time.perf_counter() - start
    seq_after = settled_memory()

    # --- the mixed load
    progress(f"mixed load for {args.minutes:g} min, a sample every {args.interval:g} s")
    ops: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    started0, dropped0 = rs.started(), rs.dropped()
    samples = [sample(0.0, 0.0, rs)]
    t0 = time.perf_counter()
    deadline = t0 + args.minutes * 60
    next_sample = t0 + args.interval
    last_ops, last_t = 0, t0
    rounds = loops = runs = 0
    while time.perf_counter() < deadline:
        kind = kinds[loops % len(kinds)]
        loops += 1
        with asyncio.Runner(loop_factory=lambda kind=kind: new_loop(kind)) as runner:
            for _ in range(LOOP_ROUNDS):
                runner.run(one_round(rs, rng, ops, ended))
                rounds += 1
                now = time.perf_counter()
                if now >= next_sample or now >= deadline:
                    total = sum(ops.values())
                    samples.append(sample(now - t0, (total - last_ops) / (now - last_t), rs))
                    s = samples[-1]
                    progress(
                        f"t={s.t:5.0f} s  {s.ops_per_s:9,.0f} ops/s  RSS {mb(s.rss)} (settled {mb(s.settled.rss)})  "
                        f"malloc {mb(s.settled.heap)}  blocks {s.settled.blocks:,}  threads {s.threads}  fds {s.fds}"
                    )
                    last_ops, last_t = total, time.perf_counter()  # sampling's own time is not counted
                    next_sample = now + args.interval
                if now >= deadline:
                    break
        for i in range(VIA_RUN):  # from synchronous code, between loops
            if ipy_rustasync.run(rs.ready(i)) != i:
                raise AssertionError("ipy_rustasync.run returned a wrong result")
        runs += VIA_RUN
    ops["ipy_rustasync.run calls"] += runs
    mixed_took = time.perf_counter() - t0
    # Cancelled futures are dropped by a worker: give them a moment.
    for _ in range(200):
        if rs.alive_tasks() == 0 and rs.dropped() - dropped0 == rs.started() - started0:
            break
        time.sleep(0.01)
    begun, dropped = rs.started() - started0, rs.dropped() - dropped0
    end = sample(mixed_took, float("nan"), rs)

    # --- idle: the runtime stops after its idle period and its threads go
    idle_s = float(os.environ.get("IPY_RUSTASYNC_IDLE_SECONDS") or 10)
    threads_idle: int | None = None
    if idle_s > 0:
        progress(f"waiting {idle_s + 3:g} s for the runtime's idle period")
        time.sleep(idle_s + 3)
        threads_idle = threads()

    # --- report
    total_ops = sum(ops.values())
    rates = [s.ops_per_s for s in samples[1:]]
    first = samples[0]
    everything = [*samples, end]
    peak_rss = max(s.rss for s in everything)
    peak_settled = max(s.settled.rss for s in everything)
    peak_heap = max((s.settled.heap for s in everything if s.settled.heap is not None), default=None)
    peak_blocks = max(s.settled.blocks for s in everything)
    peak_threads = max(s.threads for s in everything)
    peak_fds = max(s.fds for s in everything)
    # The first window includes the warm-up of the sampling itself; compare halves.
    half = len(rates) // 2
    first_half = statistics.median(rates[:half]) if half else float("nan")
    second_half = statistics.median(rates[half:]) if rates[half:] else float("nan")

    def mbh(n: int | None) -> str:
        return "n/a" if n is None else f"{n / MB:.2f} MB"

    lines = [
        machine(),
        "",
        f"`python benchmarks/soak.py --minutes {args.minutes:g}`: one process, one `--release` cell; every result "
        "checked. Absolute rates vary with the machine's load (it is shared); what matters is that nothing drifts.",
        "",
        f"**{args.sequential:,} sequential awaits** of a future ready at once (default path, one asyncio loop): "
        f"{seq_took:.1f} s, {seq_took / args.sequential * 1e6:.1f} µs each. Settled memory (after `gc.collect()` "
        f"and `malloc_trim(0)`) before / after: RSS {mb(seq_before.rss)} / {mb(seq_after.rss)}, malloc in use "
        f"{mbh(seq_before.heap)} / {mbh(seq_after.heap)}, Python allocator blocks {seq_before.blocks:,} / "
        f"{seq_after.blocks:,}.",
        "",
        f"**Mixed load**, {mixed_took / 60:.1f} min, {rounds:,} rounds on {loops} event loops "
        f"({' and '.join(kinds)} in turn, a new one every {LOOP_ROUNDS} rounds). A round: {SEQ_READY:,} sequential "
        f"awaits, {SEQ_INLINE:,} inline awaits, {GATHER_READY:,} gathered ready futures, {GATHER_SLEEPS:,} gathered "
        f"1-5 ms tokio sleeps, a storm of {STORM} tasks (a tokio mutex or a 0-5 ms sleep, cancelled 0-2 ms after "
        f"starting by `task.cancel()`, `future.cancel()` or a `wait_for` timeout), {STREAM_ITEMS} stream items "
        f"(`async for`), {CALLBACKS} Python async callbacks awaited from Rust; between loops {VIA_RUN} "
        "`ipy_rustasync.run` calls from synchronous code.",
        "",
        "Samples between rounds; RSS as it is, then settled, with malloc's bytes in use (glibc counts its "
        "per-thread caches as in use: a few hundred KB that fill slowly) and CPython's allocator blocks in use "
        "(settled too).",
        "",
        "| t (s) | ops/s | RSS | RSS, settled | malloc in use | Python blocks | threads | open fds | Rust tasks alive |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {s.t:.0f} | {'—' if i == 0 else f'{s.ops_per_s:,.0f}'} | {mb(s.rss)} | {mb(s.settled.rss)} "
            f"| {mbh(s.settled.heap)} | {s.settled.blocks:,} | {s.threads} | {s.fds} | {s.tasks} |"
            for i, s in enumerate(samples)
        ),
        "",
        "| | start | end | max |",
        "|---|---|---|---|",
        f"| RSS | {mb(first.rss)} | {mb(end.rss)} | {mb(peak_rss)} |",
        f"| RSS, settled | {mb(first.settled.rss)} | {mb(end.settled.rss)} | {mb(peak_settled)} |",
        f"| malloc in use, settled | {mbh(first.settled.heap)} | {mbh(end.settled.heap)} | {mbh(peak_heap)} |",
        f"| Python allocator blocks, settled | {first.settled.blocks:,} | {end.settled.blocks:,} | {peak_blocks:,} |",
        f"| threads | {first.threads} | {end.threads} | {peak_threads} |",
        f"| open file descriptors | {first.fds} | {end.fds} | {peak_fds} |",
        "",
        f"- Throughput: {total_ops:,} checked operations, {total_ops / mixed_took:,.0f} ops/s overall; per sample "
        f"min / median / max {min(rates):,.0f} / {statistics.median(rates):,.0f} / {max(rates):,.0f} ops/s; "
        f"median of the first half of the samples {first_half:,.0f}, of the second half {second_half:,.0f}.",
        "- Operations by kind: " + ", ".join(f"{k} {v:,}" for k, v in ops.most_common()) + ".",
        f"- Storm tasks: {ended['finished']:,} finished, {ended['cancelled']:,} cancelled, "
        f"{ended['timed out']:,} timed out. Rust futures begun / dropped: {begun:,} / {dropped:,}; tasks alive on "
        f"the runtime at the end: {end.tasks}.",
        f"- Threads before the first call: {threads_idle_before}; "
        + (
            f"{idle_s + 3:g} s after the last call (the runtime's idle period is {idle_s:g} s): {threads_idle}."
            if threads_idle is not None
            else "the runtime is kept (IPY_RUSTASYNC_IDLE_SECONDS=0), so not measured after an idle period."
        ),
        f"- Run time: {time.perf_counter() - began:.0f} s, of which building (or finding cached) the cell "
        f"{built:.0f} s. Load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
        "- Warnings: "
        + (
            "none."
            if not caught
            else "; ".join(f"{w.category.__name__}: {w.message}" for w in caught)
            + " (an inline poll is timed by the wall clock: on a loaded machine the OS can pause the loop's thread "
            "in the middle of one)."
        ),
    ]
    return lines


if __name__ == "__main__":
    main()
