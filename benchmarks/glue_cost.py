"""What the exporter's glue costs to compile, per function, against PyO3's own
``#[pyfunction]``.

    python benchmarks/glue_cost.py [--n N] [--rounds R] [--baseline REV] [--no-passes] [--out FILE]

Four cells of N (default 1,000) functions ``x + k`` each, built in debug through the
package's own build path (``compile_cell(..., force=True)``, one fresh Python process
per build, the time taken inside it around the call):

- ``fn``: not exported (the floor: parsing, type checking, the macro reading them);
- ``#[pyfunction] pub fn``: PyO3's own wrapper (the cell's macro registers it and runs
  its body in the runtime's context), the reference the ratios are taken to;
- ``pub fn``: the exporter's wrapper;
- ``pub async fn``: the exporter's coroutine wrapper.

Each cell also exports one ``tag`` function returning a fresh string, so nothing comes
from a cache (and the unexported kind makes a module). The dependencies are shared and
built once before the measurement, in a cache of the benchmark's own that is removed at
exit (unless ``IPY_RUSTASYNC_CACHE_DIR`` names one); each build's own files are removed
after it. The builds are interleaved: each of ``--rounds`` rounds builds every cell
once, in an order rotated from round to round, and the tables show medians.
Besides wall time, each build's CPU time (cargo's and rustc's, every thread) is
taken: it varies less with what else the machine runs.

``--baseline REV`` builds the same cells, in the same rounds, with the package and Rust
crates of git revision REV too (``git archive`` into a scratch directory), so old and
new are measured side by side on one machine in one run.

Unless ``--no-passes``, every build is followed by a second compile of the same crate
with rustc's ``-Z time-passes`` (``RUSTC_BOOTSTRAP=1`` on the stable compiler, for that
crate alone through ``time_passes.sh`` as ``RUSTC_WORKSPACE_WRAPPER``), which splits
rustc's time into macro expansion (the cell's macro and every PyO3 macro it leaves
behind), type and borrow checking, and the rest (monomorphization, codegen, LLVM,
linking). The cell's macro alone: ``cargo test -p ipy-rustasync-macros --lib --
--ignored --nocapture expansion_time`` in ``rust/``.

Absolute times vary run to run on a shared machine; the ratios, taken from builds that
ran next to each other, hold better.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import TIME_PASSES, machine, publish, rustc_passes, scratch_cache

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name, the Rust of function k
VARIANTS = {
    "fn": "#[allow(dead_code)]\nfn f{k}(x: i64) -> i64 {{ x + {k} }}\n",
    "#[pyfunction] pub fn": "#[pyfunction]\npub fn f{k}(x: i64) -> i64 {{ x + {k} }}\n",
    "pub fn": "pub fn f{k}(x: i64) -> i64 {{ x + {k} }}\n",
    "pub async fn": "pub async fn f{k}(x: i64) -> i64 {{ x + {k} }}\n",
}
REFERENCE = "#[pyfunction] pub fn"
AIMS = {"pub fn": 1.0, "pub async fn": 1.3}


def cell(variant: str, n: int) -> str:
    """A cell of ``n`` functions, tagged so that no cache has it (and exporting one
    function more, ``tag``, so that the unexported kind makes a module too)."""
    head = (
        f'#[allow(unused_imports)]\nuse pyo3::prelude::*;\npub fn tag() -> &\'static str {{ "{uuid.uuid4().hex}" }}\n'
    )
    return head + "".join(VARIANTS[variant].format(k=k) for k in range(n))


BUILD = textwrap.dedent(
    """
    import json, resource, shutil, subprocess, sys, time
    from ipy_rustasync._pipeline import cargo, cells
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import registry
    source = sys.stdin.read()
    def cpu():
        used = resource.getrusage(resource.RUSAGE_CHILDREN)  # cargo and the rustc it waited for
        return used.ru_utime + used.ru_stime
    t, c0 = time.perf_counter(), cpu()
    c = cells.compile_cell(source, force=True, release=False)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c0
    assert not c.build.cached
    result = {"seconds": seconds, "cpu": cpu_seconds, "exports": len(c.exports), "package": cells.__file__}
    if sys.argv[1] == "passes":
        # The same cargo command once more, through a RUSTC_WORKSPACE_WRAPPER that adds
        # -Z time-passes: the wrapper applies to the cell's crate alone, the only one
        # that recompiles (a RUSTC_BOOTSTRAP for all of cargo would rebuild PyO3).
        context = Context.load()
        root = context.cache.crate_dir(c.build.module)
        cmd = cargo.cargo_command(root / "Cargo.toml", context.target, release=False,
                                  extra=registry.configure(root, context.settings.offline_crates))
        env = {**cargo.build_env(), "RUSTC_WORKSPACE_WRAPPER": sys.argv[2]}
        (root / "src" / "lib.rs").touch()  # so that cargo compiles it again
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-4000:]
        result["passes"] = out.stderr + out.stdout
    # What this cell left: its crate and module (the build already took its files out of
    # the shared target; the -Z time-passes compile put them back). A thousand-function
    # debug cell leaves hundreds of MB, and a run builds dozens.
    context = Context.load()
    shutil.rmtree(context.cache.crate_dir(c.build.module), ignore_errors=True)
    for path in context.cache.modules.glob(c.build.module + "*"):
        path.unlink()
    if hasattr(context.cache, "remove_cell_build"):
        for target in context.cache.root.glob("target*"):
            context.cache.remove_cell_build(target, c.build.module)
    else:  # a baseline from before it: the cell's files by name, in every profile folder
        for found in context.cache.root.glob("target*/*/**/*" + c.build.module + "*"):
            shutil.rmtree(found, ignore_errors=True) if found.is_dir() else found.unlink(missing_ok=True)
    print(json.dumps(result))
    """
)


def build(tree: Path, source: str, with_passes: bool = False) -> dict[str, Any]:
    """Builds ``source`` with the package in ``tree``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", BUILD, *(["passes", str(TIME_PASSES)] if with_passes else ["plain"])],
        input=source,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,  # `python -c` puts the working directory first on sys.path
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"build failed ({tree}):\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(tree), (result["package"], tree)
    return result


@dataclass
class Series:
    """One cell kind built with one package: seconds per round."""

    seconds: list[float] = field(default_factory=list)
    #: CPU seconds of cargo and rustc (user + system, every thread)
    cpu: list[float] = field(default_factory=list)
    #: rustc's -Z time-passes: macro expansion, type and borrow checking, the rest
    #: (monomorphization, codegen, LLVM, linking)
    expand: list[float] = field(default_factory=list)
    check: list[float] = field(default_factory=list)
    rest: list[float] = field(default_factory=list)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(mine: list[float], theirs: list[float]) -> str:
    """``1.23× (1.10–1.31×)``: the ratio of the medians, and the range of the per-round ratios."""
    rounds = [a / b for a, b in zip(mine, theirs, strict=True)]
    return f"{med(mine) / med(theirs):.2f}× ({min(rounds):.2f}–{max(rounds):.2f}×)"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def checkout(rev: str) -> tuple[str, Path]:
    """The short hash of ``rev`` and its package and Rust crates in a scratch directory."""
    short = git("rev-parse", "--short", rev)
    where = Path(tempfile.mkdtemp(prefix=f"ira-glue-{short}-"))
    archive = subprocess.run(
        ["git", "archive", rev, "ipy_rustasync", "rust"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return short, where


def current() -> str:
    """This tree's commit, with ``+`` when its package or crates have uncommitted changes
    (``this tree`` outside a git checkout, or where git cannot read it)."""
    try:
        dirty = git("status", "--porcelain", "--", "ipy_rustasync", "rust")
        return git("rev-parse", "--short", "HEAD") + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "this tree"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="functions per cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also build with the package of this git revision")
    parser.add_argument("--no-passes", action="store_true", help="skip rustc's -Z time-passes split")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scratch_cache("ira-glue-cache-")
    with_passes = not args.no_passes

    trees: dict[str, Path] = {}
    if args.baseline:
        short, where = checkout(args.baseline)
        trees[short] = where
        atexit.register(shutil.rmtree, where, ignore_errors=True)
    trees[current()] = ROOT
    # The shared dependencies and each package's bridge, built outside the measurement.
    for tree in trees.values():
        build(tree, cell("pub async fn", 1))

    runs = [(label, variant) for label in trees for variant in VARIANTS]
    series = {run: Series() for run in runs}
    for round_ in range(args.rounds):
        shift = round_ * len(runs) // max(args.rounds, 1)
        for label, variant in runs[shift:] + runs[:shift]:
            result = build(trees[label], cell(variant, args.n), with_passes)
            expected = 1 + (0 if variant == "fn" else args.n)
            assert result["exports"] == expected, (label, variant, result["exports"])
            s = series[(label, variant)]
            s.seconds.append(result["seconds"])
            s.cpu.append(result["cpu"])
            said = f"round {round_ + 1}: {label} {variant}: {s.seconds[-1]:.2f} s, CPU {s.cpu[-1]:.2f} s"
            if with_passes:
                found = rustc_passes(result["passes"])
                s.expand.append(found["macro_expand_crate"])
                s.check.append(found["type_check_crate"] + found["MIR_borrow_checking"])
                s.rest.append(found["total"] - s.expand[-1] - s.check[-1])
                said += (
                    f"; rustc: expansion {s.expand[-1]:.2f} s, checking {s.check[-1]:.2f} s,"
                    f" the rest {s.rest[-1]:.2f} s"
                )
            print(said, file=sys.stderr, flush=True)

    lines = [
        machine(),
        "",
        f"{args.n} functions `x + k` per cell, debug profile, {args.rounds} interleaved rounds, medians. "
        "Wall: `compile_cell(force=True)` (cargo and loading the module); CPU: cargo's and rustc's "
        "user + system time (every thread), steadier than wall time on a shared machine. Ratios: to "
        "`#[pyfunction] pub fn` built with the same package in the same rounds (median of medians; "
        "in brackets the lowest and highest ratio of one round).",
    ]
    if with_passes:
        lines.append(
            "rustc's own split (wall), from a second compile of the same crate with `-Z time-passes`: "
            "macro expansion (the cell's macro and the PyO3 macros it leaves), type and borrow "
            "checking, and the rest (monomorphization, codegen, LLVM, linking)."
        )
    header = "| package | cell | wall | ratio | CPU | ratio | aim |"
    if with_passes:
        header += " rustc: expansion | checking | the rest |"
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    for label in trees:
        ref = series[(label, REFERENCE)]
        for variant in VARIANTS:
            s = series[(label, variant)]
            aim = f"≤ {AIMS[variant]:.1f}×" if variant in AIMS else ""
            row = (
                f"| {label} | `{variant}` | {med(s.seconds):.1f} s | {ratio(s.seconds, ref.seconds)} "
                f"| {med(s.cpu):.1f} s | {ratio(s.cpu, ref.cpu)} | {aim} |"
            )
            if with_passes:
                row += (
                    " | ".join(
                        f" {med(mine):.1f} s ({med(mine) / med(theirs):.2f}×)"
                        for mine, theirs in ((s.expand, ref.expand), (s.check, ref.check), (s.rest, ref.rest))
                    )
                    + " |"
                )
            lines.append(row)
    if len(trees) == 2:
        old, new = trees
        lines += ["", f"{new} against {old}, same cell, CPU:", ""]
        lines += [
            f"- `{variant}`: {ratio(series[(new, variant)].cpu, series[(old, variant)].cpu)}" for variant in VARIANTS
        ]
        lines += ["", f"{new}'s cells against {old}'s `{REFERENCE}` (when {old} is PyO3's own wrapper), CPU:", ""]
        lines += [
            f"- `{variant}`: {ratio(series[(new, variant)].cpu, series[(old, REFERENCE)].cpu)}" for variant in VARIANTS
        ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
