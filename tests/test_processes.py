"""Cell functions in other processes: pickled to ``ProcessPoolExecutor`` workers under
every start method (``fork``; ``spawn``; ``forkserver``, 3.14's default), and a child
made by ``os.fork()`` while the parent's tokio runtime runs (it gets a fresh one)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

import ipy_rustasync
from ipy_rustasync import rust_module

SOURCE = """
pub fn add(a: i64, b: i64) -> i64 { a + b }

/// Sleeps a little on the runtime, then doubles.
pub async fn twice(x: i64) -> i64 {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    x * 2
}
"""

#: Forking a process that has threads (the tokio workers) warns from 3.12 on; that
#: is the situation under test.
FORK_WARNING = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


@pytest.fixture(scope="module")
def rs() -> ModuleType:
    return rust_module(SOURCE)


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """A module the workers can import (on their ``PYTHONPATH``) that runs an async
    function to its end, what a user's own module would do."""
    where = tmp_path_factory.mktemp("helpers")
    (where / "ira_test_helpers.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            def run_async(fn, *args):
                return asyncio.run(fn(*args))

            def pid():
                import os
                return os.getpid()
            """
        )
    )
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(where), saved]))
    sys.path.insert(0, str(where))
    import ira_test_helpers

    yield ira_test_helpers
    sys.path.remove(str(where))
    del sys.modules["ira_test_helpers"]
    if saved is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = saved


def test_functions_say_an_importable_module(rs: ModuleType) -> None:
    name = f"ipy_rustasync.built.{rs.__name__}"
    assert rs.add.__module__ == name and rs.twice.__module__ == name
    assert sys.modules[name] is rs
    assert pickle.loads(pickle.dumps(rs.add)) is rs.add
    assert pickle.loads(pickle.dumps(rs.twice)) is rs.twice


@FORK_WARNING
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pool_workers_call_cell_functions(rs: ModuleType, helpers: ModuleType, method: str) -> None:
    """Plain and async functions, in workers of every start method. The parent's
    runtime is running when the pool starts (a forked worker must not use it)."""
    assert asyncio.run(rs.twice(1)) == 2
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
    try:
        assert pool.submit(rs.add, 2, 3).result(timeout=60) == 5
        results = [pool.submit(helpers.run_async, rs.twice, n) for n in range(6)]
        assert [r.result(timeout=60) for r in results] == [2 * n for n in range(6)]
        assert os.getpid() not in {pool.submit(helpers.pid).result(timeout=60) for _ in range(2)}
    except BaseException:
        # A hung worker would make the pool's shutdown wait for ever.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def test_a_process_without_the_module_says_why(rs: ModuleType, tmp_path: Path) -> None:
    """Another machine, or another cache: unpickling names the module, the cache it
    looked in, and what to do."""
    env = {**os.environ, "IPY_RUSTASYNC_CACHE_DIR": str(tmp_path / "elsewhere")}
    loaded = subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
        input=pickle.dumps(rs.add),
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert loaded.returncode != 0
    message = loaded.stderr.decode().strip().splitlines()[-1]
    assert message.startswith("ModuleNotFoundError: the Rust cell module " + rs.__name__), message
    assert "not in this process's cache" in message and "IPY_RUSTASYNC_CACHE_DIR" in message


@FORK_WARNING
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_gets_a_fresh_runtime(rs: ModuleType) -> None:
    """The parent's runtime is live (its workers parked) when the process forks; the
    child has none of its threads. Both ways of running a Rust call finish there, on
    a runtime the child starts; the parent's keeps working."""
    assert ipy_rustasync.run(rs.twice(3), timeout=5) == 6
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        try:
            ok = ipy_rustasync.run(rs.twice(4), timeout=5) == 8
            ok = ok and asyncio.run(asyncio.wait_for(rs.twice(5), 5)) == 10
        finally:
            os._exit(0 if "ok" in locals() and ok else 1)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung running a Rust call")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ipy_rustasync.run(rs.twice(6), timeout=5) == 12
