"""The one line after a build that names what the cell exports, kept one line long.

A cell with a handful of exports gets every name; a long list (a generated cell with
thousands of functions) gets its counts and its first and last few names. In a
notebook the full list is one click away: the line is the ``<summary>`` of an HTML
``<details>`` holding every name, shown alongside the plain line (which is what a
terminal, nbconvert's text and a log get). Pure: plain names and kinds in, text out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

#: Lists up to this long are named in full on the line.
FULL_UP_TO = 12
#: How many names a longer list shows from its start and from its end.
FIRST, LAST = 5, 3

#: How the line counts each kind of export (the exporter's kinds: loader.Export.kind).
_NOUNS = {
    "sync": ("function", "functions"),
    "pyfunction": ("function", "functions"),
    "async": ("async function", "async functions"),
    "stream": ("stream", "streams"),
    "class": ("class", "classes"),
    "exception": ("exception", "exceptions"),
}


@dataclass(frozen=True)
class Line:
    """The summary: ``text`` for every front end, ``html`` (None for a short list) for
    a notebook, where it folds the full list under the same line."""

    text: str
    html: str | None


def label(name: str, kind: str) -> str:
    """How an export is named on the line: async functions and streams are marked."""
    return f"{name} ({kind})" if kind in ("async", "stream") else name


def abbreviate(items: Sequence[str]) -> str:
    """``items`` joined, or for a long list the first and last few around an ellipsis."""
    if len(items) <= FULL_UP_TO:
        return ", ".join(items)
    return ", ".join([*items[:FIRST], "…", *items[-LAST:]])


def counts(kinds: Sequence[str]) -> str:
    """``300 exports: 297 functions, 2 async functions, 1 class``."""
    tally: dict[tuple[str, str], int] = {}
    for kind in kinds:
        noun = _NOUNS.get(kind, (kind, f"{kind}s"))
        tally[noun] = tally.get(noun, 0) + 1
    parts = [f"{n:,} {one if n == 1 else many}" for (one, many), n in tally.items()]
    return f"{len(kinds):,} exports: {', '.join(parts)}"


def exports_line(
    how: str,
    exports: Sequence[tuple[str, str]],
    *,
    added: Sequence[str] = (),
    replaced: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> Line:
    """``rust_async: {how}: {exports}`` and, for a rebuilt cell (something replaced or
    removed), which names are new, replaced and removed. ``exports`` are ``(name,
    kind)`` in the module's order."""
    labels = [label(name, kind) for name, kind in exports]
    changes = [("new", list(added)), ("replaced", list(replaced)), ("removed", list(removed))]
    rebuilt = bool(replaced or removed)
    long = len(labels) > FULL_UP_TO or (rebuilt and any(len(names) > FULL_UP_TO for _, names in changes))

    what = abbreviate(labels)
    if len(labels) > FULL_UP_TO:
        what = f"{counts([kind for _, kind in exports])}; {what}"
    said = [_change(word, names) for word, names in changes if names] if rebuilt else []
    text = f"rust_async: {how}: {what}" + (f" ({'; '.join(said)})" if said else "")
    if not long:
        return Line(text, None)
    rows = [f"{len(labels):,} exports: {', '.join(labels)}"]
    if rebuilt:
        rows += [f"{word} ({len(names):,}): {', '.join(names)}" for word, names in changes if names]
    body = "".join(f"<div style='margin-top: 0.4em'>{html.escape(row)}</div>" for row in rows)
    folded = (
        "<details style='font-family: var(--jp-code-font-family, monospace)'>"
        f"<summary>{html.escape(text)}</summary>{body}</details>"
    )
    return Line(text, folded)


def _change(word: str, names: Sequence[str]) -> str:
    """``new: a, b`` or, for a long list, ``280 new: a, b, c, d, e, …, x, y, z``."""
    if len(names) <= FULL_UP_TO:
        return f"{word}: {abbreviate(names)}"
    return f"{len(names):,} {word}: {abbreviate(names)}"
