"""A cell's extra crates as data: ``--dep`` flags parsed, every part checked, and the
declarations of several places (the ```` ```cargo ```` block, the flags, the cells of
an export) combined into one entry per crate.

Pure: no file, no process. Everything here is checked before it reaches a generated
``Cargo.toml``: names, version requirements and features are matched against strict
patterns (and the manifest is written by a TOML writer), so nothing a cell says can
add TOML of its own. Only crates.io dependencies are allowed (no ``path``, ``git`` or
``registry``): a cell's crate must build the same on every machine that has the
notebook, and the offline mode vendors crates.io only. The ```` ```cargo ```` block
itself is read by fragment.py.

A version requirement is checked for its syntax only, so a typo is one sentence
before anything runs; what it accepts is cargo's business (versions.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ipy_rustasync._base.errors import RustAsyncUsageError

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


def normalize(name: str) -> str:
    """Cargo and crates.io treat ``-`` and ``_`` (and case) in crate names alike."""
    return name.lower().replace("-", "_")


def check_name(name: str, what: str, how: str = "declaring it") -> None:
    """A crate name a cell may declare (``what`` starts the sentence if not)."""
    if not _NAME.fullmatch(name):
        raise RustAsyncUsageError(f"{what}: a crate name is letters, digits, '-' and '_', starting with a letter")
    if name.replace("_", "-") in RESERVED:
        raise RustAsyncUsageError(f"{what}: every cell already depends on {name}; use it without {how}")


def check_requirement(version: str, what: str) -> str:
    """The requirement without spaces (``*`` if empty), if it is one in cargo's syntax."""
    version = version.replace(" ", "") or "*"
    if version != "*" and not all(_REQ.fullmatch(part) for part in version.split(",")):
        raise RustAsyncUsageError(f"{what}: {version!r} is not a cargo version requirement (e.g. 1, 1.2, =1.2.3, ^0.4)")
    return version


def check_features(features: Iterable[str], what: str) -> tuple[str, ...]:
    """The features, sorted and once each, if every one is a feature name."""
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
        check_name(name, f"--dep {name}" if _NAME.fullmatch(name) else f"--dep {text!r}", "--dep")
        match = _FLAG.fullmatch(text.strip())
        if match is None:
            raise RustAsyncUsageError(f"--dep {text!r}: write NAME, NAME@VERSION or NAME[FEATURE,...]@VERSION")
        version = check_requirement(match["version"] or "", f"--dep {text!r}")
        features = match["features"]
        parsed = [f.strip() for f in features.split(",") if f.strip()] if features is not None else []
        return cls(name, version, check_features(parsed, f"--dep {text!r}"))

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


def combine(*groups: tuple[str, Iterable[Dep]]) -> tuple[Dep, ...]:
    """One entry per crate from several ``(where, deps)`` groups (the ```` ```cargo ````
    block and the flags of a cell, or the cells of an export): features add up,
    ``default-features = false`` wins over the default, and two different version
    requirements are an error naming both places."""
    combined: dict[str, tuple[str, Dep]] = {}
    for origin, deps in groups:
        for dep in deps:
            key = normalize(dep.name)
            if key not in combined:
                combined[key] = (origin, dep)
                continue
            first_origin, first = combined[key]
            combined[key] = (first_origin, _combine_two(first_origin, first, origin, dep))
    return tuple(sorted(dep for _, dep in combined.values()))


def _combine_two(first_origin: str, first: Dep, origin: str, dep: Dep) -> Dep:
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
