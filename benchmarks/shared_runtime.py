"""Cells on the shared runtime library against cells linking a copy each, through the
package: threads after N cells are each awaited once, module sizes, warm edit.

    python benchmarks/shared_runtime.py [--cells N]

Runs tests/test_shared_runtime.py's probe in fresh processes, once with
``IPY_RUSTASYNC_SHARED_RUNTIME=0`` (a copy per cell, as before) and once on the
shared runtime, in the cache ``IPY_RUSTASYNC_CACHE_DIR`` (default
``.test-cache/bench-cache``), and prints a markdown table. The cells carry a fresh
tag, so each run builds them (the dependencies stay warm).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.test_shared_runtime import PROBE  # noqa: E402

EDIT = """
import sys, time
from ipy_rustasync._pipeline.cells import compile_cell
tag = sys.argv[1]
cell = "pub async fn add(a: u64, b: u64) -> u64 {{ a + b + {k} }}\\n// " + tag + "\\n"
compile_cell(cell.format(k=0))
times = []
for k in range(1, 6):
    start = time.perf_counter()
    compile_cell(cell.format(k=k))
    times.append(time.perf_counter() - start)
print(" ".join(f"{t:.3f}" for t in times))
"""


def run(code: str, *argv: str, shared: bool) -> str:
    env = {**os.environ, "IPY_RUSTASYNC_SHARED_RUNTIME": "1" if shared else "0", "IPY_RUSTASYNC_IDLE_SECONDS": "60"}
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("IPY_RUSTASYNC_CACHE_DIR", str(HERE.parent / ".test-cache" / "bench-cache"))
    rows = {}
    for shared in (False, True):
        tag = f"{time.time_ns()}"
        run(PROBE, "2", tag + "w", shared=shared)  # the dependencies, built cold if need be
        probe = json.loads(run(PROBE, str(args.cells), tag, shared=shared))
        edits = [float(x) for x in run(EDIT, tag, shared=shared).split()]
        rows[shared] = (probe, edits)
    cores = os.cpu_count()
    print(f"{args.cells} cells, {cores} cores, load {os.getloadavg()[0]:.1f}\n")
    print("| | a copy per cell | shared runtime library |\n|---|---|---|")
    p0, e0 = rows[False]
    p1, e1 = rows[True]

    def t(p: dict[str, int]) -> str:
        return f"{p['before']} / {p['loaded']} / **{p['after']}**"

    def mb(n: float) -> str:
        return f"{n / 1e6:.2f} MB"

    print(f"| threads: before / {args.cells} loaded / each awaited once | {t(p0)} | {t(p1)} |")
    print(f"| distinct tokio runtimes | {p0['runtimes']} | {p1['runtimes']} |")
    print(f"| one coroutine type across cells | {p0['same_coroutine_type']} | {p1['same_coroutine_type']} |")
    print(f"| cell module (median) | {mb(statistics.median(p0['sizes']))} | {mb(statistics.median(p1['sizes']))} |")
    print(f"| {args.cells} modules together | {mb(sum(p0['sizes']))} | {mb(sum(p1['sizes']))} |")
    med = statistics.median
    print(
        f"| warm edit, `compile_cell` (median of 5, min-max) | {med(e0) * 1000:.0f} ms ({min(e0) * 1000:.0f}-{max(e0) * 1000:.0f}) "
        f"| {med(e1) * 1000:.0f} ms ({min(e1) * 1000:.0f}-{max(e1) * 1000:.0f}) |"
    )
    print(f"\nmapped on the shared route: {', '.join(p1['mapped'])}")


if __name__ == "__main__":
    main()
