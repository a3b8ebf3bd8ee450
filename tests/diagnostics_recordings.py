"""The rustc messages recorded in ``tests/data/diagnostics/`` (``record.py`` there
re-records them), read back for the fast diagnostics tests: no cargo runs."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ipy_rustasync._presentation.diagnostics import Diagnostic, from_messages

DATA = Path(__file__).resolve().parent / "data" / "diagnostics"
NAMES = sorted(path.stem for path in DATA.glob("*.rs"))

#: What the generated glue, the bridge and PyO3's internals look like in rustc's
#: text; none of it may reach the user.
GLUE = re.compile(r"src/lib\.rs|__ira_|__private|pyo3::impl_|rust/bridge/|line_offset|\$ROOT|\$HOME|\$CACHE")


@dataclass(frozen=True)
class Recording:
    """One cell (``NAME.rs``) and what cargo said building it (``NAME.json``), built
    as a ``%%rust_async`` cell: its first line is the editor's ``first_line`` (2)."""

    name: str
    source: str
    module: str
    first_line: int
    line_offset: int
    messages: list[dict[str, Any]]

    def diagnostics(self, messages: list[dict[str, Any]] | None = None) -> list[Diagnostic]:
        """The recording (or ``messages``, edited from it) through the mapping."""
        return from_messages(
            self.messages if messages is None else messages,
            self.source,
            self.module,
            first_line=self.first_line,
            line_offset=self.line_offset,
        )

    def as_script(self) -> Recording:
        """The same build read as ``rust_module(source)`` source (no magic line, so its
        first line is line 1): the crate is laid out the same, one line further from
        the editor's count."""
        return replace(self, first_line=1, line_offset=self.line_offset + 1)

    def copy_messages(self) -> list[dict[str, Any]]:
        """The messages, deep-copied so a test may edit them."""
        return copy.deepcopy(self.messages)


def load(name: str) -> Recording:
    recorded = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return Recording(
        name=name,
        source=(DATA / f"{name}.rs").read_text(encoding="utf-8"),
        module=recorded["module"],
        first_line=recorded["first_line"],
        line_offset=recorded["line_offset"],
        messages=recorded["messages"],
    )


def diagnose(name: str) -> list[Diagnostic]:
    return load(name).diagnostics()


def foreign_error() -> tuple[Diagnostic, str]:
    """The error of ``dep_misuse`` as if it were in another crate (``itoa``): the
    diagnostic, and the text rustc rendered for it."""
    recording = load("dep_misuse")
    messages = recording.copy_messages()
    for m in messages:
        m["target"]["name"] = "itoa"
    (foreign,) = recording.diagnostics(messages)
    return foreign, str(messages[0]["message"]["rendered"]).rstrip()
