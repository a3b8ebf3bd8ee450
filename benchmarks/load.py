"""The load ``benchmarks/soak.py`` and ``tests/test_load.py`` put on a cell: the cell
(futures ready at once on the default and inline paths, tokio sleeps, a contended tokio
mutex, a stream, Rust awaiting Python; with counters of the futures begun and dropped
and of the tasks alive on the cell's runtime) and a cancellation storm on it.
Importable as ``probes`` is (see ``probes.py``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from types import ModuleType

CELL = r"""
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static STARTED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);
static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts the futures that began running and the ones dropped since (finished or
/// cancelled): equal once nothing is left behind.
struct Tracked;
impl Tracked {
    fn new() -> Self { STARTED.fetch_add(1, Ordering::SeqCst); Tracked }
}
impl Drop for Tracked {
    fn drop(&mut self) { DROPPED.fetch_add(1, Ordering::SeqCst); }
}

pub fn started() -> usize { STARTED.load(Ordering::SeqCst) }
pub fn dropped() -> usize { DROPPED.load(Ordering::SeqCst) }

/// Tasks alive on this cell's tokio runtime: every awaitable spawns one, dropped when
/// its future finishes or is cancelled.
pub fn alive_tasks() -> usize {
    ipy_rustasync::runtime().map(|rt| rt.metrics().num_alive_tasks()).unwrap_or(usize::MAX)
}

/// `x`, after a tokio sleep of `ms` milliseconds.
pub async fn echo_after(ms: u64, x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    x
}

/// `x`, at once (the default path: spawned on the runtime, completed through the loop).
pub async fn ready(x: u64) -> u64 { x }

/// `x`, at once, in the inline first poll.
#[rust_async(inline)]
pub async fn ready_inline(x: u64) -> u64 { x }

/// Takes the shared tokio mutex and holds it across `yields` scheduler yields and a
/// sleep of `hold_ms` milliseconds.
pub async fn contend(x: u64, yields: u32, hold_ms: u64) -> u64 {
    let _tracked = Tracked::new();
    let _guard = GATE.lock().await;
    for _ in 0..yields { tokio::task::yield_now().await; }
    if hold_ms > 0 { tokio::time::sleep(Duration::from_millis(hold_ms)).await; }
    x
}

/// `x`, after a tokio sleep of `us` microseconds (tokio rounds up to whole ms).
pub async fn nap(x: u64, us: u64) -> u64 {
    let _tracked = Tracked::new();
    tokio::time::sleep(Duration::from_micros(us)).await;
    x
}

/// The numbers `0..n`, as a Rust stream (`async for`).
pub fn count_to(n: u64) -> impl futures::Stream<Item = u64> + Send {
    futures::stream::iter(0..n)
}

/// Calls a Python async function for each item and sums what it returns.
pub async fn sum_via(items: Vec<i64>, f: ipy_rustasync::AsyncCallable) -> pyo3::PyResult<i64> {
    let mut total = 0;
    for i in items { total += f.call_as::<i64, _>((i,)).await?; }
    Ok(total)
}
"""


#: How many tasks a storm starts, unless told.
STORM = 1_000
CANCEL_WITHIN_S = 0.002


async def storm(rs: ModuleType, seed: int, count: int = STORM) -> dict[str, int]:
    """``count`` tasks (1,000 unless told; ``seed`` below 10**12), each awaiting a Rust future that either queues for and holds a
    shared tokio mutex (across yields, a third of them also across a 1 ms sleep, so a
    queue forms) or sleeps 0-5 ms, and cancelled 0-2 ms after it starts (seeded),
    in one of three ways: ``task.cancel()``, ``cancel()`` on the task ``ensure_future`` made of
    it, or a ``wait_for`` timeout. The tasks start in batches of 1-20 with a
    loop iteration between, so starts, cancellations and completions interleave.
    Returns how the tasks ended."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()

    async def victim(aw: Awaitable[int], delay: float, way: str) -> int:
        if way == "task":
            loop.call_later(delay, asyncio.current_task().cancel)  # type: ignore[union-attr]
            return await aw
        if way == "future":
            future = asyncio.ensure_future(aw)  # a RustTask: the Rust future runs with no Task stepping it
            assert asyncio.isfuture(future) and future is not aw
            loop.call_later(delay, future.cancel)
            return await future
        return await asyncio.wait_for(aw, delay)

    tasks: list[asyncio.Task[int]] = []
    expected: list[tuple[str, int]] = []
    while len(tasks) < count:
        for _ in range(min(rng.randint(1, 20), count - len(tasks))):
            x = seed * 1_000_000 + len(tasks)
            if rng.random() < 0.5:
                aw = rs.contend(x, rng.randrange(0, 4), rng.choice([0, 0, 1]))
            else:
                aw = rs.nap(x, rng.randrange(0, 5_000))
            way = rng.choice(["task", "future", "wait_for"])
            tasks.append(asyncio.create_task(victim(aw, rng.uniform(0, CANCEL_WITHIN_S), way)))
            expected.append((way, x))
        await asyncio.sleep(0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ended = {"finished": 0, "cancelled": 0, "timed out": 0}
    for (way, want), got in zip(expected, results, strict=True):
        if isinstance(got, asyncio.CancelledError):
            assert way != "wait_for", got
            ended["cancelled"] += 1
        elif isinstance(got, TimeoutError):
            assert way == "wait_for", got
            ended["timed out"] += 1
        else:
            assert got == want, f"{way}: {got!r}, expected {want}"
            ended["finished"] += 1
    return ended
