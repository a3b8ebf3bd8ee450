"""rustc's messages, moved onto the lines of the cell the user wrote.

The generated ``src/lib.rs`` is the cell verbatim after ``crate.LINE_OFFSET`` header
lines, so mapping is a subtraction: in ``--> src/lib.rs:L:C`` locations and in the
line-number gutter of quoted source. Cargo's and maturin's own chatter is dropped;
messages whose location is generated glue keep their text but lose the location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ipy_rustasync.crate import LINE_OFFSET

_LOCATION = re.compile(r"^(?P<indent>\s*)--> src/lib\.rs:(?P<line>\d+):(?P<col>\d+)")
_GUTTER = re.compile(r"^(?P<num>\s*\d+)(?P<rest> [|:=].*|\s*\|.*)$")
_HEAD = re.compile(r"^(?P<level>error|warning)(?:\[(?P<code>\w+)\])?: (?P<message>.*)$")
_CHATTER = re.compile(
    r"^(?:(?:error|warning): (?:could not compile|`[^`]+` \(lib\) generated|build failed)"
    r"|error: aborting due to|Caused by:|\s*\d+: )"
)


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "error" or "warning"
    message: str  # the first line, e.g. "mismatched types"
    code: str | None
    line: int | None  # in the cell, 1-based; None if not in the cell's own text
    column: int | None
    rendered: str  # the whole block, on cell lines


def _map_line(lib_line: int, cell_lines: int) -> int | None:
    line = lib_line - LINE_OFFSET
    return line if 1 <= line <= cell_lines else None


def _blocks(text: str) -> list[list[str]]:
    """Splits cargo's stderr into diagnostic blocks (a header line to the blank line)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if _HEAD.match(line) and not _CHATTER.match(line):
            current = [line]
            blocks.append(current)
        elif current is not None:
            if not line:
                current = None
            else:
                current.append(line)
    return blocks


def parse(stderr: str, cell_source: str) -> list[Diagnostic]:
    """The rustc diagnostics in a build's stderr, each mapped onto the cell."""
    cell_lines = max(1, len(cell_source.splitlines()))
    found: list[Diagnostic] = []
    for block in _blocks(stderr):
        head = _HEAD.match(block[0])
        assert head is not None
        line = column = None
        out = [block[0]]
        first_location = True
        for text in block[1:]:
            loc = _LOCATION.match(text)
            if loc:
                mapped = _map_line(int(loc["line"]), cell_lines)
                if first_location and mapped is not None:
                    line, column = mapped, int(loc["col"])
                first_location = False
                if mapped is None:
                    out.append(f"{loc['indent']}--> (code generated for the cell)")
                else:
                    out.append(f"{loc['indent']}--> cell line {mapped}, column {loc['col']}")
                continue
            gutter = _GUTTER.match(text)
            if gutter and gutter["num"].strip():
                num = int(gutter["num"])
                mapped = _map_line(num, cell_lines)
                width = len(gutter["num"])
                out.append(f"{(str(mapped) if mapped is not None else '~'):>{width}}{gutter['rest']}")
                continue
            out.append(text)
        found.append(
            Diagnostic(
                level=head["level"],
                message=head["message"],
                code=head["code"],
                line=line,
                column=column,
                rendered="\n".join(out),
            )
        )
    return found


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
