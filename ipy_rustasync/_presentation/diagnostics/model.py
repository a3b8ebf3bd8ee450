"""What a diagnostic is: the records ``mapping`` builds and ``render`` shows, and the
JSON form they are kept in beside a cached module.

Everything here is on the lines the editor shows (1-based lines and columns; in a
``%%rust_async`` cell the magic line is line 1, as JupyterLab counts); nothing here
knows rustc's JSON or HTML.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

#: ``Span.end`` of a span that runs past its first line (it is marked to that line's end).
TO_LINE_END = -1


@dataclass(frozen=True)
class Span:
    line: int  # the editor's, 1-based
    start: int  # columns, 1-based, end exclusive (on ``line``)
    end: int
    primary: bool
    label: str | None
    replacement: str | None = None


@dataclass(frozen=True)
class Note:
    level: str  # "note", "help"
    message: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "error" or "warning"
    message: str  # the first line, e.g. "mismatched types"
    code: str | None
    line: int | None  # the editor's, 1-based; None if not in the cell's own text
    column: int | None
    spans: tuple[Span, ...]
    notes: tuple[Note, ...]
    hint: str | None
    source: tuple[str, ...]  # the cell's lines as the editor numbers them (editor_lines), for quoting
    #: about the generated glue only (e.g. its copy of a name defined twice)
    in_glue: bool = False


def editor_lines(cell_source: str, first_line: int = 1) -> tuple[str, ...]:
    """The cell's lines as the editor numbers them: ``[n - 1]`` is line ``n``. The lines
    before the source's first (the ``%%rust_async`` line) are blank here: nothing the
    compiler says is on them."""
    return ("",) * (first_line - 1) + (tuple(cell_source.splitlines()) or ("",))


# --- kept beside a cached module ------------------------------------------------------


def dumps(found: list[Diagnostic]) -> str:
    """JSON for ``found`` without the cell's text (the cache has it under its hash), so
    a cached re-run can show the warnings its build printed."""
    return json.dumps([{k: v for k, v in dataclasses.asdict(d).items() if k != "source"} for d in found])


def loads(text: str, source: str, first_line: int = 1) -> list[Diagnostic]:
    """What :func:`dumps` wrote, with the cell's ``source`` back in (its first line the
    editor's ``first_line``); anything unreadable (an older layout, a damaged file)
    reads as no diagnostics: they are a courtesy."""
    lines = editor_lines(source, first_line)
    try:
        return [
            Diagnostic(
                **{k: v for k, v in d.items() if k not in ("spans", "notes")},
                spans=tuple(Span(**span) for span in d["spans"]),
                notes=tuple(
                    Note(n["level"], n["message"], tuple(Span(**span) for span in n["spans"])) for n in d["notes"]
                ),
                source=lines,
            )
            for d in json.loads(text)
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
