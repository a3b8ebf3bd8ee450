"""rustc's diagnostics, moved onto the lines of the cell the user wrote.

Input: rustc's JSON diagnostics (cargo's ``compiler-message`` records). The
generated ``src/lib.rs`` is the cell verbatim after ``crate.LINE_OFFSET`` header
lines, so a span's line maps to the cell by a subtraction; spans outside the cell's
text (the generated glue, the bridge crate, the standard library) are never shown,
and notes that only point there are dropped. Each diagnostic renders twice from the
same model: plain text in rustc's familiar layout (terminals, logs, tracebacks) and
HTML for the notebook, colored with JupyterLab's theme variables so it reads on
light and dark themes.

Where rustc's message alone leaves a newcomer stuck (a future that is not ``Send``,
a type that cannot cross to Python, a crate the cell does not depend on), a
one-sentence ``hint`` from us is added under it.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ipy_rustasync.crate import LINE_OFFSET

_LIB_RS = "src/lib.rs"
_LIB_LOCATION = re.compile(r"src/lib\.rs:(\d+):(\d+)(?:: (\d+):(\d+))?")
#: Diagnostics that only summarize others.
_SUMMARY = re.compile(r"^(aborting due to|\d+ warnings? emitted|For more information about)")
#: Crates every cell can name without declaring them.
_PROVIDED = {"std", "core", "alloc", "tokio", "futures", "pyo3", "ipy_rustasync", "crate", "self", "super"}
_MAX_NOTE_LINES = 4
#: Notes about the machinery a cell is wrapped in, not about the user's code.
_MACHINERY = re.compile(r"pyo3::impl_|ipy_rustasync::__private|__ira_|^the following other types implement")
#: ``Span.end`` of a span that runs past its first line.
_TO_LINE_END = -1


@dataclass(frozen=True)
class Span:
    line: int  # in the cell, 1-based
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
    line: int | None  # in the cell, 1-based; None if not in the cell's own text
    column: int | None
    spans: tuple[Span, ...]
    notes: tuple[Note, ...]
    hint: str | None
    source: tuple[str, ...]  # the cell's lines, for quoting
    #: about the generated glue only (e.g. its copy of a name defined twice)
    in_glue: bool = False

    @property
    def rendered(self) -> str:
        """Plain text, rustc's layout on the cell's lines."""
        return "\n".join("".join(text for _, text in line) for line in _layout(self))

    def html(self) -> str:
        """An HTML block (a ``<pre>``, then our hint as a wrapping paragraph), colored
        for light and dark themes."""
        body = "\n".join(
            "".join(f"<span style='{_STYLE[kind]}'>{html.escape(text)}</span>" if kind else html.escape(text)
            for kind, text in line)
            for line in _layout(self, with_hint=False)
        )  # fmt: skip
        hint = (
            f"<div style='margin-top: 4px; font-family: var(--jp-ui-font-family, sans-serif)'>"
            f"<span style='{_STYLE['hint']}'>hint</span>: {_code_spans(self.hint)}</div>"
            if self.hint
            else ""
        )
        border = _STYLE[self.level if self.level in _STYLE else "error"].split(";")[0].replace("color", "border-color")
        return (
            f"<div style='margin: 4px 0; padding: 4px 8px; border-left: 3px solid; {border}'>"
            "<pre style='font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px); "
            f"white-space: pre; overflow-x: auto; margin: 0; padding: 0; background: none'>{body}</pre>{hint}</div>"
        )


# --- kept beside a cached module ------------------------------------------------------


def dumps(found: list[Diagnostic]) -> str:
    """JSON for ``found`` without the cell's text (the cache has it under its hash), so
    a cached re-run can show the warnings its build printed."""
    return json.dumps([{k: v for k, v in dataclasses.asdict(d).items() if k != "source"} for d in found])


def loads(text: str, source: str) -> list[Diagnostic]:
    """What :func:`dumps` wrote, with the cell's ``source`` back in; anything unreadable
    (an older layout, a damaged file) reads as no diagnostics: they are a courtesy."""
    lines = tuple(source.splitlines())
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


# --- from rustc's JSON ------------------------------------------------------------------


def from_messages(messages: Iterable[dict[str, Any]], cell_source: str, module: str) -> list[Diagnostic]:
    """The diagnostics of a build (cargo ``compiler-message`` records), on the cell.

    The cell crate's own messages are all kept; other crates' only when they are
    errors (warnings from dependencies are theirs, not the user's)."""
    lines = tuple(cell_source.splitlines()) or ("",)
    found: list[Diagnostic] = []
    seen: set[tuple[str, str, int | None, int | None]] = set()
    for record in messages:
        message = record.get("message")
        if record.get("reason") != "compiler-message" or not isinstance(message, dict):
            continue
        own = (record.get("target") or {}).get("name") == module
        diagnostic = _diagnostic(message, lines) if own else _foreign(message)
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


def _diagnostic(message: dict[str, Any], lines: tuple[str, ...]) -> Diagnostic | None:
    level = str(message.get("level", ""))
    text = _on_cell(str(message.get("message", "")), len(lines))
    if level not in ("error", "warning") or _SUMMARY.match(text):
        return None
    spans = tuple(s for s in (_span(raw, len(lines)) for raw in message.get("spans") or ()) if s is not None)
    notes = tuple(n for n in (_note(child, len(lines)) for child in message.get("children") or ()) if n is not None)
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
        hint=_hint(message, text, lines),
        source=lines,
        in_glue=not spans and any(raw.get("file_name") == _LIB_RS for raw in message.get("spans") or ()),
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


def _cell_line(lib_line: int, cell_lines: int) -> int | None:
    line = lib_line - LINE_OFFSET
    return line if 1 <= line <= cell_lines else None


def _span(raw: dict[str, Any], cell_lines: int, depth: int = 0) -> Span | None:
    """A span on the cell, following macro expansions back to the cell if needed."""
    line = _cell_line(int(raw.get("line_start", 0)), cell_lines) if raw.get("file_name") == _LIB_RS else None
    if line is None:
        expansion = raw.get("expansion")
        if depth < 8 and isinstance(expansion, dict) and isinstance(expansion.get("span"), dict):
            outer = _span(expansion["span"], cell_lines, depth + 1)
            if outer is not None:
                return Span(outer.line, outer.start, outer.end, bool(raw.get("is_primary")), raw.get("label"))
        return None
    start = int(raw.get("column_start", 1))
    end = int(raw.get("column_end", start)) if raw.get("line_end") == raw.get("line_start") else _TO_LINE_END
    label = raw.get("label")
    return Span(
        line=line,
        start=start,
        end=end,
        primary=bool(raw.get("is_primary")),
        label=_on_cell(label, cell_lines) if label else None,
        replacement=raw.get("suggested_replacement"),
    )


def _note(child: dict[str, Any], cell_lines: int) -> Note | None:
    raw_spans = child.get("spans") or ()
    spans = tuple(s for s in (_span(raw, cell_lines) for raw in raw_spans) if s is not None)
    if raw_spans and not spans:
        return None  # points only into generated code or other crates
    text = _on_cell(str(child.get("message", "")), cell_lines)
    if _MACHINERY.search(text):
        return None
    kept = text.splitlines()
    if len(kept) > _MAX_NOTE_LINES:
        kept = [*kept[:_MAX_NOTE_LINES], "  ..."]
    return Note(str(child.get("level", "note")), "\n".join(kept), spans)


def _on_cell(text: str, cell_lines: int) -> str:
    """``src/lib.rs:5:9`` inside a message (e.g. ``{async block@src/lib.rs:5:9: 5:14}``) -> cell lines."""

    def sub(m: re.Match[str]) -> str:
        line = _cell_line(int(m[1]), cell_lines)
        if line is None:
            return "generated code"
        return f"cell line {line}:{m[2]}"

    return _LIB_LOCATION.sub(sub, text)


# --- our sentence for the messages newcomers get stuck on -------------------------------

_TICKED = re.compile(r"`([^`]+)`")


def _hint(message: dict[str, Any], text: str, lines: tuple[str, ...]) -> str | None:
    if text.startswith("future cannot be sent between threads safely"):
        return _not_send_hint(message)
    ty = _TICKED.match(text)
    name = ty[1] if ty else "this type"
    if text.endswith("cannot be used as a Python function argument"):
        return (
            f"`{name}` cannot come in from Python: take a type PyO3 converts (int, float, bool, str, bytes, "
            f"Vec for a list, HashMap for a dict, tuples, Option for None) or make `{name}` a "
            "`#[pyo3::pyclass(from_py_object)]` that derives `Clone`."
        )
    if text.endswith("cannot be converted to a Python object"):
        return (
            f"`{name}` cannot go back to Python: return a type PyO3 converts (numbers, bool, String, Vec, HashMap, "
            f"tuples, Option) or put `#[pyo3::pyclass]` on `{name}` so Python receives it as an object."
        )
    if re.match(r"(cannot find module or crate|failed to resolve: use of undeclared crate|unresolved import)", text):
        ticked = _TICKED.search(text)
        crate_name = ticked[1].split("::")[0] if ticked else ""
        if (
            crate_name
            and crate_name not in _PROVIDED
            and not any(re.search(rf"\bmod\s+{re.escape(crate_name)}\b", line) for line in lines)
        ):
            return (
                f"`{crate_name}` is not a dependency of this cell: add it with `%%rust_async --dep {crate_name}` "
                "(tokio, futures and pyo3 come with every cell)."
            )
    return None


def _not_send_hint(message: dict[str, Any]) -> str:
    held = ty = None
    for child in message.get("children") or ():
        for raw in child.get("spans") or ():
            label = str(raw.get("label") or "")
            if m := re.search(r"with `([^`]+)` maybe used later", label):
                held = m[1]
            if m := re.search(r"has type `(.+)` which is not `Send`", label):
                ty = m[1]
    what = f"`{held}`" + (f" (a `{ty}`)" if ty else "") if held else "a value that is not `Send`"
    return (
        f"{what} is held across an `.await`, but the future must be `Send` because it runs on tokio's "
        "worker threads: drop it before the `.await` (end its scope with a block) or use a `Send` type "
        "(`Arc` instead of `Rc`, `tokio::sync::Mutex` instead of a `std::sync::MutexGuard`)."
    )


# --- layout, shared by the text and HTML forms ------------------------------------------
#
# A diagnostic is laid out as lines of (style, text) pieces; ``rendered`` joins the
# text, ``html`` wraps each styled piece in a colored <span>.

_STYLE = {
    "error": "color: var(--jp-error-color1, #d32f2f); font-weight: bold",
    "warning": "color: var(--jp-warn-color1, #e65100); font-weight: bold",
    "note": "color: var(--jp-info-color1, #0277bd); font-weight: bold",
    "help": "color: var(--jp-success-color1, #2e7d32); font-weight: bold",
    "hint": "color: var(--jp-brand-color1, #1976d2); font-weight: bold",
    "gutter": "opacity: 0.6",
    "secondary": "color: var(--jp-info-color1, #0277bd)",
    "": "",
}
Piece = tuple[str, str]


def _code_spans(text: str) -> str:
    """Escaped, with `backticked` parts as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _layout(d: Diagnostic, *, with_hint: bool = True) -> Iterator[list[Piece]]:
    head = f"{d.level}[{d.code}]" if d.code and re.fullmatch(r"E\d{4}", d.code) else d.level
    yield [(d.level, head), ("", f": {d.message}")]
    lines = [s.line for s in d.spans] + [s.line for n in d.notes for s in n.spans]
    width = len(str(max(lines, default=1)))
    if d.line is not None:
        yield [("gutter", " " * width + "--> "), ("", f"cell line {d.line}, column {d.column}")]
    yield from _snippet(d.spans, d.source, width, d.level)
    for note in d.notes:
        level = note.level if note.level in _STYLE else "note"
        first, *rest = note.message.splitlines() or [""]
        if note.spans:
            yield [(level, level), ("", f": {first}")]
            yield from ([("", line)] for line in rest)
            yield from _snippet(note.spans, d.source, width, level)
        else:
            yield [("gutter", " " * width + " = "), (level, level), ("", f": {first}")]
            yield from ([("", " " * (width + 3) + line)] for line in rest)
    if d.hint and with_hint:
        yield [("gutter", " " * width + " = "), ("hint", "hint"), ("", f": {d.hint}")]


def _snippet(spans: tuple[Span, ...], source: tuple[str, ...], width: int, level: str) -> Iterator[list[Piece]]:
    """The quoted cell lines with markers under them, like rustc's."""
    if not spans:
        return
    yield [("gutter", " " * width + " |")]
    for number in sorted({s.line for s in spans}):
        text = source[number - 1] if number <= len(source) else ""
        yield [("gutter", f"{number:>{width}} | "), ("", text)]
        for span in sorted((s for s in spans if s.line == number), key=lambda s: (not s.primary, s.start)):
            end = max(len(text) + 1, span.start + 1) if span.end == _TO_LINE_END else span.end
            marker = ("^" if span.primary else "-") * max(1, end - span.start)
            label = span.label or ""
            if span.replacement is not None:
                change = f"insert `{span.replacement}`" if end == span.start else f"`{span.replacement}`"
                label = f"{label}: {change}" if label else change
            yield [
                ("gutter", " " * width + " | "),
                ("", " " * (span.start - 1)),
                (level if span.primary else "secondary", marker + (f" {label}" if label else "")),
            ]


def summary(diagnostics: list[Diagnostic]) -> str:
    """``2 errors, 1 warning`` (what the one-line headline says)."""
    errors = sum(d.level == "error" for d in diagnostics)
    warnings = sum(d.level == "warning" for d in diagnostics)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' * (errors != 1)}")
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return ", ".join(parts) or "no diagnostics"
