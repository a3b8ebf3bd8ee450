"""What a synchronous call into a cell costs, this tree against an older revision, in
one process.

    python benchmarks/sync_call.py [--baseline REV] [--repeats N] [--out FILE]

The same cell (a trivial ``pub fn add`` exported by the cell's glue and a
``#[pyfunction] add2`` with PyO3's own wrapper) is built with REV's package and with this
tree's, in the debug and release profiles, each in a fresh Python process (in a cache of
the benchmark's own, removed at exit); the four modules are then loaded side by side into
this process and called in turns: best of ``--repeats`` × 100,000 calls of ``add(1, 2)``,
with ``operator.add`` as the floor. Loading both builds into one process and alternating
between them is what makes a difference of a few nanoseconds visible on a shared machine.

The default baseline is the commit before sync calls entered the tokio runtime's context
(so that ``tokio::spawn`` works in a plain ``pub fn``): what that cost, and what is left
of it.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import operator
import os
import shutil
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from glue_cost import ROOT, checkout, current
from report import machine, publish, scratch_cache

#: The commit that made sync calls enter the runtime's context is 6f41c6d.
DEFAULT_BASELINE = "6f41c6d^"

CELL = """
use pyo3::prelude::*;
pub fn add(a: u64, b: u64) -> u64 { a + b }
#[pyfunction]
pub fn add2(a: u64, b: u64) -> u64 { a + b }
"""

BUILD = """
import json, sys
from ipy_rustasync._pipeline import cells
c = cells.compile_cell(sys.stdin.read(), release=sys.argv[1] == "release")
print(json.dumps({"path": c.module.__file__, "name": c.module.__name__, "package": cells.__file__}))
"""

CALLS = 100_000


def build(tree: Path, release: bool) -> ModuleType:
    """Builds the cell with the package in ``tree`` (in a fresh process) and loads it here."""
    out = subprocess.run(
        [sys.executable, "-c", BUILD, "release" if release else "debug"],
        input=CELL,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `python -c` puts the working directory first on sys.path
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"build failed ({tree}):\n{out.stderr[-4000:]}")
    built = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(built["package"]).is_relative_to(tree), (built["package"], tree)
    spec = importlib.util.spec_from_file_location(built["name"], built["path"])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call_ns(function: Callable[[int, int], object]) -> float:
    """Nanoseconds per ``function(1, 2)``, over ``CALLS`` calls."""
    return timeit.timeit(lambda: function(1, 2), number=CALLS) / CALLS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", metavar="REV", default=DEFAULT_BASELINE)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scratch_cache("ira-sync-cache-")
    old, where = checkout(args.baseline)
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    new = current()

    rows: dict[str, Callable[[int, int], object]] = {"`operator.add(1, 2)`": operator.add}
    for profile in ("debug", "release"):
        modules = {label: build(tree, profile == "release") for label, tree in ((old, where), (new, ROOT))}
        for function, kind in (("add", "`pub fn`"), ("add2", "`#[pyfunction]`")):
            for label, module in modules.items():
                rows[f"{profile} | {kind} | {label}"] = getattr(module, function)
                assert rows[f"{profile} | {kind} | {label}"](1, 2) == 3

    best = dict.fromkeys(rows, float("inf"))
    for _ in range(args.repeats):
        for key, call in rows.items():
            best[key] = min(best[key], per_call_ns(call))

    lines = [
        machine(),
        "",
        f"Best of {args.repeats} × {CALLS:,} calls `add(1, 2)` per row, rows in turns in one process "
        f"(each timing includes the `lambda` that makes the call; `operator.add` through the same "
        f"`lambda`: {best['`operator.add(1, 2)`']:.0f} ns). {old}: `{args.baseline}`; {new}: this tree.",
        "",
        f"| profile | function | {old} | {new} | {new} / {old} |",
        "|---|---|---|---|---|",
    ]
    for profile in ("debug", "release"):
        for kind in ("`pub fn`", "`#[pyfunction]`"):
            before, after = best[f"{profile} | {kind} | {old}"], best[f"{profile} | {kind} | {new}"]
            lines.append(f"| {profile} | {kind} | {before:.0f} ns | {after:.0f} ns | {after / before:.2f}× |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
