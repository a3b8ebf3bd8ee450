"""rustc's JSON diagnostics (cargo's ``compiler-message`` records) -> ``Diagnostic``
records on the lines of the cell the user wrote.

The generated ``src/lib.rs`` is the cell verbatim after a header, so a span's line maps
to the line the editor shows by subtracting the crate's line offset (``crate.line_offset``:
0 for a ``%%rust_async`` cell, whose magic line is line 1, so rustc's lines are already
the editor's). A span in code a macro
generated (the exporter's glue, PyO3's wrappers, ``format!``) follows its expansion
back to the cell text the macro was called on. Spans outside the cell's text (the
generated glue itself, the bridge crate, the standard library, other crates) are never
shown, notes that only point there are dropped, and so are errors about the glue alone
when the user's own error explains the failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ipy_rustasync._presentation.diagnostics.hints import hint
from ipy_rustasync._presentation.diagnostics.model import TO_LINE_END, Diagnostic, Note, Span, editor_lines
from ipy_rustasync._sources import crate

#: The cell crate's root file (``src/lib.rs``, or ``src/rust_module.rs`` for source with
#: no magic line: crate.CELL_FILES).
_CELL_FILES = frozenset(crate.CELL_FILES.values())
_LIB_LOCATION = re.compile(
    "(?:" + "|".join(re.escape(name) for name in sorted(_CELL_FILES)) + r"):(\d+):(\d+)(?:: (\d+):(\d+))?"
)
#: Diagnostics that only summarize others.
_SUMMARY = re.compile(r"^(aborting due to|\d+ warnings? emitted|For more information about)")
_MAX_NOTE_LINES = 4
#: Notes about the machinery a cell is wrapped in, not about the user's code (an async
#: function's result reaches Python through the bridge's ``IntoOutput`` impls).
_MACHINERY = re.compile(
    r"pyo3::impl_|ipy_rustasync::__private|__ira_|^the following other types implement"
    r"|to implement `IntoOutput<|^\d+ redundant requirements? hidden$"
)
#: How many macro expansions a span is followed through to reach the cell.
_MAX_EXPANSIONS = 8


def from_messages(
    messages: Iterable[dict[str, Any]],
    cell_source: str,
    module: str,
    *,
    first_line: int = 1,
    line_offset: int | None = None,
) -> list[Diagnostic]:
    """The diagnostics of a build (cargo ``compiler-message`` records), on the lines
    the editor shows.

    The cell crate's (``module``'s) own messages are all kept; other crates' only when
    they are errors (warnings from dependencies are theirs, not the user's).
    ``first_line`` is the editor's line of the source's first line (2 under a
    ``%%rust_async`` line, 1 for ``rust_module`` source); ``line_offset`` is ``src/lib.rs``'s
    line minus the editor's (by default the one ``crate`` lays the crate out with)."""
    offset = crate.line_offset(first_line) if line_offset is None else line_offset
    cell = _Cell(editor_lines(cell_source, first_line), offset, first_line)
    found: list[Diagnostic] = []
    seen: set[tuple[str, str, int | None, int | None]] = set()
    for record in messages:
        message = record.get("message")
        if record.get("reason") != "compiler-message" or not isinstance(message, dict):
            continue
        own = (record.get("target") or {}).get("name") == module
        diagnostic = _diagnostic(message, cell) if own else _foreign(message)
        if diagnostic is None:
            continue
        key = (diagnostic.level, diagnostic.message, diagnostic.line, diagnostic.column)
        if diagnostic.message == "first defined here" and found:
            # The exporter's two-part "both named `f`" error reads as one.
            previous = found[-1]
            found[-1] = replace(previous, notes=(*previous.notes, Note("note", "first defined here", diagnostic.spans)))
        elif key not in seen:  # PyO3 reports one bad argument type once per trait it tries
            seen.add(key)
            found.append(diagnostic)
    if any(d.level == "error" and not d.in_glue for d in found):
        # The user's own error says the same on their line; keep glue-only ones
        # only when nothing else explains the failure.
        found = [d for d in found if not d.in_glue]
    return found


@dataclass(frozen=True)
class _Cell:
    """The cell's lines as the editor numbers them, ``src/lib.rs``'s line minus the
    editor's, and the editor's line of the source's first line."""

    lines: tuple[str, ...]
    offset: int
    first: int = 1

    def line(self, lib_line: int) -> int | None:
        """The editor's line of ``src/lib.rs`` line ``lib_line``; None outside the cell."""
        line = lib_line - self.offset
        return line if self.first <= line <= len(self.lines) else None

    def retell(self, text: str) -> str:
        """``src/lib.rs:5:9`` inside rustc's words (e.g. ``{async block@src/lib.rs:5:9: 5:14}``)
        -> ``cell line 2:9``, or ``generated code`` outside the cell."""

        def sub(m: re.Match[str]) -> str:
            line = self.line(int(m[1]))
            if line is None:
                return "generated code"
            return f"cell line {line}:{m[2]}"

        return _LIB_LOCATION.sub(sub, text)


def _diagnostic(message: dict[str, Any], cell: _Cell) -> Diagnostic | None:
    level = str(message.get("level", ""))
    text = cell.retell(str(message.get("message", "")))
    if level not in ("error", "warning") or _SUMMARY.match(text):
        return None
    spans = tuple(s for s in (_span(raw, cell) for raw in message.get("spans") or ()) if s is not None)
    notes = tuple(n for n in (_note(child, cell) for child in message.get("children") or ()) if n is not None)
    primary = next((s for s in spans if s.primary), spans[0] if spans else None)
    code = (message.get("code") or {}).get("code")
    return Diagnostic(
        level=level,
        message=text,
        code=code,
        line=primary.line if primary else None,
        column=primary.start if primary else None,
        spans=spans,
        notes=notes,
        hint=hint(message, text, cell.lines),
        source=cell.lines,
        in_glue=not spans and any(raw.get("file_name") in _CELL_FILES for raw in message.get("spans") or ()),
    )


def _foreign(message: dict[str, Any]) -> Diagnostic | None:
    """An error in a dependency: rustc's own text, no cell location."""
    if message.get("level") != "error" or _SUMMARY.match(str(message.get("message", ""))):
        return None
    rendered = str(message.get("rendered") or message.get("message", "")).rstrip()
    _, _, rest = rendered.partition("\n")
    return Diagnostic(
        level="error",
        message=str(message.get("message", "")),
        code=(message.get("code") or {}).get("code"),
        line=None,
        column=None,
        spans=(),
        notes=(Note("note", rest),) if rest else (),
        hint=None,
        source=(),
    )


def _span(raw: dict[str, Any], cell: _Cell, depth: int = 0) -> Span | None:
    """A span on the cell, following macro expansions back to the cell if needed."""
    line = cell.line(int(raw.get("line_start", 0))) if raw.get("file_name") in _CELL_FILES else None
    if line is None:
        expansion = raw.get("expansion")
        if depth < _MAX_EXPANSIONS and isinstance(expansion, dict) and isinstance(expansion.get("span"), dict):
            outer = _span(expansion["span"], cell, depth + 1)
            if outer is not None:
                return Span(outer.line, outer.start, outer.end, bool(raw.get("is_primary")), raw.get("label"))
        return None
    start = int(raw.get("column_start", 1))
    end = int(raw.get("column_end", start)) if raw.get("line_end") == raw.get("line_start") else TO_LINE_END
    label = raw.get("label")
    return Span(
        line=line,
        start=start,
        end=end,
        primary=bool(raw.get("is_primary")),
        label=cell.retell(label) if label else None,
        replacement=raw.get("suggested_replacement"),
    )


def _note(child: dict[str, Any], cell: _Cell) -> Note | None:
    raw_spans = child.get("spans") or ()
    spans = tuple(s for s in (_span(raw, cell) for raw in raw_spans) if s is not None)
    if raw_spans and not spans:
        return None  # points only into generated code or other crates
    text = cell.retell(str(child.get("message", "")))
    if _MACHINERY.search(text):
        return None
    kept = text.splitlines()
    if len(kept) > _MAX_NOTE_LINES:
        kept = [*kept[:_MAX_NOTE_LINES], "  ..."]
    return Note(str(child.get("level", "note")), "\n".join(kept), spans)
