"""What a build did, for whoever asks: the ``ipy_rustasync`` logger tree.

Every module logs to ``logging.getLogger(__name__)`` (``ipy_rustasync._pipeline.build``,
``ipy_rustasync._pipeline.cells``, ...), so one call turns them all on::

    import logging
    logging.basicConfig()  # a handler that prints to stderr (the cell's output)
    logging.getLogger("ipy_rustasync").setLevel("DEBUG")

At DEBUG each build records its content hash, whether the cache had the module, the
cargo command line and the time of each phase (``hash``, ``cargo``, ``install``,
``load``, ``bind``). The package itself adds only a ``NullHandler`` (``__init__``):
a library does not decide where its records go, and at the default level nothing
is printed. User-facing messages stay where they were (printed lines, ``warnings``,
exceptions): the log is for finding out why a build was slow or rebuilt.

A phase's record carries ``cell_module``, ``phase`` and ``seconds`` as attributes
(``record.phase``), so a handler or a test can read them without parsing text.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType


class Phase:
    """Times a ``with`` block and records it at DEBUG: ``ira_...: cargo done in 0.512 s``.

    ``module`` may be set inside the block, for a phase that finds the module's name
    (hashing)."""

    def __init__(self, log: logging.Logger, phase: str, module: str = "") -> None:
        self.log = log
        self.phase = phase
        self.module = module
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Phase:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self._start
        self.log.debug(
            "%s: %s %s in %.3f s",
            self.module or "cell",
            self.phase,
            "done" if kind is None else f"failed ({kind.__name__})",
            self.seconds,
            extra={"cell_module": self.module, "phase": self.phase, "seconds": self.seconds},
        )
