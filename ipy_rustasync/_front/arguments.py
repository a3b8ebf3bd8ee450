"""How the magics read their line: one ``magic_arguments`` parser per magic (IPython's
argparse), and a flag given to the wrong magic named as misplaced rather than unknown."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring


def line_option(flag: str) -> str:
    return f"{flag} is a line-magic option: use it as `%rust_async {flag} ...` on a line of its own"


def cell_option(flag: str) -> str:
    default = "; for the default use `ipy-rustasync config release true`" if flag in ("--release", "--debug") else ""
    return f"{flag} applies to a %%rust_async cell{default}"


def parse(magic: Any, line: str, other: Any, misplaced: Callable[[str], str]) -> argparse.Namespace:
    """``line`` parsed by ``magic``'s own parser. A flag that parser does not know but
    the ``other`` magic (the line magic for the cell magic, and back) does is a
    misplaced flag rather than a typo: the error says where it belongs."""
    try:
        args: argparse.Namespace = parse_argstring(magic, line)
    except UsageError:
        theirs = {flag for action in other.parser._actions for flag in action.option_strings}
        for flag in flags(line):
            if flag in theirs:
                raise UsageError(misplaced(flag)) from None
        raise
    return args


def flags(line: str) -> list[str]:
    """The ``--flag`` words of ``line`` (none if its quotes do not balance: the
    parser's own message says so)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return []
    return [word.split("=", 1)[0] for word in words if word.startswith("-")]
