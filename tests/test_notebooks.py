"""The teaching notebooks (notebooks/*.ipynb, quickstart aside: test_kernel.py runs it)
executed top to bottom in a real kernel by nbclient, as a lecturer would run them.

Each notebook has a checker below that asserts on what its cells print: counts,
order, exception type names, a PNG for every figure. Timings are only checked
against generous sanity bounds (the test machine is small and shared), or as lower
bounds that noise can only make larger. Every notebook also has to run clean: no
error output except in cells tagged ``raises-exception``, no traceback or
"Event loop is closed" on stderr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TEACHING = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem != "quickstart")


class Executed:
    """An executed notebook, read back cell by cell."""

    def __init__(self, nb: Any) -> None:
        self.cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    def cell(self, needle: str) -> Any:
        """The one code cell whose source contains ``needle`` (robust to reformatting)."""
        found = [cell for cell in self.cells if needle in cell.source]
        assert len(found) == 1, f"{len(found)} code cells contain {needle!r}"
        return found[0]

    def text(self, needle: str) -> str:
        """What that cell showed as text: stdout and the plain text of its results."""
        parts = []
        for out in self.cell(needle).outputs:
            if out.output_type == "stream" and out.name == "stdout":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data") and "image/png" not in out.data:
                parts.append(out.data.get("text/plain", "") + "\n")
        return "".join(parts)

    def pngs(self, needle: str) -> int:
        return sum(1 for o in self.cell(needle).outputs if "image/png" in o.get("data", {}))


def run_notebook(name: str) -> Executed:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return Executed(nb)


def check_runs_clean(ex: Executed) -> None:
    for cell in ex.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            assert len(errors) == 1, f"a cell tagged raises-exception did not raise:\n{cell.source}"
        else:
            assert not errors, f"{errors[0].ename}: {errors[0].evalue}\nin the cell:\n{cell.source}"
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, out.text
                assert "Event loop is closed" not in out.text, out.text


def lines_in_order(text: str, *expected: str) -> None:
    """Each expected fragment appears, on its own line, in this order."""
    lines = text.splitlines()
    at = -1
    for fragment in expected:
        later = [i for i, line in enumerate(lines) if fragment in line and i > at]
        assert later, f"{fragment!r} not found after line {at} in:\n{text}"
        at = later[0]


# --- one checker per notebook -------------------------------------------------------------


def check_concurrency(ex: Executed, config: Path) -> None:
    assert "nap (async), timed_nap (async), crunch (async)" in ex.text("%%rust_async")

    batches = re.findall(
        r"(\d+) sleeps of 100 ms: Rust (\d+) results in ([\d.]+) s, Python (\d+) results in ([\d.]+) s; in order: (\w+)",
        ex.text("async def timed_batch"),
    )
    assert [(n, rust_n, py_n, ordered) for n, rust_n, _, py_n, _, ordered in batches] == [
        ("1000", "1000", "1000", "True"),
        ("10000", "10000", "10000", "True"),
    ]
    rust_10k = float(batches[1][2])
    assert rust_10k < 5.0, f"10,000 concurrent 100 ms Rust sleeps took {rust_10k} s"

    throughput = ex.text("throughput = {")
    assert ex.pngs("throughput = {") == 1
    for label in ("Rust (tokio sleep)", "Python (asyncio.sleep)"):
        (line,) = [line for line in throughput.splitlines() if line.startswith(label)]
        assert len(re.findall(r"\d+: +[\d,]+/s", line)) == 5, line

    timeline = ex.text("timed_nap(ms) for ms in durations")
    assert ex.pngs("timed_nap(ms) for ms in durations") == 1
    took = re.search(r"^20 tasks; .* the batch took (\d+) ms \(the longest sleep: 225 ms\)$", timeline, re.M)
    assert took, timeline
    assert 225 <= int(took[1]) < 5000  # bounded below by the longest sleep: the tasks overlapped

    cpu = ex.text("ROUNDS = ")
    assert re.search(r"4 crunch tasks: one after another [\d.]+ s, gathered [\d.]+ s", cpu), cpu
    at_once = re.search(r"gathered: (\d+) worker threads, at most (\d+) tasks running at once", cpu)
    assert at_once, cpu
    if (os.cpu_count() or 1) >= 2:  # one worker per core: gathered CPU work overlaps in time
        assert int(at_once[1]) >= 2 and int(at_once[2]) >= 2, cpu

    assert ex.pngs("def draw_timeline") == 1
    assert "Python: 1 thread, at most 1 task running at once" in ex.text("def draw_timeline")


def check_cancellation(ex: Executed, config: Path) -> None:
    assert "hold_lock (async), take_lock (async), lock_is_free, started, dropped" in ex.text("pub async fn hold_lock")
    lines_in_order(
        ex.text("await until(lambda: not lock_is_free())"),
        "while the task runs, the lock is free: False",
        "the task was cancelled",
        "Rust future dropped: True | lock free: True",
    )
    timed_out = ex.text("asyncio.wait_for(hold_lock")
    lines_in_order(timed_out, "TimeoutError after", "the next caller got the lock: True")
    after = re.search(r"TimeoutError after ([\d.]+) s", timed_out)
    assert after and float(after[1]) < 5.0, timed_out  # the 0.1 s timeout, not the minute
    lines_in_order(
        ex.text("asyncio.gather(*(hold_lock"),
        "100 Rust futures started; lock free: False",
        "the gather was cancelled",
        "100 Rust futures dropped; lock free: True",
    )

    assert "journal, batch_job (async)" in ex.text("pub async fn batch_job")
    handle = ex.text("create_task(batch_job")
    lines_in_order(
        handle,
        "Rust:   async fn batch_job(items: u32, cancel: ipy_rustasync::CancelHandle) -> u32",
        "Python: batch_job(items)",  # the CancelHandle is not a Python parameter
        "Python: CancelledError after",
        "Rust: started: 1000 items",
        "Rust: cancelled after",
        "Rust: flushed",
    )
    waited = re.search(r"CancelledError after (\d+) ms", handle)
    assert waited and int(waited[1]) < 5000, handle
    counts = re.findall(r"cancelled after (\d+) items: flushing them|flushed (\d+) items, goodbye", handle)
    (cancelled_at, _), (_, flushed) = counts
    assert cancelled_at == flushed and int(flushed) < 1000, handle


def check_callbacks(ex: Executed, config: Path) -> None:
    assert "sum_via (async), fan_out (async), await_py (async), with_deadline (async)" in ex.text(
        "pub async fn sum_via"
    )

    summed = ex.text("async def double")
    assert summed.count("on the notebook's loop: True") == 3 and "False" not in summed, summed
    assert "sum_via([1, 2, 3], double) = 12" in summed

    pages = re.search(r"^50 pages in ([\d.]+) s: 'page 0' \.\.\. 'page 49'$", ex.text("async def fetch"), re.M)
    assert pages, ex.text("async def fetch")
    assert float(pages[1]) < 2.5  # concurrent: 50 calls one after another would take 5 s

    assert ex.text("class QuotaExceeded").splitlines() == [
        "picky: KeyError: 'no entry for 3'",
        "stingy: QuotaExceeded: only 0 calls left, asked for 1",
    ]
    assert ex.text("request_id = contextvars.ContextVar").splitlines() == [
        "['req-A/item0', 'req-A/item1', 'req-A/item2']",
        "['req-B/item0', 'req-B/item1', 'req-B/item2']",
    ]
    assert ex.text("async def greet").splitlines() == [
        "from a coroutine",
        "from a coroutine (a Task)",
        "from a Future, set 50 ms later",
    ]
    assert ex.text("slow_was_cancelled = asyncio.Event()").splitlines() == [
        "Rust: quick answer",
        "Rust: gave up after 50 ms",
        "Python: slow() saw CancelledError: True",
    ]


def check_streams(ex: Executed, config: Path) -> None:
    exports = ex.text("pub fn ticker")
    for name in ("ticker", "squares", "log_lines", "parse_all", "merged"):
        assert f"{name} (stream)" in exports, exports

    assert ex.text("print(n, end=").splitlines() == ["0 1 2 3 4 ", "[0, 10, 20]"]

    backpressure = ex.text("before = made()")
    for made, value in enumerate((0, 1, 4, 9, 16), start=1):
        assert f"consumed {value:>2}, squares made so far: {made}" in backpressure, backpressure
    assert "after 0.2 s of doing nothing, squares made: 5" in backpressure

    slow = ex.text("a slow consumer")
    gaps = re.search(r"^5 items; ms between them: \[([\d, ]+)\]", slow, re.M)
    assert gaps, slow
    # At least 20 ms producing + 50 ms consuming per item: the ticker did not run ahead.
    assert all(int(gap) >= 60 for gap in gaps[1].split(",")), slow

    assert ex.text("if square > 20").splitlines() == ["stopped at 25", "carries on with 36 and 49"]
    assert ex.text("aclosing").splitlines() == [
        "line 0 | line 1 | open connections: 1",
        "after aclose(), open connections: 0",
        "the closed stream raises StopAsyncIteration",
        "after the aclosing block, open connections: 0",
    ]
    assert ex.text("parse_all([").strip() == 'got [1, 2], then RustError: "x": invalid digit found in string'
    assert "{'fast': 4, 'slow': 4}" in ex.text("merged(4)")


def check_event_loops(ex: Executed, config: Path) -> None:
    assert "nap (async)" in ex.text("pub async fn nap")
    lines_in_order(ex.text("loop = asyncio.get_running_loop()"), "this cell runs in a loop: True", "napped 10 ms")
    assert ex.text("pending = nap(20)").strip() == "RustCoroutine | a coroutine: True"
    assert ex.text("await pending").strip() == "'napped 20 ms'"
    assert ex.text("def report").splitlines() == [
        "napped 30 ms",
        "a Python coroutine, run on the thread 'ipy-rustasync-run'",
        "TimeoutError: nap() did not finish within 0.1 s",
    ]
    assert "RuntimeError: 'Future' belongs to the event loop running here" in ex.text("loop.create_future()")

    (raising,) = [cell for cell in ex.cells if "raises-exception" in cell.metadata.get("tags", [])]
    assert raising.source == "asyncio.run(nap(5))"
    (error,) = [out for out in raising.outputs if out.output_type == "error"]
    assert error.ename == "RuntimeError"
    assert "cannot be called from a running event loop" in error.evalue
    hint = "".join(out.text for out in raising.outputs if out.output_type == "stream" and out.name == "stderr")
    assert "or run `%rust_async --nest` once" in hint  # the extension's hint under the traceback

    assert ex.text("background = asyncio.new_event_loop()").splitlines() == [
        "napped 15 ms on the thread 'background-loop'",
        "napped 5 ms (handed over directly)",
    ]
    assert "asyncio.run() now nests inside this kernel's running loop (this kernel only" in ex.text(
        "%rust_async --nest"
    )
    assert ex.text("print(asyncio.run(nap(5)))").splitlines() == [
        "napped 3 ms",
        "napped 5 ms",
        "a Python coroutine, nested",
    ]
    assert "this kernel stays nested until it restarts" in ex.text("%rust_async --no-nest")
    assert not config.exists() or "nest" not in config.read_text()  # nothing saved for other kernels


def check_async_objects(ex: Executed, config: Path) -> None:
    assert "RateLimiter, Account" in ex.text("pub struct RateLimiter")
    limited = ex.text("limiter = RateLimiter(20)")
    took = re.search(r"^12 calls let through over (\d+) ms$", limited, re.M)
    # Eleven 50 ms slots after the first: a lower bound that noise only raises.
    assert took and int(took[1]) >= 500, limited
    assert "smallest gap between two calls:" in limited
    deposits = ex.text("account = Account(0)")
    assert ex.pngs("account = Account(0)") == 1
    lines_in_order(deposits, "balance: 100", "deposits holding the lock at the same time: 0")
    last = re.search(r"the last let go after (\d+) ms", deposits)
    assert last and int(last[1]) >= 20 * 20, deposits  # twenty 20 ms turns, one at a time
    lines_in_order(
        ex.text("account.audit(), account.audit()"),
        "first audit: 100",
        "second audit: RuntimeError: Account.audit() takes `&mut self`, and another call on this Account is still running",
        "one at a time: 100 100",
    )


def check_live_demo(ex: Executed, config: Path) -> None:
    # Rust's prints land in the cell's output in the order they happened (issue 13).
    assert ex.text('print("before")').splitlines() == [
        "before",
        "hello from a tokio worker 1",
        "after the sleep 1",
        "hello from a plain fn",
        "after",
    ]
    bumped = ex.text("counter = Counter()")
    lines_in_order(bumped, "100 bumps of 50 ms each took", "count: 100")
    took = re.search(r"took (\d+) ms together", bumped)
    assert took and int(took[1]) < 5_000, bumped  # together, not one after another (5 s)
    (error,) = [o for o in ex.cell('"forty-two"').outputs if o.output_type == "error"]
    assert error.ename == "RustCompileError"
    # The editor's numbering: %%rust_async is line 1, so the string literal is on line 3.
    assert "first: mismatched types (cell line 3)" in error.evalue, error.evalue
    assert "--> cell line 3, column 5" in error.evalue, error.evalue


def check_named_cells(ex: Executed, config: Path) -> None:
    built = r"^rust_async: (built in [\d.]+ s|cached): "
    assert re.match(built + r"Order, total$", ex.text("--name orders"))
    assert re.match(built + r"price, priced_so_far$", ex.text("(100 - discount_pct) / 100"))
    first_checkout = "%%rust_async\nuse orders::Order;\nuse pricing::price;"  # the copy starts with a comment
    assert re.match(built + r"checkout \(async\)$", ex.text(first_checkout))
    assert re.match(built + r"quote$", ex.text("pub fn quote"))

    paid = ex.text("basket = [Order(")
    assert paid.splitlines()[:3] == [
        'Order("tea", qty=2, unit_cents=450)',
        "full price: 2325 cents",
        "with 10% off: 2092 cents",  # 810 + 742 + 540: each line rounded down
    ]
    took = re.search(r"^3 lines priced at once in (\d+) ms$", paid, re.M)
    assert took and 50 <= int(took[1]) < 2_000, paid  # at once: one 50 ms sleep, not three

    # PRICED is one static: counted from the checkout cell and the quote cell alike
    assert ex.text('print("priced so far:", priced_so_far())').splitlines() == [
        "priced so far: 3",
        "quote for 2 jams: 1200 cents",
        "checkout of 1 scone: 275 cents",
        "priced so far: 5",
    ]

    # the edited upstream: the function built on the earlier pricing names its cell
    stale = ex.text("except RustAsyncUsageError as err")
    assert stale.strip() == (
        "RustAsyncUsageError: `checkout` was built against an earlier build of the cell named `pricing`, "
        f"which has been re-run since: re-run the cell that defines `checkout` (In [{ex.cell(first_checkout).execution_count}]) "
        "to rebuild it"
    )
    edited = ex.text("discount_pct.min(5)")
    assert re.match(built + r"price, priced_so_far \(replaced: price, priced_so_far\)$", edited)
    assert ex.text("// checkout, rebuilt").strip().endswith("checkout (async) (replaced: checkout)")
    assert ex.text("got at most 5%").splitlines() == [
        "asked for 10% off, got at most 5%: 2208 cents",  # 855 + 783 + 570
        "priced by the new build: 3",  # the edited cell's own PRICED, from 0
    ]


CHECKS: dict[str, Callable[[Executed, Path], None]] = {
    "concurrency": check_concurrency,
    "cancellation": check_cancellation,
    "callbacks": check_callbacks,
    "streams": check_streams,
    "event_loops": check_event_loops,
    "async_objects": check_async_objects,
    "live_demo": check_live_demo,
    "named_cells": check_named_cells,
}


@pytest.mark.parametrize("name", TEACHING)
def test_notebook_runs_and_shows_what_it_teaches(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in CHECKS, f"notebooks/{name}.ipynb has no checks here: add a check_{name}"
    # Its own config file, so that nothing a notebook saves reaches the user's.
    config = tmp_path / "config.toml"
    monkeypatch.setenv("IPY_RUSTASYNC_CONFIG", str(config))
    ex = run_notebook(name)
    check_runs_clean(ex)
    CHECKS[name](ex, config)


def test_every_notebook_is_stored_without_outputs_for_the_python3_kernel() -> None:
    assert set(TEACHING) == set(CHECKS)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: stored with outputs"
