"""The exceptions users see. The Rust bridge raises the first two by importing them
from here, so one class serves every compiled cell (`except RustPanic` works for all)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipy_rustasync._presentation.diagnostics import Diagnostic


class RustPanic(Exception):
    """Rust code panicked; the kernel lives on.

    Attributes: ``rust_message`` (the panic's own message) and ``cell_line`` (the line
    where it happened as the editor numbers it, the ``%%rust_async`` line being line 1;
    in ``rust_module`` source, the source's own line; ``None`` when it was outside the
    cell's code).
    """

    rust_message: str
    cell_line: int | None


class RustError(Exception):
    """A cell function returned ``Err(e)``; the message is ``e.to_string()``.

    ``rust_type`` names the Rust error type.
    """

    rust_type: str


class RustCompileError(Exception):
    """The cell did not compile. The message is a headline ("2 errors; first: ...")
    and rustc's diagnostics, on the cell's own lines.

    An exception (not a printed message) so that "Run All" stops at the broken cell.
    """

    def __init__(
        self,
        headline: str,
        diagnostics: Sequence[Diagnostic] = (),
        *,
        texts: Sequence[str] = (),
        htmls: Sequence[str] = (),
    ) -> None:
        #: ``ipy_rustasync._presentation.diagnostics.Diagnostic`` records: level, message, cell line...
        self.diagnostics = list(diagnostics)
        self.headline = headline
        #: each diagnostic as plain text and as HTML (``diagnostics.render``, by whoever
        #: raises this: the exceptions sit below the presentation layer, not on it)
        self.texts, self.htmls = list(texts), list(htmls)
        body = "\n\n".join(self.texts)
        super().__init__(f"{headline}\n\n{body}" if body else headline)
        #: set once the diagnostics were displayed (as HTML in a notebook), so the
        #: traceback is only the headline instead of the same text again
        self.shown = False

    def html(self) -> str:
        blocks = "".join(self.htmls)
        return f"<div><b>rust_async: {html.escape(self.headline)}</b>{blocks}</div>"

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a Python traceback, which would only point
        # into ipy_rustasync's own code.
        return [f"RustCompileError: {self.headline}"] if self.shown else [str(self)]


class RustAsyncUsageError(Exception):
    """Bad input to the magic or the CLI (a flag, a dependency, a setting), said in
    one sentence."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ToolchainError(RustAsyncUsageError):
    """Cargo, rustc or maturin is missing or unusable."""


# Users meet these as ``ipy_rustasync.<Name>`` (the package's ``__init__`` exports them):
# tracebacks and pickles name that, not where the class happens to be defined.
for _cls in (RustPanic, RustError, RustCompileError, RustAsyncUsageError, ToolchainError):
    _cls.__module__ = "ipy_rustasync"
del _cls
