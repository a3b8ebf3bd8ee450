"""Cargo's version rules, for the one question that must be answered without cargo.

Cargo answers every version question of a build itself: ``cargo update`` resolves a
cell's crates (lockfile.resolve), and the cell crate's Cargo.lock says which version
each of its dependencies got (cargolock.resolved_closure). One question is asked
before any cargo runs: does the notebook's lock sidecar already pin a version each
extra crate accepts? The answer names the module, so an unchanged cell with an
unchanged sidecar loads from the cache without starting cargo (the README promises
it; a ``cargo update`` costs about half a second).

That check uses ``node-semver`` (a port of npm's own ``semver``): cargo's requirement
syntax is npm's range syntax, with two spellings apart, so a requirement is rewritten
(a bare ``1.2`` gets the caret cargo implies, comparators are joined by spaces instead
of commas) and npm's rules do the rest, pre-releases included. ``packaging`` speaks
PEP 440, not semver (it has no ``^``); ``semantic_version``'s ``NpmSpec`` and
``SimpleSpec`` were measured against cargo's own ``semver`` crate and differ on
pre-releases and on carets of ``0.x``; node-semver agreed on every one of 1368
version/requirement pairs, a sample of which tests/test_versions.py keeps.

What remains ours is cargo's notion of a compatible range (``compatible_range``),
which no library exposes: it is what a Cargo.lock holds one version of.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

#: A comparator without an operator (``1.2``): cargo reads it as ``^1.2`` (but a
#: wildcard ``1.2.*`` stays as it is, in both).
_BARE = re.compile(r"\d[^*]*")


def _semver() -> Any:
    """node-semver, imported on first use: it compiles some forty patterns when
    imported, and only cells with extra crates ever need it."""
    import nodesemver  # type: ignore[import-untyped]

    return nodesemver


@functools.lru_cache(maxsize=4096)
def _parse(version: str) -> Any:
    """The parsed version, or None if ``version`` is not a semver version as cargo
    writes them (node-semver also takes a leading ``v``, which cargo does not)."""
    return _semver().valid(version, False) if version[:1].isdigit() else None


def valid(version: str) -> bool:
    """Whether ``version`` is a semver version (``1.0.15``, ``1.0.0-rc.1``, ``0.11.0+wasi``)."""
    return _parse(version) is not None


def _npm_range(requirement: str) -> str:
    parts = [c.strip() for c in requirement.split(",")]
    return " ".join("^" + c if _BARE.fullmatch(c) else c for c in parts if c)


def matches(version: str, requirement: str) -> bool:
    """Whether cargo would accept ``version`` for ``requirement`` (``1``, ``^0.4``,
    ``~1.2``, ``=1.2.3``, ``>=1.2, <2``, ``1.*``, ``*``); a pre-release only when a
    comparator names one of the same ``major.minor.patch``."""
    parsed = _parse(version)
    if parsed is None:
        return False
    return bool(_semver().satisfies(parsed, _npm_range(requirement) or "*", loose=False))


def newest(versions: Iterable[str], requirement: str) -> str | None:
    """The highest of ``versions`` that ``requirement`` accepts, as cargo prefers it
    among locked versions; None if it accepts none."""
    accepted = [v for v in versions if matches(v, requirement)]
    return max(accepted, key=key) if accepted else None


def _checked(version: str) -> Any:
    parsed = _parse(version)
    if parsed is None:
        raise ValueError(f"not a semver version: {version!r}")
    return parsed


def _compare(a: Any, b: Any) -> int:
    """Semver precedence (numbers, then a release above its pre-releases), node-semver's."""
    return int(a.compare(b))


_PRECEDENCE = functools.cmp_to_key(_compare)


def key(version: str) -> Any:
    """Sort key for a version string, in semver precedence (how cargo sorts a lock)."""
    return _PRECEDENCE(_checked(version))


def compatible_range(version: str) -> tuple[int, ...]:
    """The semver-compatible range a version belongs to (``1.x``, ``0.4.x``, ``0.0.3``),
    in cargo's sense: the leftmost non-zero number. Cargo resolves one version per range
    in a graph, so a lock holds one per range too."""
    parsed = _checked(version)
    major, minor, patch = int(parsed.major), int(parsed.minor), int(parsed.patch)
    if major:
        return (major,)
    if minor:
        return (0, minor)
    return (0, 0, patch)
