"""What every benchmark report shares: the machine line it starts with, and printing
the finished text and writing it to ``--out``."""

from __future__ import annotations

import os
import platform
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
