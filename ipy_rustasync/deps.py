"""A cell's extra crates: ``--dep`` flags and the ``cargo`` fragment at the top of a cell.

Everything here is checked before it reaches a generated ``Cargo.toml``: names,
version requirements and features are matched against strict patterns and written
as JSON-quoted strings, so nothing a cell says can add TOML of its own. Only crates.io
dependencies are allowed (no ``path``, ``git`` or ``registry``): a cell's crate must
build the same on every machine that has the notebook, and the offline mode vendors
crates.io only.

The fragment follows rust-script's convention (a fenced ```` ```cargo ```` block in
the leading comments), so a notebook carries its own dependency table::

    //! ```cargo
    //! [dependencies]
    //! itoa = "1"
    //! serde = { version = "1", features = ["derive"] }
    //! ```

It is made of comments, so the cell's text (and every line number rustc reports)
stays exactly as written.

The module also knows just enough of cargo's semver rules for ``lockfile.py``:
whether a pinned version satisfies a requirement, and which versions cargo counts
as compatible (it keeps one version per compatible range in a graph).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ipy_rustasync.errors import RustAsyncUsageError

#: Crates every cell depends on; their versions come from rust/bridge/Cargo.toml.
SHARED_DEPS = ("pyo3", "tokio", "futures")
#: Names a cell may not declare: they are already there, at pinned versions.
RESERVED = {*SHARED_DEPS, "ipy-rustasync", "ipy_rustasync", "ipy-rustasync-macros"}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_REQ = re.compile(r"(?:[=^~]|[<>]=?)?\d+(?:\.(?:\d+|\*)){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
#: A feature of the crate (``derive``) or of one of its dependencies (``dep/feat``, ``dep?/feat``).
_FEATURE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]{0,63}(?:\??/[A-Za-z0-9_][A-Za-z0-9_+.-]{0,63})?")
#: ``NAME``, ``NAME@VERSION``, ``NAME[FEATURE,...]`` or ``NAME[FEATURE,...]@VERSION``.
_FLAG = re.compile(r"(?P<name>[^\[@]*)(?:\[(?P<features>[^\]]*)\])?(?:@(?P<version>.*))?", re.DOTALL)

#: Keys a fragment's dependency table may use (cargo spells default-features both ways).
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


def normalize(name: str) -> str:
    """Cargo and crates.io treat ``-`` and ``_`` (and case) in crate names alike."""
    return name.lower().replace("-", "_")


def _check_name(name: str, what: str, how: str = "declaring it") -> None:
    if not _NAME.fullmatch(name):
        raise RustAsyncUsageError(f"{what}: a crate name is letters, digits, '-' and '_', starting with a letter")
    if name.replace("_", "-") in RESERVED:
        raise RustAsyncUsageError(f"{what}: every cell already depends on {name}; use it without {how}")


def _check_version(version: str, what: str) -> str:
    version = version.replace(" ", "") or "*"
    if version != "*" and not all(_REQ.fullmatch(part) for part in version.split(",")):
        raise RustAsyncUsageError(f"{what}: {version!r} is not a cargo version requirement (e.g. 1, 1.2, =1.2.3, ^0.4)")
    return version


def _check_features(features: Iterable[str], what: str) -> tuple[str, ...]:
    for feature in features:
        if not _FEATURE.fullmatch(feature):
            raise RustAsyncUsageError(
                f"{what}: {feature!r} is not a feature name (letters, digits, '_', '-', '+', '.', or dep/feature)"
            )
    return tuple(sorted(set(features)))


@dataclass(frozen=True, order=True)
class Dep:
    """An extra crate for one cell, as one ``[dependencies]`` entry of its manifest."""

    name: str
    version: str = "*"
    features: tuple[str, ...] = ()
    default_features: bool = True
    #: the crates.io name when ``name`` is an alias (cargo's ``package = "..."``), else ""
    package: str = ""

    @classmethod
    def parse(cls, text: str) -> Dep:
        """A ``--dep`` value: ``NAME``, ``NAME@VERSION``, ``NAME[FEATURE,...]@VERSION``.

        Features use pip's extras spelling (``serde[derive]@1``) because ``+`` already
        means build metadata in a version. Validated strictly before anything reaches
        a manifest (no TOML injection)."""
        name = re.split(r"[\[@]", text.strip(), maxsplit=1)[0]
        _check_name(name, f"--dep {name}" if _NAME.fullmatch(name) else f"--dep {text!r}", "--dep")
        match = _FLAG.fullmatch(text.strip())
        if match is None:
            raise RustAsyncUsageError(f"--dep {text!r}: write NAME, NAME@VERSION or NAME[FEATURE,...]@VERSION")
        version = _check_version(match["version"] or "", f"--dep {text!r}")
        features = match["features"]
        parsed = [f.strip() for f in features.split(",") if f.strip()] if features is not None else []
        return cls(name, version, _check_features(parsed, f"--dep {text!r}"))

    @property
    def crate(self) -> str:
        """The crates.io name (what Cargo.lock lists)."""
        return self.package or self.name

    @property
    def plain(self) -> bool:
        """Just a name and a version: how every ``--dep`` looked before features existed."""
        return not self.features and self.default_features and not self.package

    def flag(self) -> str:
        """The ``--dep`` spelling of the crate (for messages and ``ipy-rustasync vendor``)."""
        features = f"[{','.join(self.features)}]" if self.features else ""
        version = "" if self.version == "*" else f"@{self.version}"
        return f"{self.crate}{features}{version}"

    def __str__(self) -> str:
        """Unique per manifest entry (the module hash uses it): the flag spelling, with
        what a flag cannot say spelled out."""
        text = self.flag() if not self.package else f"{self.name}={self.flag()}"
        if not self.default_features:
            text += " (no default features)"
        return text

    def manifest_value(self) -> str | dict[str, Any]:
        """The value of this crate's ``[dependencies]`` entry."""
        if self.plain:
            return self.version
        table: dict[str, Any] = {"version": self.version}
        if self.package:
            table["package"] = self.package
        if self.features:
            table["features"] = list(self.features)
        if not self.default_features:
            table["default-features"] = False
        return table


def merge(*groups: tuple[str, Iterable[Dep]]) -> tuple[Dep, ...]:
    """One entry per crate from several ``(where, deps)`` groups (the fragment, the
    flags): features add up, ``default-features = false`` wins over the default, and
    two different version requirements are an error naming both places."""
    merged: dict[str, tuple[str, Dep]] = {}
    for origin, deps in groups:
        for dep in deps:
            key = normalize(dep.name)
            if key not in merged:
                merged[key] = (origin, dep)
                continue
            first_origin, first = merged[key]
            merged[key] = (first_origin, _merge_two(first_origin, first, origin, dep))
    return tuple(sorted(dep for _, dep in merged.values()))


def _merge_two(first_origin: str, first: Dep, origin: str, dep: Dep) -> Dep:
    def same(a: str, b: str) -> bool:
        return a.lstrip("^") == b.lstrip("^")

    if first.version != "*" and dep.version != "*" and not same(first.version, dep.version):
        where = f"{first_origin} and {origin}" if first_origin != origin else first_origin
        raise RustAsyncUsageError(
            f"{where} ask for different versions of {dep.name} ({first.version} and {dep.version}); keep one"
        )
    if normalize(first.crate) != normalize(dep.crate):
        raise RustAsyncUsageError(
            f"{first_origin} and {origin} name different crates for {dep.name} ({first.crate} and {dep.crate}); keep one"
        )
    return replace(
        first,
        version=first.version if first.version != "*" else dep.version,
        features=tuple(sorted({*first.features, *dep.features})),
        default_features=first.default_features and dep.default_features,
    )


# --- the cargo fragment ------------------------------------------------------------------

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


def fragment(source: str) -> tuple[str, int] | None:
    """The TOML of the ```` ```cargo ```` block in the cell's leading comments and the
    cell line it starts on (1-based, the fence line), or None if there is none.

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
                f"the ```cargo block at cell line {i + 1} must come first in the cell, in its leading comments"
            )
        if found is not None:
            raise RustAsyncUsageError(
                f"the cell has a second ```cargo block at cell line {i + 1}; put all dependencies in one"
            )
        prefix, start = comment[0], i
        body: list[str] = []
        i += 1
        while True:
            inner = _comment_text(lines[i]) if i < len(lines) else None
            if inner is None or inner[0] != prefix:
                raise RustAsyncUsageError(
                    f"the ```cargo block at cell line {start + 1} is not closed with a {prefix} ``` line"
                )
            if inner[1].strip() == FENCE_CLOSE:
                break
            body.append(inner[1])
            i += 1
        found = ("\n".join(body) + "\n", start + 1)
        i += 1
    return found


def fragment_deps(source: str) -> tuple[Dep, ...]:
    """The crates the cell's ```` ```cargo ```` block declares (empty without one)."""
    found = fragment(source)
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
    return tuple(_fragment_dep(name, value, where) for name, value in table.items())


def _fragment_dep(name: str, value: object, where: str) -> Dep:
    what = f"{where}, {name}"
    _check_name(name, what)
    if isinstance(value, str):
        return Dep(name, _check_version(value, what))
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
        _check_name(package, f"{what}, package")
    return Dep(
        name,
        _check_version(version, what),
        _check_features(features, what),
        default_features=spellings[0] if spellings else True,
        package=package,
    )


# --- just enough semver --------------------------------------------------------------------

Version = tuple[int, int, int, tuple[str, ...]]

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def parse_version(text: str) -> Version:
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a semver version: {text!r}")
    pre = tuple(match[4].split(".")) if match[4] else ()
    return int(match[1]), int(match[2]), int(match[3]), pre


def _key(v: Version) -> tuple[Any, ...]:
    """Semver precedence: numeric parts, then a release above its pre-releases."""
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in v[3])
    return (*v[:3], 0 if v[3] else 1, idents)


def version_key(text: str) -> tuple[Any, ...]:
    """Sort key for a version string, in semver precedence."""
    return _key(parse_version(text))


def compat_class(text: str) -> tuple[int, ...]:
    """The semver-compatible range a version belongs to (``1.x``, ``0.4.x``, ``0.0.3``):
    cargo resolves one version per range, so a lock should hold one per range too."""
    major, minor, patch, _ = parse_version(text)
    if major:
        return (major,)
    if minor:
        return (0, minor)
    return (0, 0, patch)


def satisfies(version: str, requirement: str) -> bool:
    """Whether cargo would accept ``version`` for ``requirement`` (``1``, ``^0.4``,
    ``~1.2``, ``=1.2.3``, ``>=1.2, <2``, ``1.*``); pre-releases only when asked for."""
    try:
        have = parse_version(version)
    except ValueError:
        return False
    if requirement.strip() in ("", "*"):
        return not have[3]
    comparators = [c.strip() for c in requirement.split(",")]
    if have[3] and not any("-" in c for c in comparators):
        return False
    return all(_matches(have, c) for c in comparators)


def _matches(have: Version, comparator: str) -> bool:
    match = re.fullmatch(
        r"(=|\^|~|[<>]=?)?(\d+)(?:\.(\d+|\*))?(?:\.(\d+|\*))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?", comparator
    )
    if match is None:
        return False
    # A bare requirement is a caret one, except that a wildcard (``1.2.*``) is a tilde one.
    op = match[1] or ("~" if "*" in comparator else "^")
    major = int(match[2])
    minor = None if match[3] in (None, "*") else int(match[3])
    patch = None if match[4] in (None, "*") else int(match[4])
    pre = tuple(match[5].split(".")) if match[5] else ()
    low = (major, minor or 0, patch or 0)
    got = have[:3]
    lowest: Version = (*low, pre)

    def ge(v: Version) -> bool:
        return _cmp(have, v) >= 0

    if op == "=":
        if patch is not None:
            return got == low and have[3] == pre
        return got[0] == major and (minor is None or got[1] == minor)
    if op == "^":
        if major > 0 or minor is None:
            upper: tuple[int, ...] = (major + 1, 0, 0)
        elif minor > 0 or patch is None:
            upper = (0, minor + 1, 0)
        else:
            upper = (0, 0, patch + 1)
        return ge(lowest) and got < upper
    if op == "~":
        upper = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
        return ge(lowest) and got < upper
    exact: Version = (major, minor or 0, patch or 0, pre)
    if op == ">=":
        return ge(exact)
    if op == "<":
        return _cmp(have, exact) < 0
    if op == "<=":
        if patch is None:
            bump = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
            return got < bump
        return _cmp(have, exact) <= 0
    # ">"
    if patch is None:
        bump = (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
        return got >= bump
    return _cmp(have, exact) > 0


def _cmp(a: Version, b: Version) -> int:
    ka, kb = _key(a), _key(b)
    return (ka > kb) - (ka < kb)
