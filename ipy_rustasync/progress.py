"""Build feedback: one status line that updates in place while cargo works.

Cargo prints ``Compiling NAME vVERSION`` per crate; the count against the crates in
the cell's lock gives "n of N". In a Jupyter kernel the line is one display output
updated in place; in a terminal it is a carriage-returned line; where output is not
a terminal (a pipe, a log, CI) it is a plain line every few seconds at most, so a
long build still shows signs of life without filling the log. Either way it ends as
a one-line summary.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

_COMPILING = re.compile(r"^\s*Compiling (?P<name>\S+) v")

#: Seconds between plain status lines when output is not a terminal.
PLAIN_INTERVAL = 5.0


class Progress:
    """Shows "compiling n/N: crate (elapsed)" while a build runs."""

    def __init__(self, total: int | None, *, in_kernel: bool, interval: float = 0.25) -> None:
        self.total = total
        self.in_kernel = in_kernel
        self.in_place = in_kernel or sys.stdout.isatty()
        self.interval = interval if self.in_place else PLAIN_INTERVAL
        self.count = 0
        self.current = ""
        self.start = time.perf_counter()
        self._last = 0.0
        self._handle: Any = None
        self._shown = False

    def line(self, text: str) -> None:
        match = _COMPILING.match(text)
        if not match:
            return
        self.count += 1
        self.current = match["name"]
        now = time.perf_counter()
        if not self.in_place and now - self.start < self.interval:
            return  # quick builds print only their summary
        if now - self._last >= self.interval:
            self._last = now
            self._show(self._status())

    def _status(self) -> str:
        of = f"/{max(self.total, self.count)}" if self.total else ""
        return f"rust_async: compiling {self.count}{of}: {self.current} ({time.perf_counter() - self.start:.1f} s)"

    def _show(self, text: str) -> None:
        if not self.in_place:
            print(text)
            return
        self._shown = True
        if self.in_kernel:
            from IPython.display import display

            if self._handle is None:
                self._handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self._handle.update({"text/plain": text}, raw=True)
        else:
            sys.stdout.write("\r\x1b[2K" + text)
            sys.stdout.flush()

    def clear(self) -> None:
        """Removes the status line (the build failed; the error says the rest)."""
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
        elif self._shown:
            sys.stdout.write("\r\x1b[2K")
            sys.stdout.flush()

    def finish(self, summary: str) -> None:
        """Replaces the status line with ``summary`` (printed as a new line if none was shown)."""
        if self._handle is not None:
            self._handle.update({"text/plain": summary}, raw=True)
        elif self._shown:
            sys.stdout.write("\r\x1b[2K" + summary + "\n")
            sys.stdout.flush()
        else:
            print(summary)
