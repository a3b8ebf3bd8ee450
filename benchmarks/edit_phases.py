"""Where the time of a warm edit and of an unchanged re-run goes, phase by phase.

    python benchmarks/edit_phases.py [--repeat N] [--reruns N] [--out FILE]

The cell is edit_compare.py's (one ``pub async fn greet`` and one ``pub fn add`` whose
constant K an edit changes). Every run is ``InteractiveShell.run_cell`` of the whole
``%%rust_async`` cell in one IPython shell, as in edit_compare.py, and ``add(2, 3)`` is
checked afterwards, so a stale module fails the benchmark. Uses
``IPY_RUSTASYNC_CACHE_DIR`` (default ``.test-cache/bench-cache``; a cold cache first
builds the shared dependencies, about 40 s, outside the measurement).

Per warm edit (``--repeat``, default 5; medians shown):

- the package's own phase timings, from the ``ipy_rustasync`` logger at DEBUG
  (``hash``, ``cargo``, ``install``, ``load``, ``bind``, and the magic's total);
  what is left of ``run_cell`` is the magic's own work and IPython's;
- cargo's freshness checks: the same ``cargo rustc`` command run again on the crate
  just built, with nothing to do (every unit fresh; the build removed the cell's own
  files from the target, so one untimed run puts them back first, and they are removed
  again at the end);
- rustc's split: the crate compiled once more (its ``lib.rs`` touched) through
  ``time_passes.sh`` as ``RUSTC_WORKSPACE_WRAPPER``, which adds ``-Z time-passes``
  (``RUSTC_BOOTSTRAP=1`` for the cell's crate alone: the dependencies keep their
  fingerprints), grouped into front end (parse, expansion, name resolution), type and
  borrow checking (with lints), code generation (monomorphization, LLVM IR, LLVM's
  passes), link (``run_linker`` and the rest of ``link``) and other (incremental
  cache, dep-info);
- the same rustc command line (from ``cargo -v``) run directly, without cargo, on the
  source with K changed in place: rustc alone, as a tool calling it directly would
  pay; once as cargo runs it and once without ``-C incremental`` (every cell is a new
  crate name, so the incremental cache it writes is never reused).

Per unchanged re-run (``--reruns``, default 30): the logger's phases again (``hash``,
``load``, ``bind``, the magic's total), plus the steps in between timed on their own
(``Context.load()``, the cache lookup with its checksum of the module file, which
hashes the module only the first time a process checks it, and that hashing on its own), and a
trivial Python cell for IPython's own cost of ``run_cell``.

Absolute times vary run to run on a shared machine; the shares hold better.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edit_compare import CELL_CACHE, OURS_CELL, captured_fds
from report import TIME_PASSES, machine, publish, rustc_passes

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

HERE = Path(__file__).resolve().parent


#: rustc's top-level passes, grouped (a pass not named here counts as "other").
PASS_GROUPS: dict[str, tuple[str, ...]] = {
    "front end: parse, macro expansion, name resolution": ("parse_crate", "macro_expand_crate", "resolve_crate"),
    "type + borrow checking, lints": (
        "misc_checking_1",
        "type_check_crate",
        "MIR_borrow_checking",
        "lint_checking",
        "misc_checking_3",
    ),
    "code generation: monomorphization, LLVM IR, LLVM passes": ("codegen_crate", "finish_ongoing_codegen"),
    "link (run_linker and around it)": ("link",),
}


class Recorder(logging.Handler):
    """Keeps the ``ipy_rustasync`` logger's phase timings (``record.phase``) and the
    magic's total (``... the cell took 0.512 s ...``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.phases: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        phase = getattr(record, "phase", None)
        if phase is not None:
            self.phases[phase] = self.phases.get(phase, 0.0) + float(getattr(record, "seconds", 0.0))
        elif record.getMessage().split(": ", 1)[-1].startswith("the cell took"):
            args = record.args if isinstance(record.args, tuple) else ()
            self.phases["magic"] = float(str(args[1]))

    def take(self) -> dict[str, float]:
        taken, self.phases = self.phases, {}
        return taken


@dataclass
class Samples:
    """Seconds per named step, one list entry per run."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, seconds: float) -> None:
        self.values[name].append(seconds)

    def median(self, name: str) -> float:
        found = self.values.get(name)
        return statistics.median(found) if found else 0.0


def grouped(found: dict[str, float]) -> dict[str, float]:
    groups = {name: sum(found.get(p, 0.0) for p in names) for name, names in PASS_GROUPS.items()}
    groups["other (incremental cache, dep-info, ...)"] = max(0.0, found.get("total", 0.0) - sum(groups.values()))
    groups["rustc total"] = found.get("total", 0.0)
    return groups


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def rustc_line(cargo_verbose: str, crate: str = "ira_") -> list[str]:
    """The rustc command line of the crate whose name starts with ``crate`` from
    ``cargo -v`` (``Running `...` ``), without the wrapper in front of it."""
    for line in cargo_verbose.splitlines():
        m = re.match(r"\s*Running `(.*)`$", line)
        if m and f"--crate-name {crate}" in m[1]:
            words = shlex.split(m[1])
            return words[1:] if words[0] == str(TIME_PASSES) else words
    raise AssertionError(f"no rustc command line in cargo's output:\n{cargo_verbose[-3000:]}")


def without_incremental(line: list[str]) -> list[str]:
    """``line`` without its ``-C incremental=DIR``."""
    kept: list[str] = []
    for word in line:
        if word.startswith("incremental=") and kept and kept[-1] == "-C":
            kept.pop()
            continue
        kept.append(word)
    return kept


class Probe:
    """The shell, the logger and the measurements around it."""

    def __init__(self, shell: InteractiveShell, recorder: Recorder) -> None:
        self.shell = shell
        self.recorder = recorder

    def run(self, k: int, *, expect_cached: bool) -> tuple[float, dict[str, float]]:
        """Runs the cell for constant ``k``: seconds of ``run_cell`` and the logged phases."""
        self.recorder.take()
        text = f"%%rust_async\n{OURS_CELL.format(k=k)}"
        with captured_fds() as out:
            start = time.perf_counter()
            result = self.shell.run_cell(text, store_history=False)  # type: ignore[no-untyped-call]
            elapsed = time.perf_counter() - start
        if not result.success:
            print(out.text, file=sys.stderr)
            result.raise_error()
        assert self.shell.user_ns["add"](2, 3) == 5 + k, "the edit did not take effect"
        magics = self.shell.magics_manager.registry["RustAsyncMagics"]
        assert magics.loaded[-1].cached == expect_cached, (k, expect_cached)
        return elapsed, self.recorder.take()

    def last_module(self) -> str:
        magics = self.shell.magics_manager.registry["RustAsyncMagics"]
        return str(magics.loaded[-1].module)


def measure_crate(module: str, k: int, samples: Samples) -> None:
    """cargo no-op, rustc's passes and rustc run directly, on the crate just built."""
    from ipy_rustasync._pipeline import cargo
    from ipy_rustasync._settings import toolchain
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import registry

    context = Context.load()
    root = context.cache.crate_dir(module)
    # As the build ran cargo (the shared runtime's flags, or the dependencies would rebuild
    # under the cells' feet, and every replay's recipe would go stale).
    shared = toolchain.shared_runtime()
    cmd = cargo.cargo_command(
        root / "Cargo.toml",
        context.target,
        release=False,
        extra=registry.configure(root, context.settings.offline_crates),
        shared_runtime=shared,
    )
    env = cargo.build_env(shared_runtime=shared)
    # The build removed the cell's own files from the shared target: put them back first.
    subprocess.run(cmd, cwd=root, env=env, capture_output=True, check=True)
    noop = timed(lambda: subprocess.run(cmd, cwd=root, env=env, capture_output=True, check=True))
    samples.add("cargo no-op (freshness checks of every unit)", noop)

    lib = root / "src" / "lib.rs"
    lib.touch()
    verbose = [*cmd[: cmd.index("--")], "-v", *cmd[cmd.index("--") :]] if "--" in cmd else [*cmd, "-v"]
    out = subprocess.run(
        verbose,
        cwd=root,
        env={**env, "RUSTC_WORKSPACE_WRAPPER": str(TIME_PASSES)},
        capture_output=True,
        text=True,
        check=True,
    )
    for name, seconds in grouped(rustc_passes(out.stderr + out.stdout)).items():
        samples.add(f"rustc: {name}", seconds)
    rustc = rustc_line(out.stderr)

    # rustc alone on an edited source: K changed in place, as cargo would compile it.
    source = lib.read_text()
    assert f"+ {k} }}" in source
    for label, line in (
        ("rustc run directly (cargo's flags)", rustc),
        ("rustc run directly, no -C incremental", without_incremental(rustc)),
    ):
        k += 1_000_000
        lib.write_text(re.sub(r"\+ \d+ \}", f"+ {k} }}", source, count=1))
        start = time.perf_counter()
        subprocess.run(line, cwd=root, env=env, capture_output=True, check=True)
        samples.add(label, time.perf_counter() - start)
    lib.write_text(source)
    context.cache.remove_cell_build(context.target, module)  # as the build left the target


def unchanged_steps(module: str, samples: Samples, n: int) -> None:
    """The steps of a cached re-run the logger does not time, on their own."""
    from ipy_rustasync._settings.cache import _sha256
    from ipy_rustasync._settings.context import Context

    context = Context.load()
    path = context.cache.module_path(module)
    for _ in range(n):
        samples.add("Context.load() (settings, env, config file)", timed(lambda: Context.load().cache))
        samples.add(
            "cache lookup: stat + checksum of the module file", timed(lambda: context.cache.trusted_module(module))
        )
        samples.add("  of which sha256 of the module file", timed(lambda: _sha256(path)))
    samples.add("module file size (MB)", path.stat().st_size / 1e6)


def ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def table(title: str, rows: list[tuple[str, float]], total: float) -> list[str]:
    lines = [f"| {title} | median | share |", "|---|---|---|"]
    for name, value in rows:
        share = f"{value / total * 100:.0f} %" if total and not name.startswith("  ") else ""
        lines.append(f"| {name} | {ms(value)} | {share} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm edits (default 5)")
    parser.add_argument("--reruns", type=int, default=30, help="unchanged re-runs (default 30)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    os.environ.setdefault("IPY_RUSTASYNC_CACHE_DIR", str(CELL_CACHE))
    load_before = os.getloadavg()[0]

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    shell_config = Config()
    shell_config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=shell_config)
    shell.run_cell("%load_ext ipy_rustasync", store_history=False).raise_error()  # type: ignore[no-untyped-call]
    recorder = Recorder()
    logger = logging.getLogger("ipy_rustasync")
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    probe = Probe(shell, recorder)

    base = random.SystemRandom().randrange(10**6, 10**9)
    print("first build (warms the shell and the target directory) ...", flush=True)
    probe.run(base, expect_cached=False)

    edit = Samples()
    for i in range(1, args.repeat + 1):
        k = base + i
        elapsed, phases = probe.run(k, expect_cached=False)
        edit.add("run_cell", elapsed)
        for name, seconds in phases.items():
            edit.add(name, seconds)
        measure_crate(probe.last_module(), k, edit)
        print(f"edit {i}/{args.repeat}: {elapsed:.3f} s", flush=True)

    last = base + args.repeat
    rerun = Samples()
    for _ in range(args.reruns):
        elapsed, phases = probe.run(last, expect_cached=True)
        rerun.add("run_cell", elapsed)
        for name, seconds in phases.items():
            rerun.add(name, seconds)
    unchanged_steps(probe.last_module(), rerun, args.reruns)
    for _ in range(args.reruns):
        rerun.add("IPython run_cell of `x = 1`", timed(lambda: shell.run_cell("x = 1", store_history=False)))  # type: ignore[no-untyped-call]

    # --- the warm edit ---
    e = edit.median
    total = e("run_cell")
    # A warm edit replays rustc without cargo (`rustc`, rustc_direct.py); cargo runs otherwise
    # (`cargo`, e.g. with IPY_RUSTASYNC_DIRECT_RUSTC=0). One of the two per edit.
    cargo_s, rustc_s = e("cargo") + e("rustc"), e("rustc: rustc total")
    compile_parts = [
        ("content hash (`hash`)", e("hash")),
        ("lock, crate files written, cargo started (not logged: magic − the rest)", 0.0),
        ("compiling: rustc replayed (`rustc`) or `cargo rustc` (`cargo`), of which:", cargo_s),
        ("  around rustc: starting it, and cargo's checks when it ran (compiling − rustc)", cargo_s - rustc_s),
        (
            "  rustc: front end (parse, expansion, resolution)",
            e("rustc: front end: parse, macro expansion, name resolution"),
        ),
        ("  rustc: type + borrow checking, lints", e("rustc: type + borrow checking, lints")),
        (
            "  rustc: code generation + LLVM",
            e("rustc: code generation: monomorphization, LLVM IR, LLVM passes"),
        ),
        ("  rustc: link", e("rustc: link (run_linker and around it)")),
        ("  rustc: other (incremental cache, dep-info)", e("rustc: other (incremental cache, dep-info, ...)")),
        ("copy into the cache + checksum (`install`)", e("install")),
        ("module load: dlopen + PyInit (`load`)", e("load")),
        ("binding names into the shell (`bind`)", e("bind")),
        ("IPython and the magic around them (run_cell − the logged phases)", 0.0),
    ]
    logged = e("hash") + cargo_s + e("install") + e("load") + e("bind")
    compile_parts[1] = (compile_parts[1][0], max(0.0, e("magic") - logged))
    compile_parts[-1] = (compile_parts[-1][0], max(0.0, total - e("magic")))
    biggest = max(
        (p for p in compile_parts if p[0].startswith("  ") and "of which" not in p[0]),
        key=lambda p: p[1],
    )

    # --- the unchanged re-run ---
    r = rerun.median
    rtotal = r("run_cell")
    rerun_rows = [
        ("content hash (`hash`)", r("hash")),
        ("Context.load() (settings, env, config file)", r("Context.load() (settings, env, config file)")),
        ("cache lookup: stat + checksum of the module file", r("cache lookup: stat + checksum of the module file")),
        (
            "  sha256 of the module file, timed alone (the lookup pays it once per process and file)",
            r("  of which sha256 of the module file"),
        ),
        ("module load (already in sys.modules) (`load`)", r("load")),
        ("binding names into the shell (`bind`)", r("bind")),
        (
            "rest of the magic: argument parsing, lock sidecar, summary line",
            max(
                0.0,
                r("magic")
                - r("hash")
                - r("load")
                - r("bind")
                - r("Context.load() (settings, env, config file)")
                - r("cache lookup: stat + checksum of the module file"),
            ),
        ),
        ("IPython around the magic (run_cell − magic)", max(0.0, rtotal - r("magic"))),
        ("  for comparison: IPython run_cell of `x = 1`", r("IPython run_cell of `x = 1`")),
    ]
    biggest_rerun = max((row for row in rerun_rows if not row[0].startswith("  ")), key=lambda row: row[1])

    lines = [
        machine(),
        "",
        f"### Warm edit of a small cell (median of {args.repeat}): {ms(total)} from `run_cell` to callable",
        "",
        *table("phase", compile_parts, total),
        "",
        "| the same compile, measured on its own | median |",
        "|---|---|",
        f"| cargo no-op on the crate just built (freshness checks only) | {ms(e('cargo no-op (freshness checks of every unit)'))} |",
        f"| rustc alone, as cargo runs it (`-Z time-passes` total) | {ms(rustc_s)} |",
        f"| rustc run directly with cargo's flags, no cargo | {ms(e('rustc run directly (cargo' + chr(39) + 's flags)'))} |",
        f"| rustc run directly, without `-C incremental` | {ms(e('rustc run directly, no -C incremental'))} |",
        "",
        f"Biggest phase of the warm edit: **{biggest[0].strip()}** ({ms(biggest[1])}, "
        f"{biggest[1] / total * 100:.0f} % of the edit).",
        "",
        f"### Unchanged re-run (median of {args.reruns}): {ms(rtotal)} from `run_cell` to bound",
        "",
        *table("step", rerun_rows, rtotal),
        "",
        f"Module file: {r('module file size (MB)'):.2f} MB. Biggest step of the re-run: **{biggest_rerun[0]}** "
        f"({ms(biggest_rerun[1])}).",
        "",
        f"Load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
