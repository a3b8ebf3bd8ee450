"""Event-loop cases: running an awaitable from synchronous code, and ``asyncio.run``
inside a kernel.

Where code runs decides what works. ipykernel runs every cell inside the kernel's
running loop, so ``asyncio.run`` raises there; terminal IPython and scripts have no
loop running between statements. ``run`` works in all of them:

* a Rust awaitable blocks on the Rust runtime with the GIL released (no Python loop
  is involved, so a running one does not matter);
* any other awaitable with no loop running runs like ``asyncio.run``;
* with a loop running in this thread, it runs on a fresh loop in a helper thread
  while this one waits; anything that needs the blocked loop is refused with a
  sentence rather than left to hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How often a waiting thread wakes to let Ctrl-C (a kernel interrupt) in.
_POLL = 0.02

_DIFFERENT_LOOP = ("attached to a different loop", "bound to a different event loop")


def run(awaitable: Awaitable[T], timeout: float | None = None) -> T:
    """Runs ``awaitable`` to completion from synchronous code and returns its result.

    ``timeout`` (seconds) cancels it and raises ``TimeoutError``; Ctrl-C or a kernel
    interrupt cancels it and raises ``KeyboardInterrupt``."""
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be a non-negative number of seconds, not {timeout!r}")
    blocking = getattr(awaitable, "_run_blocking", None)
    if blocking is not None and type(awaitable).__name__ == "RustCoroutine":
        return blocking(timeout)  # type: ignore[no-any-return]
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"ipy_rustasync.run() needs an awaitable, not {type(awaitable).__name__}")
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        return _translated(lambda: asyncio.run(_bounded(awaitable, timeout)), awaitable)
    if asyncio.isfuture(awaitable) and awaitable.get_loop() is running:
        _close(awaitable)
        raise RuntimeError(
            f"{_label(awaitable)} belongs to the event loop running here, which ipy_rustasync.run() would block; "
            "use `await` instead"
        )
    return _translated(lambda: _in_helper_thread(awaitable, timeout), awaitable)


async def _bounded(awaitable: Awaitable[T], timeout: float | None) -> T:
    if timeout is None:
        return await awaitable
    async with asyncio.timeout(timeout):
        return await awaitable


def _in_helper_thread(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Runs the awaitable on a new loop in a helper thread, with this thread's
    contextvars, and waits for it; an interrupt here cancels it there."""
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    started = threading.Event()
    where: dict[str, Any] = {}

    async def main() -> T:
        where["loop"], where["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await _bounded(awaitable, timeout)

    context = contextvars.copy_context()

    def thread_main() -> None:
        try:
            with asyncio.Runner() as runner:
                outcome.set_result(runner.run(main(), context=context))
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread as it is
            outcome.set_exception(err)
        finally:
            started.set()

    helper = threading.Thread(target=thread_main, name="ipy-rustasync-run", daemon=True)
    helper.start()
    try:
        while True:
            try:
                return outcome.result(timeout=_POLL)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        started.wait()
        if "task" in where and not where["loop"].is_closed():
            where["loop"].call_soon_threadsafe(where["task"].cancel)
        helper.join()
        raise


def _translated(call: Callable[[], T], awaitable: object) -> T:
    """Turns asyncio's "attached to a different loop" into what to do about it."""
    try:
        return call()
    except RuntimeError as err:
        if any(marker in str(err) for marker in _DIFFERENT_LOOP):
            raise RuntimeError(
                f"{_label(awaitable)} waits on something that belongs to another event loop (the one "
                "ipy_rustasync.run() blocks, or one that is not running); await it in that loop instead"
            ) from err
        raise


def _label(awaitable: object) -> str:
    name = getattr(awaitable, "__qualname__", None) or type(awaitable).__name__
    return f"{name}()" if inspect.iscoroutine(awaitable) else repr(name)


def _close(awaitable: object) -> None:
    if isinstance(awaitable, Coroutine):
        awaitable.close()


# --- asyncio.run inside a kernel ---------------------------------------------------

_NESTED = "cannot be called from a running event loop"

HINT = (
    "rust_async: this cell already runs inside the kernel's event loop, so asyncio.run() cannot start another; "
    "use top-level `await ...`, or `ipy_rustasync.run(...)` from synchronous code, "
    "or run `%rust_async --nest` once to let asyncio.run() nest here"
)


def asyncio_run_hint(result: Any) -> None:
    """IPython ``post_run_cell`` hook: after the traceback of a nested
    ``asyncio.run``, says what to do instead."""
    err = getattr(result, "error_in_exec", None)
    if isinstance(err, RuntimeError) and _NESTED in str(err):
        print(HINT, file=sys.stderr)


_nested = False


def nest() -> None:
    """Lets ``asyncio.run`` and ``run_until_complete`` nest inside this process's
    running loop (opt-in: ``%rust_async --nest``). Uses nest-asyncio2, the maintained
    fork that ipykernel 7 itself depends on; the original nest_asyncio is archived and
    breaks ``asyncio.current_task()`` on Python 3.14.

    nest-asyncio2 patches asyncio for the whole process; two things keep that from
    breaking what does not nest: a loop it cannot patch (uvloop's, any loop not built
    on ``asyncio.BaseEventLoop``) is refused here with a sentence, and ``asyncio.run``
    goes through nest-asyncio2 only when a loop is already running, so
    ``asyncio.run(..., loop_factory=uvloop.new_event_loop)`` and ``uvloop.run`` keep
    working as they do without it."""
    global _nested
    from ipy_rustasync._base.errors import RustAsyncUsageError

    try:
        import nest_asyncio2
    except ImportError:
        raise RustAsyncUsageError(
            f"--nest needs nest-asyncio2; run `{sys.executable} -m pip install nest-asyncio2`"
        ) from None
    loop = asyncio.events._get_running_loop()
    if loop is not None and not isinstance(loop, asyncio.BaseEventLoop):
        kind = f"{type(loop).__module__}.{type(loop).__qualname__}"
        raise RustAsyncUsageError(
            f"--nest works on asyncio's own event loops, and this one is a {kind}, which nest-asyncio2 cannot patch; "
            "use top-level `await` or ipy_rustasync.run(...) instead"
        )
    if _nested:
        return
    original = asyncio.run
    nest_asyncio2.apply(loop)
    nested_run = asyncio.run

    @functools.wraps(original)
    def run(main: Coroutine[Any, Any, T], **kwargs: Any) -> T:
        if asyncio.events._get_running_loop() is None:
            return original(main, **kwargs)
        return nested_run(main, **kwargs)

    asyncio.run = run  # type: ignore[assignment]
    _nested = True


def nested() -> bool:
    """Whether :func:`nest` has been applied in this process."""
    return _nested


# --- kernel interrupts of awaited cells -------------------------------------------------

_signal_wakeup: tuple[socket.socket, socket.socket] | None = None


def wake_loop_on_signals() -> None:
    """Makes a kernel interrupt reach an awaited cell promptly.

    ipykernel turns SIGINT during an awaited cell into cancelling the cell's task
    (which drops the Rust future), but Python runs signal handlers only when the
    main thread runs Python code. If the kernel's loop sits idle in ``select`` and
    the signal lands on another thread (a tokio worker, a zmq thread), nothing
    wakes the loop and ``await f()`` is never interrupted. A wakeup fd the loop
    watches (``signal.set_wakeup_fd``) wakes it for every signal. Installed once,
    only in the main thread with a running loop, and only if no wakeup fd is set."""
    global _signal_wakeup
    if _signal_wakeup is not None or threading.current_thread() is not threading.main_thread():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # someone else watches signals already: leave theirs alone
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    try:
        loop.add_reader(reader.fileno(), _drain_signal_bytes, reader)
    except NotImplementedError:  # a loop that cannot watch sockets (Windows' proactor loop)
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    _signal_wakeup = (reader, writer)


def _drain_signal_bytes(reader: socket.socket) -> None:
    try:
        while reader.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
