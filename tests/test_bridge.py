"""The async bridge (issue 5): where futures run (spawned or inline), loop binding,
cancellation both ways, sync callers (``ipy_rustasync.run``), idle runtimes."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import socket
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from types import ModuleType

import pytest

import ipy_rustasync
from ipy_rustasync import RustCompileError, RustPanic, rust_module
from ipy_rustasync._pipeline import cells
from ipy_rustasync._settings import toolchain

from .helpers import run_python

BRIDGE = r"""
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use futures::StreamExt;

static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static DROPPED: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Counts its own drop, so tests can see a cancelled future go away.
struct Tracked;
impl Drop for Tracked {
    fn drop(&mut self) { DROPPED.fetch_add(1, Ordering::SeqCst); }
}

pub fn dropped() -> usize { DROPPED.load(Ordering::SeqCst) }
/// How many hold_gate calls got the gate so far.
pub fn started() -> usize { STARTED.load(Ordering::SeqCst) }

/// Holds the gate for `ms` milliseconds.
pub async fn hold_gate(ms: u64) -> u64 {
    let _tracked = Tracked;
    let _guard = GATE.lock().await;
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// Waits for the gate: returns at once if nobody holds it.
pub async fn take_gate() -> bool {
    let _guard = GATE.lock().await;
    true
}

pub async fn ready() -> u64 { 1 }

static MARKED: AtomicUsize = AtomicUsize::new(0);
/// How many `mark` futures have run.
pub fn marked() -> usize { MARKED.load(Ordering::SeqCst) }
pub async fn mark() -> usize { MARKED.fetch_add(1, Ordering::SeqCst) }

pub async fn echo(value: pyo3::Py<pyo3::PyAny>) -> pyo3::Py<pyo3::PyAny> { value }

#[rust_async(inline)]
pub async fn echo_inline(value: pyo3::Py<pyo3::PyAny>) -> pyo3::Py<pyo3::PyAny> { value }

#[rust_async(inline)]
pub async fn ready_inline() -> u64 { 2 }

static SLEEPERS: AtomicUsize = AtomicUsize::new(0);
/// How many sleepy_inline calls have begun (their first poll ran).
pub fn sleepers() -> usize { SLEEPERS.load(Ordering::SeqCst) }

#[rust_async(inline)]
pub async fn sleepy_inline(ms: u64) -> String {
    SLEEPERS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms")
}

/// Blocks the loop in its inline poll: the case that warns.
#[rust_async(inline)]
pub async fn hog_inline(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[rust_async(inline)]
pub async fn panics_inline() -> u64 { panic!("inline boom") }

/// Blocks a worker thread (a beginner's mistake): the loop must stay responsive.
pub async fn blocks_worker(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub async fn sleep_ms(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

pub async fn fails(msg: String) -> Result<u64, String> {
    tokio::task::yield_now().await;
    Err(msg)
}

/// Counts to `n`, one number every `ms` milliseconds.
pub fn count_to(n: u64, ms: u64) -> impl futures::Stream<Item = u64> + Send {
    futures::stream::unfold(0u64, move |i| async move {
        if i >= n { return None; }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Some((i, i + 1))
    })
}

static PRODUCED: AtomicUsize = AtomicUsize::new(0);
pub fn produced() -> usize { PRODUCED.load(Ordering::SeqCst) }

/// A producer that could run ahead: it only produces when asked.
pub fn eager(n: u64) -> impl futures::Stream<Item = u64> + Send {
    futures::stream::iter(0..n).map(|i| { PRODUCED.fetch_add(1, Ordering::SeqCst); i })
}

pub fn parse_all(items: Vec<String>) -> impl futures::Stream<Item = Result<i64, String>> + Send {
    futures::stream::iter(items).map(|s| s.parse::<i64>().map_err(|e| format!("{s}: {e}")))
}

pub fn boxed(n: u32) -> futures::stream::BoxStream<'static, u32> {
    futures::stream::iter(0..n).boxed()
}

static CLEANED: AtomicUsize = AtomicUsize::new(0);
pub fn cleaned() -> usize { CLEANED.load(Ordering::SeqCst) }

/// Notices cancellation and cleans up asynchronously before it returns.
pub async fn polite(cancel: ipy_rustasync::CancelHandle) -> &'static str {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(60)) => "finished",
        _ = cancel.cancelled() => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            CLEANED.fetch_add(1, Ordering::SeqCst);
            "cleaned up"
        }
    }
}

/// Calls a Python async function for each item and sums what it returns.
pub async fn sum_via(items: Vec<i64>, f: ipy_rustasync::AsyncCallable) -> pyo3::PyResult<i64> {
    let mut total = 0;
    for i in items { total += f.call_as::<i64, _>((i,)).await?; }
    Ok(total)
}

pub async fn await_py(aw: ipy_rustasync::PyAwaitable) -> pyo3::PyResult<String> {
    aw.wait_as::<String>().await
}

/// Gives the Python call `ms` milliseconds, then drops it: true if it timed out.
pub async fn impatient(f: ipy_rustasync::AsyncCallable, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), f.call(())).await.is_err()
}

pyo3::create_exception!(cell, NotFound, pyo3::exceptions::PyKeyError);

/// Raises the cell's own exception type.
pub async fn lookup(key: String) -> pyo3::PyResult<u64> {
    if key == "one" { Ok(1) } else { Err(NotFound::new_err(format!("no {key}"))) }
}

pub async fn spawn_panics() -> u64 {
    tokio::spawn(async { panic!("inside a spawned task") }).await.unwrap()
}

/// Uses the callable from a task it spawned, outside the call that received it.
pub async fn detached(f: ipy_rustasync::AsyncCallable) -> String {
    let spawned = tokio::spawn(async move { f.call(()).await.err().map(|e| e.to_string()).unwrap_or_default() });
    spawned.await.unwrap_or_default()
}

pub async fn thread_name() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_owned()
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// CPU work; says on which thread and when it ran.
pub async fn spin(n: u64) -> (String, u128, u128, u64) {
    let start = now_ns();
    let mut x = 0u64;
    for i in 0..n { x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i)); }
    (format!("{:?}", std::thread::current().id()), start, now_ns(), x)
}
"""


@pytest.fixture(scope="module")
def rs() -> ModuleType:
    return rust_module(BRIDGE)


async def reaches(count: Callable[[], int], value: int, seconds: float = 5.0) -> int:
    """Reads ``count`` (a counter of the cell's, moved on the runtime's threads) until it
    reaches ``value`` or ``seconds`` pass, the loop turning meanwhile; returns the last
    reading, for the caller to compare."""
    deadline = time.monotonic() + seconds
    while (now := count()) < value and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    return now


# --- where the future runs ----------------------------------------------------------


def test_default_path_runs_on_the_runtime_and_never_blocks_the_loop(rs: ModuleType) -> None:
    async def main() -> tuple[str, int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        start = time.perf_counter()
        blocked = await rs.blocks_worker(300)
        elapsed = time.perf_counter() - start
        t.cancel()
        return await rs.thread_name(), ticks if blocked == 300 else -1, elapsed

    name, ticks, elapsed = asyncio.run(main())
    assert name == "ipy-rustasync-worker"
    assert ticks >= 10, f"the loop ticked only {ticks} times while a worker was blocked for {elapsed:.2f} s"


def test_gathered_cpu_heavy_futures_run_in_parallel(rs: ModuleType) -> None:
    """Two CPU-bound futures gathered run at the same time on two worker threads
    (checked by thread and by overlapping run times, not by speed-up, which a
    shared machine cannot promise)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores")

    async def two() -> list[tuple[str, int, int, int]]:
        return list(await asyncio.gather(rs.spin(20_000_000), rs.spin(20_000_000)))

    (t1, s1, e1, _), (t2, s2, e2, _) = asyncio.run(two())
    assert t1 != t2
    overlap = min(e1, e2) - max(s1, s2)
    assert overlap > 0.5 * min(e1 - s1, e2 - s2), (s1, e1, s2, e2)


def test_inline_ready_future_finishes_in_the_first_send(rs: ModuleType) -> None:
    aw = rs.ready_inline()
    with pytest.raises(StopIteration) as stop:
        aw.send(None)  # no loop running at all: nothing was needed from one
    assert stop.value.value == 2
    assert asyncio.run(rs.ready_inline()) == 2


def test_inline_pending_future_moves_to_the_runtime(rs: ModuleType) -> None:
    """20 inline sleeps gathered are pending at once: each one's first poll (in the
    task's first step) returns pending and the sleep goes on on the runtime. All 20
    first steps run in one pass of the loop, so when the first result reaches Python
    all 20 sleeps have begun, however loaded the machine; one after another, the first
    would find 1 begun, the second 2, ..."""

    async def main() -> tuple[list[str], list[int]]:
        begun: list[int] = []
        before = rs.sleepers()

        async def one() -> str:
            slept: str = await rs.sleepy_inline(30)
            begun.append(rs.sleepers() - before)
            return slept

        return list(await asyncio.gather(*(one() for _ in range(20)))), begun

    start = time.perf_counter()
    results, begun = asyncio.run(main())
    took = time.perf_counter() - start
    assert results == ["slept 30 ms"] * 20
    assert begun == [20] * 20
    assert took < 2.0  # loose, not a measure of concurrency: a lost or late wake-up


@pytest.mark.parametrize("value", [(1, 2), (), None, ValueError("a value"), StopIteration(3), [1]])
def test_await_and_send_return_any_value_unchanged(rs: ModuleType, value: object) -> None:
    """`await` takes the result from the type's C-level send (no StopIteration
    built), `send` raises it as StopIteration: both give back the value itself,
    even a tuple or an exception object."""

    async def main() -> tuple[object, object]:
        return await rs.echo(value), await rs.echo_inline(value)

    assert all(got is value for got in asyncio.run(main()))
    aw = rs.echo_inline(value)
    with pytest.raises(StopIteration) as stop:
        aw.send(None)
    assert stop.value.value is value


def test_slow_inline_poll_warns_once_naming_the_function(rs: ModuleType) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(rs.hog_inline(30)) == 30
        assert asyncio.run(rs.hog_inline(30)) == 30
    slow = [w for w in caught if "hog_inline" in str(w.message)]
    assert len(slow) == 1, [str(w.message) for w in caught]
    assert issubclass(slow[0].category, RuntimeWarning)
    assert "remove #[rust_async(inline)]" in str(slow[0].message)


def test_inline_panic_is_rust_panic(rs: ModuleType) -> None:
    with pytest.raises(RustPanic, match="inline boom"):
        asyncio.run(rs.panics_inline())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("#[rust_async(inline)]\npub fn f() -> u8 { 1 }\n", "is for `async fn`s"),
        ("#[rust_async(fast)]\npub async fn f() -> u8 { 1 }\n", "unknown `rust_async` option"),
        ("#[rust_async(inline)]\nasync fn f() -> u8 { 1 }\npub fn g() -> u8 { 2 }\n", "is not `pub`"),
        ("pub fn f(c: ipy_rustasync::CancelHandle) -> u8 { 1 }\n", "only makes sense on a `pub async fn`"),
        (
            "pub async fn f(a: ipy_rustasync::CancelHandle, b: ipy_rustasync::CancelHandle) -> u8 { 1 }\n",
            "one `CancelHandle` parameter is enough",
        ),
    ],
)
def test_bad_rust_async_attributes_point_at_the_cell(source: str, message: str) -> None:
    with pytest.raises(RustCompileError) as err:
        rust_module(source)
    assert message in str(err.value)
    assert "cell line 1" in str(err.value)


# --- streams ---------------------------------------------------------------------------


def test_streams_are_async_iterators(rs: ModuleType) -> None:
    async def main() -> None:
        assert [x async for x in rs.count_to(5, 1)] == [0, 1, 2, 3, 4]
        assert [x async for x in rs.boxed(3)] == [0, 1, 2]
        # Backpressure: the producer runs only as far as the consumer asks.
        before = rs.produced()
        it = rs.eager(1_000_000)
        assert [await anext(it) for _ in range(3)] == [0, 1, 2]
        await asyncio.sleep(0.05)
        assert rs.produced() - before == 3
        # Leaving a loop early keeps the stream: the next loop goes on from there.
        async for x in it:
            if x == 5:
                break
        assert await anext(it) == 6
        await it.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(it)
        # An Err item raises where it comes, after the items before it.
        seen = []
        with pytest.raises(ipy_rustasync.RustError, match="x: invalid digit"):
            async for n in rs.parse_all(["1", "2", "x", "4"]):
                seen.append(n)
        assert seen == [1, 2]

    asyncio.run(main())


def test_async_fn_returning_a_stream_is_refused_with_a_hint() -> None:
    with pytest.raises(RustCompileError, match="make it a plain `pub fn`"):
        rust_module("pub async fn s() -> impl futures::Stream<Item = u8> + Send { futures::stream::empty() }\n")


# --- errors ------------------------------------------------------------------------------


def test_a_cells_own_exception_type(rs: ModuleType) -> None:
    from ipy_rustasync._pipeline import loader

    assert ("NotFound", "exception") in [(e.name, e.kind) for e in loader.exports(rs)]
    assert issubclass(rs.NotFound, KeyError)

    async def main() -> None:
        assert await rs.lookup("one") == 1
        with pytest.raises(rs.NotFound, match="no two"):
            await rs.lookup("two")

    asyncio.run(main())


def test_panic_in_a_spawned_task_is_rust_panic(rs: ModuleType) -> None:
    with pytest.raises(RustPanic, match="inside a spawned task"):
        asyncio.run(rs.spawn_panics())


# --- loop binding ----------------------------------------------------------------------


def test_binds_to_a_loop_in_another_thread(rs: ModuleType) -> None:
    aw = rs.sleep_ms(5)  # created here, awaited on another thread's loop
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(aw)))
    thread.start()
    thread.join(10)
    assert out == [5]


def test_binds_to_whichever_loop_runs_now_on_this_thread(rs: ModuleType) -> None:
    """The running loop is looked up at every start (on 3.11 through a memo of the
    thread's running-loop holder, to skip a system call): one loop after another on
    the same thread, a loop run by hand between cells, and no loop at all must each
    be seen as they are, never the loop seen last."""
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:

        async def bound() -> object:
            coro = rs.sleep_ms(1)
            waiter = coro.send(None)  # started: it yields the future it waits on
            loop = waiter.get_loop()
            await waiter
            with pytest.raises(StopIteration):
                coro.send(None)
            return loop

        assert first.run_until_complete(bound()) is first
        assert second.run_until_complete(bound()) is second
        assert first.run_until_complete(bound()) is first  # back to the first, by hand
        assert asyncio.run(bound()) not in (first, second)
    finally:
        first.close()
        second.close()
    stray = rs.ready()
    with pytest.raises(RuntimeError, match="must be awaited inside a running asyncio event loop"):
        stray.send(None)  # no loop runs now, whatever ran before


def _wake_up_sockets() -> list[socket.socket]:
    """The sockets the running loop watches for the bridge (its channels' read ends)."""
    loop = asyncio.get_running_loop()
    found = []
    for key in loop._selector.get_map().values():  # type: ignore[attr-defined]
        callback = getattr(key.data[0], "_callback", None)
        if type(callback).__name__ == "_ChannelDrain":
            found.append(socket.socket(fileno=os.dup(key.fd)))
    return found


@pytest.mark.parametrize("wakeup", ["unix", "tcp"])
def test_wake_up_pair_of_each_platform(rs: ModuleType, monkeypatch: pytest.MonkeyPatch, wakeup: str) -> None:
    """The loop is woken through a Unix socket pair on Unix, through a loopback TCP
    pair elsewhere (as Python's socket.socketpair is on Windows);
    IPY_RUSTASYNC_WAKEUP=tcp forces the second here (`make test` runs this file
    again with it, so the path Windows would take passes the bridge tests)."""
    if wakeup == "tcp":
        monkeypatch.setenv("IPY_RUSTASYNC_WAKEUP", "tcp")
    else:
        monkeypatch.delenv("IPY_RUSTASYNC_WAKEUP", raising=False)

    async def main() -> list[object]:
        results = list(await asyncio.gather(*(rs.sleep_ms(n % 5) for n in range(200))))
        await asyncio.sleep(0.05)  # past the spin window: the socket wakes the loop
        results.append(await rs.sleep_ms(3))
        sockets = _wake_up_sockets()
        try:
            assert len(sockets) == 1
            family, address = sockets[0].family, sockets[0].getsockname()
        finally:
            for sock in sockets:
                sock.close()
        if wakeup == "tcp":
            assert family == socket.AF_INET and address[0] == "127.0.0.1"
        else:
            assert family == socket.AF_UNIX
        return results

    assert asyncio.run(main()) == [n % 5 for n in range(200)] + [3]


def test_uvloop(rs: ModuleType) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[int]:
        return list(await asyncio.gather(rs.sleep_ms(5), rs.ready(), rs.ready_inline(), rs.sleepy_inline(1)))

    assert uvloop.run(main()) == [5, 1, 2, "slept 1 ms"]


def test_asyncio_apis_wrap_it_in_a_rust_task(rs: ModuleType) -> None:
    """A Rust call is a coroutine, not a future: gather, wait_for, shield,
    as_completed, ensure_future and create_task wrap it in a task, which on a loop
    the bridge has run on is a RustTask (no Python-level stepping), behaving as a
    Task: results, errors and cancellation as for asyncio's own."""

    async def main() -> None:
        probe = rs.ready()
        assert asyncio.iscoroutine(probe) and not asyncio.isfuture(probe)
        probe.close()
        assert await asyncio.gather(rs.ready(), rs.ready_inline(), rs.sleep_ms(2), rs.sleepy_inline(1)) == [
            1,
            2,
            2,
            "slept 1 ms",
        ]
        task = asyncio.ensure_future(rs.sleep_ms(1))
        assert type(task).__name__ == "RustTask" and asyncio.isfuture(task) and not asyncio.iscoroutine(task)
        assert await task == 1 and await task == 1  # a task may be awaited again
        assert await asyncio.wait_for(rs.ready_inline(), 1) == 2
        assert await asyncio.wait_for(rs.sleep_ms(1), 1) == 1
        assert await asyncio.shield(rs.sleep_ms(1)) == 1
        done, pending = await asyncio.wait([asyncio.ensure_future(rs.sleep_ms(1)), asyncio.create_task(rs.ready())])
        assert not pending and sorted(f.result() for f in done) == [1, 1]
        coro = rs.ready()
        with pytest.raises(TypeError, match="Passing coroutines is forbidden"):
            await asyncio.wait([coro])
        coro.close()
        assert sorted([await f for f in asyncio.as_completed([rs.sleep_ms(3), rs.ready()])]) == [1, 3]
        results = await asyncio.gather(rs.fails("nope"), rs.ready(), return_exceptions=True)
        assert isinstance(results[0], ipy_rustasync.RustError) and str(results[0]) == "nope"
        assert results[1] == 1
        with pytest.raises(ipy_rustasync.RustError, match="nope"):
            await asyncio.gather(rs.fails("nope"), rs.sleep_ms(1))
        # Cancelling a gather cancels (drops) the Rust futures under it.
        started = rs.started()
        outer = asyncio.gather(rs.hold_gate(60_000), rs.sleep_ms(60_000))
        assert await reaches(rs.started, started + 1) > started
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert await asyncio.wait_for(rs.take_gate(), 0.5)
        # A coroutine is awaited once.
        coro = rs.ready()
        assert await coro == 1
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await coro

    asyncio.run(main())


def test_a_loop_with_a_task_factory_of_its_own_keeps_it(rs: ModuleType) -> None:
    """The README's way to opt out of RustTasks: a factory making asyncio.Tasks is
    left in place, and Rust calls run in asyncio.Tasks, names and all."""

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        await rs.sleep_ms(1)
        tasks = [asyncio.ensure_future(rs.ready()), loop.create_task(rs.sleep_ms(1), name="mine")]
        assert all(type(t) is asyncio.Task for t in tasks)
        assert tasks[1].get_name() == "mine"
        # CPython 3.13.0-3.13.2 name every task a factory made 'None' (gh-130033).
        gh130033 = (3, 13) <= sys.version_info < (3, 13, 3)
        assert tasks[0].get_name() == "None" if gh130033 else tasks[0].get_name().startswith("Task-")
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [1, 1]


def test_a_task_starts_on_the_next_loop_turn_and_run_until_complete_takes_it(rs: ModuleType) -> None:
    async def main() -> None:
        started = rs.started()
        fut = asyncio.ensure_future(rs.hold_gate(1))
        assert rs.started() == started  # a task starts on the loop's next turn, as asyncio's do
        assert await reaches(rs.started, started + 1) == started + 1
        assert await fut == 1

    asyncio.run(main())
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(rs.sleep_ms(1)) == 1
        assert loop.run_until_complete(rs.ready_inline()) == 2
    finally:
        loop.close()


# --- cancellation, Python to Rust ---------------------------------------------------------


def _gate_free_within(rs: ModuleType, seconds: float) -> bool:
    async def probe() -> bool:
        return bool(await asyncio.wait_for(rs.take_gate(), seconds))

    return asyncio.run(probe())


def test_task_cancel_drops_the_rust_future(rs: ModuleType) -> None:
    async def main() -> None:
        started = rs.started()
        task = asyncio.create_task(rs.hold_gate(60_000))
        assert await reaches(rs.started, started + 1) > started
        before = rs.dropped()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await reaches(rs.dropped, before + 1) == before + 1

    asyncio.run(main())
    assert _gate_free_within(rs, 0.05)


def test_cancelling_a_gather_drops_every_rust_future_of_the_burst(rs: ModuleType) -> None:
    """In a burst, the first future is spawned at its start and the rest together by
    a launcher task (each behind its own abort switch): cancelling must drop them
    all, whichever way they were spawned."""

    async def main() -> None:
        before, started = rs.dropped(), rs.started()
        burst = asyncio.gather(*(rs.hold_gate(60_000) for _ in range(5)))
        assert await reaches(rs.started, started + 1) > started  # one holds the gate, four wait for it
        await asyncio.sleep(0.02)
        burst.cancel()
        with pytest.raises(asyncio.CancelledError):
            await burst
        assert await reaches(rs.dropped, before + 5) == before + 5

    asyncio.run(main())
    assert _gate_free_within(rs, 0.05)


def test_wait_for_timeout_drops_the_rust_future(rs: ModuleType) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(rs.hold_gate(60_000), 0.05)

    asyncio.run(main())
    assert _gate_free_within(rs, 0.05)


def test_garbage_collected_running_awaitable_drops_the_future(rs: ModuleType) -> None:
    async def main() -> None:
        started = rs.started()
        aw = rs.hold_gate(60_000)
        aw.send(None)  # started on the runtime, then abandoned
        assert await reaches(rs.started, started + 1) > started
        del aw
        gc.collect()

    before = rs.dropped()
    asyncio.run(main())
    assert _gate_free_within(rs, 0.05)
    assert rs.dropped() == before + 1


def _started_in_one_turn(coroutines: list) -> list:
    """Sends into each coroutine (as a Task stepping it would): all are started in
    this one loop turn; returns the futures they wait on."""
    return [coro.send(None) for coro in coroutines]


async def _finish(coroutines: list, waiters: list) -> list:
    await asyncio.gather(*waiters)
    results = []
    for coro in coroutines:
        with pytest.raises(StopIteration) as stop:
            coro.send(None)
        results.append(stop.value.value)
    return results


def test_a_long_burst_starts_running_before_the_loop_turn_ends(rs: ModuleType) -> None:
    """Coroutines started within one loop turn are spawned together, but a long
    burst goes out in chunks as it builds up: its futures run while the loop is still
    busy starting the rest, not only once the turn is over."""

    async def main() -> int:
        before = rs.marked()
        burst = [rs.mark() for _ in range(1000)]
        waiters = _started_in_one_turn(burst)
        deadline = time.monotonic() + 5
        while rs.marked() - before < 500 and time.monotonic() < deadline:
            time.sleep(0.001)  # blocks the loop: it cannot turn meanwhile
        ran = rs.marked() - before
        await _finish(burst, waiters)
        return ran

    assert asyncio.run(main()) >= 500


def test_cancelled_before_its_spawn_it_never_runs(rs: ModuleType) -> None:
    """A task cancelled in the loop turn that made it never runs (its start waits
    for the next turn, as an asyncio Task's first step does), whatever it takes. A
    coroutine started but still queued with its burst when cancelled is dropped
    unspawned, unless it takes a CancelHandle: then it runs, to see the
    cancellation."""

    async def main() -> None:
        started, cleaned = rs.started(), rs.cleaned()
        task = asyncio.ensure_future(rs.hold_gate(1))
        assert task.cancel()
        polite_task = asyncio.ensure_future(rs.polite())
        assert polite_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(asyncio.CancelledError):
            await polite_task
        # Started coroutines: the first of the turn is spawned at once, the rest wait
        # for the channel's next callback; cancel those.
        first, gated, polite = rs.ready(), rs.hold_gate(1), rs.polite()
        waiters = _started_in_one_turn([first, gated, polite])
        assert "pending" in repr(waiters[1])
        assert waiters[1].cancel() and waiters[1].cancelled()
        assert waiters[2].cancel()
        assert await reaches(rs.cleaned, cleaned + 1) == cleaned + 1, (
            "the started CancelHandle function never saw its cancellation"
        )
        assert rs.started() == started, "a future cancelled before its spawn ran anyway"
        await waiters[0]
        for coro in (first, gated, polite):
            coro.close()

    asyncio.run(main())
    assert _gate_free_within(rs, 0.05)


def test_a_burst_started_while_a_completion_is_delivered_is_spawned(rs: ModuleType) -> None:
    """The channel delivers a completion inside its loop callback and steps the
    awaiting task right there; whatever that task starts, for however long, must
    still be spawned (a burst outlasting the callback's polling window once waited
    forever)."""

    async def main() -> list[int]:
        await rs.ready()  # the task resumes inside the channel's callback
        return list(await asyncio.wait_for(asyncio.gather(*(rs.ready() for _ in range(3000))), 30))

    assert asyncio.run(main()) == [1] * 3000


def test_cancel_handle_lets_rust_clean_up(rs: ModuleType) -> None:
    """A function taking a CancelHandle is told about cancellation instead of being
    dropped: the caller gets CancelledError at once, the Rust side runs its
    (async) cleanup; Python never sees the parameter."""

    async def main() -> None:
        before = rs.cleaned()
        task = asyncio.create_task(rs.polite())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - start < 0.5
        assert await reaches(rs.cleaned, before + 1) > before, "the Rust side never saw the cancellation"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(rs.polite(), 0.01)
        assert await reaches(rs.cleaned, before + 2) > before + 1, "the Rust side never saw the cancellation"

    asyncio.run(main())
    assert rs.polite.__text_signature__ == "()"
    with pytest.raises(TimeoutError):
        ipy_rustasync.run(rs.polite(), timeout=0.01)
    deadline = time.monotonic() + 2
    while rs.cleaned() < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rs.cleaned() >= 3


def test_no_event_loop_is_closed_noise_when_asyncio_run_shuts_down() -> None:
    """Tasks still running when asyncio.run returns are cancelled while the loop
    closes; a Rust future finishing at that moment must not print anything."""
    code = textwrap.dedent(
        f"""
        import asyncio
        from ipy_rustasync import rust_module
        rs = rust_module({BRIDGE!r})

        async def main():
            for i in range(200):
                asyncio.get_running_loop().create_task(rs.sleep_ms(i % 5))
            await asyncio.sleep(0.002)

        for _ in range(20):
            asyncio.run(main())
        print("done")
        """
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert out.stderr == "", out.stderr


# --- Rust awaiting Python ----------------------------------------------------------------


def test_rust_awaits_python_on_the_callers_loop_and_context(rs: ModuleType) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[bool, str]] = []

        async def double(x: int) -> int:
            await asyncio.sleep(0)
            seen.append((asyncio.get_running_loop() is loop, var.get()))
            return 2 * x

        var.set("caller's")
        assert await rs.sum_via([1, 2, 3], double) == 12
        assert seen == [(True, "caller's")] * 3

        async def who() -> str:
            return var.get()

        assert await rs.await_py(who()) == "caller's"
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, "from a future")
        assert await rs.await_py(fut) == "from a future"

    asyncio.run(main())


def test_python_exceptions_come_back_with_their_type(rs: ModuleType) -> None:
    async def bad(x: int) -> int:
        raise KeyError(f"no {x}")

    async def main() -> None:
        with pytest.raises(KeyError, match="no 1"):
            await rs.sum_via([1], bad)
        with pytest.raises(TypeError, match="expected an async callable"):
            rs.sum_via([1], 42)

    asyncio.run(main())


def test_dropping_the_rust_future_cancels_the_python_task(rs: ModuleType) -> None:
    async def main() -> None:
        cancelled = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        assert await rs.impatient(slow, 20) is True
        await asyncio.wait_for(cancelled.wait(), 1)

        # And cancelling the Rust call from Python cancels the Python task under it.
        cancelled.clear()
        task = asyncio.create_task(rs.impatient(slow, 60_000))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), 1)

    asyncio.run(main())


def test_python_callable_used_outside_its_call_says_so(rs: ModuleType) -> None:
    async def nothing() -> None:
        pass

    message = asyncio.run(rs.detached(nothing))
    assert "can only be awaited inside the cell function call that received it" in message


def test_callbacks_leak_no_references(rs: ModuleType) -> None:
    import weakref

    class Adder:
        async def __call__(self, x: int) -> int:
            return x + 1

    async def main() -> weakref.ref[Adder]:
        adder = Adder()
        ref = weakref.ref(adder)
        for _ in range(200):
            assert await rs.sum_via([1, 2], adder) == 5
        return ref

    ref = asyncio.run(main())
    gc.collect()
    assert ref() is None


# --- sync callers: ipy_rustasync.run ---------------------------------------------------------


def test_run_outside_any_loop(rs: ModuleType) -> None:
    assert ipy_rustasync.run(rs.sleep_ms(5)) == 5

    async def py() -> str:
        await asyncio.sleep(0)
        return "python"

    assert ipy_rustasync.run(py()) == "python"


def test_run_inside_a_running_loop(rs: ModuleType) -> None:
    """What a synchronous function called from a kernel cell sees."""
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")

    async def py() -> str:
        await asyncio.sleep(0.001)
        return marker.get()

    async def cell() -> tuple[int, str]:
        marker.set("caller's context")
        return ipy_rustasync.run(rs.sleep_ms(5)), ipy_rustasync.run(py())

    assert asyncio.run(cell()) == (5, "caller's context")


def test_run_timeout_drops_the_rust_future(rs: ModuleType) -> None:
    with pytest.raises(TimeoutError, match="hold_gate"):
        ipy_rustasync.run(rs.hold_gate(60_000), timeout=0.05)
    assert _gate_free_within(rs, 0.05)

    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        ipy_rustasync.run(slow(), timeout=0.05)


def test_run_refuses_what_needs_the_blocked_loop() -> None:
    async def cell() -> None:
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(RuntimeError, match="belongs to the event loop running here"):
            ipy_rustasync.run(fut)

        async def waits_on_the_cell_loop() -> None:
            await fut

        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            ipy_rustasync.run(waits_on_the_cell_loop(), timeout=5)

    asyncio.run(cell())


def test_run_consumes_the_coroutine(rs: ModuleType) -> None:
    coro = rs.fails("kept")
    with pytest.raises(ipy_rustasync.RustError, match="kept"):
        ipy_rustasync.run(coro)
    with pytest.raises(RuntimeError, match="already being awaited"):
        ipy_rustasync.run(coro)

    async def again() -> None:
        await coro

    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        asyncio.run(again())


def test_run_rejects_a_started_awaitable_and_non_awaitables(rs: ModuleType) -> None:
    with pytest.raises(TypeError, match="needs an awaitable"):
        ipy_rustasync.run(42)  # type: ignore[arg-type]

    async def main() -> None:
        aw = rs.sleep_ms(50)
        task = asyncio.create_task(aw)
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already being awaited"):
            ipy_rustasync.run(aw)
        await task

    asyncio.run(main())


def test_run_is_interruptible() -> None:
    """Ctrl-C (SIGINT) during ipy_rustasync.run(rust) raises KeyboardInterrupt promptly."""
    code = textwrap.dedent(
        f"""
        import os, signal, threading, time
        import ipy_rustasync
        from ipy_rustasync import rust_module
        rs = rust_module({BRIDGE!r})
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.perf_counter()
        try:
            ipy_rustasync.run(rs.hold_gate(60_000))
        except KeyboardInterrupt:
            print("interrupted after", round(time.perf_counter() - start, 1))
        print("gate free:", ipy_rustasync.run(rs.take_gate(), timeout=1))
        """
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # A child that inherited SIGINT ignored runs the whole 60 s ("gate free: True" alone):
    # tests/conftest.py restores the default for a suite started in the background.
    assert lines[0].startswith("interrupted after"), out.stdout + out.stderr
    assert float(lines[0].split()[-1]) < 2.0
    assert lines[1] == "gate free: True"


def test_run_timeout_and_interrupt_fire_on_time_while_every_worker_is_blocked() -> None:
    """The timeout and the Ctrl-C check of ipy_rustasync.run do not depend on the
    runtime: with every worker stuck in std::thread::sleep, both still fire on time
    (the timeout was a tokio timer, which no free worker drove: 0.5 s took 5.8 s)."""
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal, threading, time
        import ipy_rustasync
        from ipy_rustasync import rust_module
        rs = rust_module({BRIDGE!r})
        workers = os.cpu_count()

        async def block_every_worker():
            return await asyncio.gather(*(rs.blocks_worker(3_000) for _ in range(workers * 2)))

        blockers = threading.Thread(target=lambda: print("blocked", len(asyncio.run(block_every_worker()))))
        blockers.start()
        time.sleep(0.5)
        start = time.perf_counter()
        try:
            ipy_rustasync.run(rs.sleep_ms(60_000), timeout=0.5)
        except TimeoutError:
            print("timed out after", round(time.perf_counter() - start, 2))
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.perf_counter()
        try:
            ipy_rustasync.run(rs.sleep_ms(60_000))
        except KeyboardInterrupt:
            print("interrupted after", round(time.perf_counter() - start, 2))
        blockers.join()
        """
    )
    out = run_python(code, env={"IPY_RUSTASYNC_WORKER_THREADS": str(os.cpu_count() or 2)})
    assert out.returncode == 0, out.stderr
    timed_out, interrupted, blocked = out.stdout.splitlines()
    assert blocked == f"blocked {2 * (os.cpu_count() or 2)}"  # the workers really were busy meanwhile
    assert timed_out.startswith("timed out after") and float(timed_out.split()[-1]) < 2.5, out.stdout
    assert interrupted.startswith("interrupted after") and float(interrupted.split()[-1]) < 2.5, out.stdout


# --- next to pyo3-async-runtimes --------------------------------------------------------


PAR_CELL = r"""
use std::time::Duration;
use pyo3::prelude::*;

/// pyo3-async-runtimes' way: an `asyncio.Future` of the running loop, the future
/// spawned on that crate's own tokio runtime.
#[pyfunction]
pub fn par_double(py: Python<'_>, x: u64, ms: u64) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(x * 2)
    })
}

/// This bridge's way, in the same cell.
pub async fn native_add(a: u64, b: u64, ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    a + b
}
"""


def test_a_cell_uses_pyo3_async_runtimes_next_to_its_own_async_fns() -> None:
    """A cell may depend on pyo3-async-runtimes of the PyO3 line the cells share
    (0.30): its own `#[pyfunction]` returning `future_into_py`'s future is exported
    and awaited in the same `asyncio.run` as a native `pub async fn` of the cell, each
    future on its own tokio runtime. Builds against crates.io."""
    mod = rust_module(PAR_CELL, deps=["pyo3-async-runtimes[tokio-runtime]@0.30"])
    kinds = {name: kind for name, kind, _ in mod.__ira_exports__}
    assert kinds == {"par_double": "pyfunction", "native_add": "async"}

    async def main() -> tuple[list[int], tuple[int, int], bool]:
        par = mod.par_double(21, 50)
        is_future = isinstance(par, asyncio.Future)
        together = await asyncio.gather(par, mod.native_add(2, 3, 50))
        one_by_one = (await mod.par_double(5, 0), await mod.native_add(1, 1, 0))
        return together, one_by_one, is_future

    assert asyncio.run(main()) == ([42, 5], (10, 2), True)


#: Pasted from PyO3's guide (and written as pyo3-async-runtimes' README writes its
#: functions): `#[pyfunction]`s that are not `pub`; the attribute asks for the export.
GUIDE_CELL = r"""
use pyo3::prelude::*;

/// Formats the sum of two numbers as string.
#[pyfunction]
fn sum_as_string(a: usize, b: usize) -> PyResult<String> {
    Ok((a + b).to_string())
}

#[pyfunction]
#[pyo3(name = "twice")]
pub(crate) fn double(x: i64) -> i64 {
    x * 2
}

#[pyfunction]
fn later(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let asyncio = py.import("asyncio")?;
    asyncio.call_method1("sleep", (0, "slept"))
}
"""


def test_a_pyfunction_pasted_from_pyo3s_guide_is_exported_without_pub() -> None:
    compiled = cells.compile_cell(GUIDE_CELL)
    assert compiled.build.warnings == []  # nothing is left unused by the registration
    mod = compiled.module
    assert {name: kind for name, kind, _ in mod.__ira_exports__} == {
        "sum_as_string": "pyfunction",
        "twice": "pyfunction",
        "later": "pyfunction",
    }
    assert mod.sum_as_string(5, 20) == "25"
    assert mod.sum_as_string.__doc__.startswith("Formats the sum of two numbers as string.")
    assert mod.twice(21) == 42
    assert asyncio.run(mod.later()) == "slept"
    with pytest.raises(TypeError):
        mod.sum_as_string("5", 2)  # PyO3's own conversions, as in any #[pyfunction]


# --- threads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_call",
    ["asyncio.run(m.ready_inline())", "m.plain()"],
    ids=["an-inline-ready-await", "a-sync-call"],
)
def test_a_runtime_started_by_a_call_that_ends_at_once_still_goes_idle(first_call: str) -> None:
    """The first call on a thread starts the runtime and counts one piece of work; a
    call that ends at once (an inline poll that was ready, a sync call) must count it
    off once only. Counted off twice, the count wrapped and the runtime never went
    idle again."""
    code = textwrap.dedent(
        f"""
        import asyncio, os, time
        from ipy_rustasync import rust_module
        m = rust_module("#[rust_async(inline)]\\npub async fn ready_inline() -> u32 {{ 1 }}\\npub fn plain() -> u32 {{ 2 }}\\n")
        def workers():
            names = []
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{{tid}}/comm") as f:
                        names.append(f.read())
                except OSError:
                    pass
            return sum(name.startswith("ipy-rustasync-w") for name in names)
        {first_call}
        end = time.monotonic() + 10
        while workers() and time.monotonic() < end:
            time.sleep(0.02)
        print(workers())
        """
    )
    out = run_python(code, env={"IPY_RUSTASYNC_IDLE_SECONDS": "0.2"}, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"], out.stdout


def test_idle_runtimes_give_their_threads_back() -> None:
    """Loaded but idle, cells must not keep worker threads parked. On the shared
    runtime library the cells share one tokio runtime (cores workers while busy, not
    cores x cells); linking a copy each, each cell has its own."""
    cells = 6
    code = textwrap.dedent(
        f"""
        import asyncio, os, time
        from ipy_rustasync import rust_module
        def threads():
            return len(os.listdir("/proc/self/task"))
        mods = [rust_module(f"pub async fn idle_probe_{{i}}() -> u32 {{{{ {{i}} }}}}") for i in range({cells})]
        base = threads()
        async def main():
            return await asyncio.gather(*(getattr(m, f"idle_probe_{{i}}")() for i, m in enumerate(mods)))
        assert asyncio.run(main()) == list(range({cells}))
        busy = threads()
        time.sleep(1.5)
        idle = threads()
        assert asyncio.run(main()) == list(range({cells}))  # and they start again
        print(base, busy, idle)
        """
    )
    out = run_python(code, env={"IPY_RUSTASYNC_IDLE_SECONDS": "0.3"}, timeout=900)
    assert out.returncode == 0, out.stderr
    base, busy, idle = map(int, out.stdout.split())
    workers = os.cpu_count() or 1
    if toolchain.shared_runtime():
        assert base + workers <= busy <= base + workers + 1, (base, busy, idle)  # + the idle watcher
    else:
        assert busy >= base + cells * workers, (base, busy, idle)
    assert idle <= base + 1, (base, busy, idle)
