"""A ``Diagnostic`` shown to the user: plain text in rustc's familiar layout
(terminals, logs, tracebacks) and HTML for the notebook, colored with JupyterLab's
theme variables so it reads on light and dark themes; and the count for a headline.

Both forms come from one layout: lines of (style, text) pieces. :func:`text` joins
the text; :func:`html` escapes it and wraps each styled piece in a colored
``<span>``, so the two never say different things.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterator

from ipy_rustasync._presentation.diagnostics.model import TO_LINE_END, Diagnostic, Span

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


def text(d: Diagnostic) -> str:
    """Plain text, rustc's layout on the cell's lines, our hint last."""
    return "\n".join("".join(words for _, words in line) for line in _layout(d))


def html(d: Diagnostic) -> str:
    """An HTML block (a ``<pre>``, then our hint as a wrapping paragraph), colored
    for light and dark themes."""
    body = "\n".join(
        "".join(f"<span style='{_STYLE[kind]}'>{_html.escape(words)}</span>" if kind else _html.escape(words)
        for kind, words in line)
        for line in _layout(d, with_hint=False)
    )  # fmt: skip
    hint = (
        f"<div style='margin-top: 4px; font-family: var(--jp-ui-font-family, sans-serif)'>"
        f"<span style='{_STYLE['hint']}'>hint</span>: {_code_spans(d.hint)}</div>"
        if d.hint
        else ""
    )
    border = _STYLE[d.level if d.level in _STYLE else "error"].split(";")[0].replace("color", "border-color")
    return (
        f"<div style='margin: 4px 0; padding: 4px 8px; border-left: 3px solid; {border}'>"
        "<pre style='font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px); "
        f"white-space: pre; overflow-x: auto; margin: 0; padding: 0; background: none'>{body}</pre>{hint}</div>"
    )


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


def _code_spans(sentence: str) -> str:
    """Escaped, with `backticked` parts as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _html.escape(sentence))


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
        quoted = source[number - 1] if number <= len(source) else ""
        yield [("gutter", f"{number:>{width}} | "), ("", quoted)]
        for span in sorted((s for s in spans if s.line == number), key=lambda s: (not s.primary, s.start)):
            end = max(len(quoted) + 1, span.start + 1) if span.end == TO_LINE_END else span.end
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
