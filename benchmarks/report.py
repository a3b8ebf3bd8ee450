"""What every benchmark report shares: the machine line it starts with, printing the
finished text and writing it to ``--out``, a build cache of its own, and reading
rustc's ``-Z time-passes``."""

from __future__ import annotations

import atexit
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path


def machine() -> str:
    """``Machine: x86_64, 2 cores, Python 3.11.7, rustc 1.95.0 (...).``"""
    from ipy_rustasync._settings import toolchain  # late: the benchmarks set the cache dir first

    rustc = toolchain.rustc_version().splitlines()[0]
    return f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {rustc}."


def publish(lines: list[str], out: Path | None) -> None:
    """Prints the report and, if asked, writes it to ``out``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def scratch_cache(prefix: str) -> None:
    """Points ``IPY_RUSTASYNC_CACHE_DIR`` at a new directory removed at exit, unless it is
    set: a benchmark that builds many large cells must not leave them behind (a run once
    left 38 GB). The dependencies are then built once, in it. A SIGTERM (``timeout``,
    ``kill``) exits through ``atexit`` too, so the directory goes then as well."""
    if "IPY_RUSTASYNC_CACHE_DIR" not in os.environ:
        scratch = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
        os.environ["IPY_RUSTASYNC_CACHE_DIR"] = scratch


#: rustc, for a cell's crate alone: ``-Z time-passes`` on the stable compiler
#: (``RUSTC_BOOTSTRAP``), as cargo's ``RUSTC_WORKSPACE_WRAPPER``.
TIME_PASSES = Path(__file__).resolve().parent / "time_passes.sh"

#: ``time:   1.234; rss: ...	macro_expand_crate``
_PASS = re.compile(r"^time:\s+([\d.]+);.*\s(\S+)$")


def rustc_passes(text: str) -> dict[str, float]:
    """Seconds per pass name in rustc's ``-Z time-passes`` output (the largest, for a
    name printed more than once)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _PASS.match(line.strip())
        if m:
            found[m[2]] = max(found.get(m[2], 0.0), float(m[1]))
    return found
