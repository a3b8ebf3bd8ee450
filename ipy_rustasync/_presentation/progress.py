"""Build feedback: one status display that updates in place while cargo works.

It follows cargo's JSON messages (``cargo.Watcher``): every finished unit, fresh or
compiled, is a ``compiler-artifact``, so "n of N" counts exactly (N comes from the
last build with the same dependencies, ``cargo.expected_units``); the crate being
compiled now comes from cargo's ``Compiling NAME`` status line.

Three forms, chosen by where the output goes:

- Jupyter kernel: one display output (a progress bar in HTML, a line in plain
  text) updated in place, replaced at the end by the one-line summary.
- terminal: one carriage-returned line.
- not a terminal (nbconvert, CI, a log): nothing for quick builds, then a plain line
  every few seconds at most, so a long build shows signs of life without filling
  the log.

Why not tqdm or ipywidgets: a widget needs the front end's widget manager and
renders as nothing in nbconvert/nbclient outputs and saved notebooks; an updated
``display_data`` works in every front end and is saved with the notebook.
"""

from __future__ import annotations

import html
import re
import sys
import time
from typing import Any

_COMPILING = re.compile(r"^\s*Compiling (?P<name>\S+) v")

#: Seconds between plain status lines when output is not a terminal.
PLAIN_INTERVAL = 5.0


class Progress:
    """Shows "compiling n/N: crate (elapsed)" while a build runs (a ``cargo.Watcher``)."""

    def __init__(self, *, in_kernel: bool, interval: float = 0.25) -> None:
        self.total: int | None = None
        self.in_kernel = in_kernel
        self.in_place = in_kernel or sys.stdout.isatty()
        self.interval = interval if self.in_place else PLAIN_INTERVAL
        self.done = 0
        self.current = ""
        self.start = time.perf_counter()
        self._last = 0.0
        self._handle: Any = None
        self._shown = False

    # --- cargo.Watcher -------------------------------------------------------------------

    def expect(self, units: int | None) -> None:
        self.total = units

    def line(self, text: str) -> None:
        match = _COMPILING.match(text)
        if match:
            self.current = match["name"]
            self._tick()

    def message(self, message: dict[str, Any]) -> None:
        if message.get("reason") == "compiler-artifact":
            self.done += 1
            if not message.get("fresh"):
                self._tick()

    # --- display ---------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.perf_counter()
        if not self.in_place and now - self.start < self.interval:
            return  # quick builds print only their summary
        if now - self._last >= self.interval:
            self._last = now
            self._show()

    def status(self) -> str:
        total = max(self.total, self.done + 1) if self.total else None
        of = f"{self.done}/{total}" if total else f"{self.done} done"
        now = f": {self.current}" if self.current else ""
        return f"rust_async: compiling {of}{now} ({time.perf_counter() - self.start:.1f} s)"

    def _html(self) -> str:
        total = max(self.total, self.done + 1) if self.total else None
        bar = (
            f"<progress value='{self.done}' max='{total}' style='width: 12em; vertical-align: middle'></progress> "
            if total
            else ""
        )
        return (
            f"<div style='font-family: var(--jp-code-font-family, monospace)'>{bar}{html.escape(self.status())}</div>"
        )

    def _show(self) -> None:
        text = self.status()
        if not self.in_place:
            print(text)
            return
        self._shown = True
        if self.in_kernel:
            from IPython.display import display

            data = {"text/plain": text, "text/html": self._html()}
            if self._handle is None:
                self._handle = display(data, raw=True, display_id=True)
            else:
                self._handle.update(data, raw=True)
        else:
            sys.stdout.write("\r\x1b[2K" + text)
            sys.stdout.flush()

    def clear(self) -> None:
        """Removes the status display (the build failed; the error says the rest)."""
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
        elif self._shown:
            sys.stdout.write("\r\x1b[2K")
            sys.stdout.flush()

    def finish(self, summary: str, html: str | None = None) -> None:
        """Replaces the status display with ``summary`` (printed as a new line if none was
        shown). ``html`` is what a notebook shows instead (alongside ``summary`` in one
        display, so a text-only front end still reads the line)."""
        if self.in_kernel and html is not None:
            data = {"text/plain": summary, "text/html": html}
            if self._handle is not None:
                self._handle.update(data, raw=True)
            else:
                from IPython.display import display

                display(data, raw=True)
        elif self._handle is not None:
            self._handle.update({"text/plain": summary}, raw=True)
        elif self._shown:
            sys.stdout.write("\r\x1b[2K" + summary + "\n")
            sys.stdout.flush()
        else:
            print(summary)
