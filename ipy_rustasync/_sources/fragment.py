"""The ```` ```cargo ```` block at the top of a cell: its dependency table, read and
checked (pure: the cell's text in, ``Dep`` entries out).

The block follows rust-script's convention (a fenced ```` ```cargo ```` block in the
leading comments), so a notebook carries its own dependency table::

    //! ```cargo
    //! [dependencies]
    //! itoa = "1"
    //! serde = { version = "1", features = ["derive"] }
    //! ```

It is made of comments, so the cell's text (and every line number rustc reports)
stays exactly as written, and the block's lines count like any other: a line after it
is numbered as the editor shows it. Lines named here count as the editor does too
(``first_line``: 2 under a ``%%rust_async`` line). Only a ``[dependencies]`` table of crates.io crates is
allowed; every other table and key is refused with one sentence (see deps.py for why).
"""

from __future__ import annotations

import tomllib

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._sources.deps import Dep, check_features, check_name, check_requirement

#: Keys an entry of the block's dependency table may use (cargo spells default-features both ways).
TABLE_KEYS = ("version", "features", "default-features", "default_features", "package")
#: The other tables of a Cargo.toml, refused by name.
MANIFEST_TABLES = (
    "package",
    "lib",
    "bin",
    "features",
    "dev-dependencies",
    "build-dependencies",
    "target",
    "profile",
    "workspace",
    "patch",
    "replace",
    "lints",
    "badges",
)
#: Keys that name another source than crates.io: refused with their own sentence.
SOURCE_KEYS = ("path", "git", "branch", "tag", "rev", "registry", "registry-index", "workspace")

FENCE_OPEN = "```cargo"
FENCE_CLOSE = "```"


def _comment_text(line: str) -> tuple[str, str] | None:
    """``(prefix, text)`` for a ``//!`` or ``//`` line (not ``///``), else None."""
    stripped = line.strip()
    for prefix in ("//!", "//"):
        if stripped.startswith(prefix) and not (prefix == "//" and stripped.startswith("///")):
            text = stripped[len(prefix) :]
            return prefix, text[1:] if text.startswith(" ") else text
    return None


def find(source: str, first_line: int = 1) -> tuple[str, int] | None:
    """The TOML of the ```` ```cargo ```` block in the cell's leading comments and the
    line it starts on (the fence line, counted as the editor does: the source's first
    line is ``first_line``), or None if there is none.

    The block must sit in the comments before any code, in ``//!`` (rust-script's
    spelling) or plain ``//`` lines, one kind throughout."""
    if FENCE_OPEN not in source:
        return None  # every cell pays for this check: keep it a substring search
    lines = source.splitlines()
    leading = 0
    while leading < len(lines) and (not lines[leading].strip() or _comment_text(lines[leading]) is not None):
        leading += 1
    found: tuple[str, int] | None = None
    i = 0
    while i < len(lines):
        comment = _comment_text(lines[i])
        if comment is None or comment[1].strip() != FENCE_OPEN:
            i += 1
            continue
        if i >= leading:
            raise RustAsyncUsageError(
                f"the ```cargo block at cell line {i + first_line} must come first in the cell, in its leading comments"
            )
        if found is not None:
            raise RustAsyncUsageError(
                f"the cell has a second ```cargo block at cell line {i + first_line}; put all dependencies in one"
            )
        prefix, start = comment[0], i
        body: list[str] = []
        i += 1
        while True:
            inner = _comment_text(lines[i]) if i < len(lines) else None
            if inner is None or inner[0] != prefix:
                raise RustAsyncUsageError(
                    f"the ```cargo block at cell line {start + first_line} is not closed with a {prefix} ``` line"
                )
            if inner[1].strip() == FENCE_CLOSE:
                break
            body.append(inner[1])
            i += 1
        found = ("\n".join(body) + "\n", start + first_line)
        i += 1
    return found


def deps(source: str, first_line: int = 1) -> tuple[Dep, ...]:
    """The crates the cell's ```` ```cargo ```` block declares (empty without one)."""
    found = find(source, first_line)
    if found is None:
        return ()
    text, line = found
    where = f"the ```cargo block (cell line {line})"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RustAsyncUsageError(
            f"{where} is not valid TOML: {err} (counting from the line after the fence)"
        ) from None
    for key in data:
        if key in MANIFEST_TABLES:
            raise RustAsyncUsageError(f"{where} may only have a [dependencies] table; [{key}] is not supported")
        if key != "dependencies":
            raise RustAsyncUsageError(
                f"{where} may only have a [dependencies] table; `{key}` is outside it (a [dependencies] line missing?)"
            )
    table = data.get("dependencies", {})
    if not isinstance(table, dict):
        raise RustAsyncUsageError(f'{where}: `dependencies` must be a table, e.g. [dependencies] itoa = "1"')
    return tuple(_entry(name, value, where) for name, value in table.items())


def _entry(name: str, value: object, where: str) -> Dep:
    what = f"{where}, {name}"
    check_name(name, what)
    if isinstance(value, str):
        return Dep(name, check_requirement(value, what))
    if not isinstance(value, dict):
        raise RustAsyncUsageError(f'{what}: give a version string or a table, e.g. {name} = "1"')
    for key in value:
        if key in SOURCE_KEYS:
            raise RustAsyncUsageError(
                f"{what}: `{key}` dependencies are not supported in a cell; crates come from crates.io "
                "(use version, features, default-features, package)"
            )
        if key not in TABLE_KEYS:
            raise RustAsyncUsageError(
                f"{what}: `{key}` is not supported (use version, features, default-features, package)"
            )
    version = value.get("version", "*")
    if not isinstance(version, str):
        raise RustAsyncUsageError(f'{what}: version must be a string, e.g. version = "1"')
    features = value.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise RustAsyncUsageError(f'{what}: features must be a list of strings, e.g. features = ["derive"]')
    spellings = [value[k] for k in ("default-features", "default_features") if k in value]
    if len(spellings) > 1 or not all(isinstance(v, bool) for v in spellings):
        raise RustAsyncUsageError(f"{what}: give default-features once, as true or false")
    package = value.get("package", "")
    if not isinstance(package, str):
        raise RustAsyncUsageError(f'{what}: package must be a crate name, e.g. package = "serde_json"')
    if package:
        check_name(package, f"{what}, package")
    return Dep(
        name,
        check_requirement(version, what),
        check_features(features, what),
        default_features=spellings[0] if spellings else True,
        package=package,
    )
