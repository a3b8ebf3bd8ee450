"""The editing loop, measured: cold first build, warm edit of a small cell
(Shift-Enter to callable), cached re-run in the same process and after a restart.

    python benchmarks/edit_loop.py [--cold] [--repeat N] [--out FILE]

--cold builds the dependency graph from scratch in a throwaway cache (about 30 s
on 2 cores). Absolute times vary run to run on a shared machine; medians are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from report import machine, publish

CELL = """
/// A small cell: one async and one plain function.
pub async fn greet(ms: u64, who: String) -> String {{
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    format!("Hello, {{who}}! ({tag})")
}}

pub fn add(a: i64, b: i64) -> i64 {{ a + b }}
"""


def in_new_process(source: str) -> tuple[float, float]:
    """For a cached cell in a fresh process (a kernel restart): seconds to import the
    package (``%load_ext``), and seconds from running the cell to a callable."""
    code = textwrap.dedent(
        f"""
        import time
        t0 = time.perf_counter()
        from ipy_rustasync._pipeline.cells import compile_cell
        t1 = time.perf_counter()
        c = compile_cell({source!r})
        assert c.build.cached
        print(t1 - t0, time.perf_counter() - t1)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    load, run = out.stdout.split()
    return float(load), float(run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    if args.cold:
        os.environ["IPY_RUSTASYNC_CACHE_DIR"] = tempfile.mkdtemp(prefix="ira-cold-")
    from ipy_rustasync._pipeline.cells import compile_cell

    t = time.perf_counter()
    first = compile_cell(CELL.format(tag="first"))
    first_s = time.perf_counter() - t
    if args.cold:
        rows.append(("cold first build (dependencies + cell)", f"{first_s:.1f} s"))

    edits = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        c = compile_cell(CELL.format(tag=uuid.uuid4().hex))
        edits.append(time.perf_counter() - t)
        assert not c.build.cached
    rows.append(("warm edit: build + load a small edited cell (median)", f"{statistics.median(edits):.2f} s"))
    rows.append(("warm edit: fastest / slowest", f"{min(edits):.2f} s / {max(edits):.2f} s"))

    cached = []
    for _ in range(max(args.repeat, 20)):
        t = time.perf_counter()
        c = compile_cell(CELL.format(tag="first"))
        cached.append(time.perf_counter() - t)
        assert c.build.cached
    rows.append(("cached re-run, same kernel (median)", f"{statistics.median(cached) * 1000:.1f} ms"))
    restarts = [in_new_process(CELL.format(tag="first")) for _ in range(args.repeat)]
    rows.append(
        ("cached re-run after a restart (median)", f"{statistics.median(r[1] for r in restarts) * 1000:.0f} ms")
    )
    rows.append(
        (
            "  + importing the package once per kernel (median)",
            f"{statistics.median(r[0] for r in restarts) * 1000:.0f} ms",
        )
    )
    del first

    publish([machine(), "", "| what | time |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)], args.out)


if __name__ == "__main__":
    main()
