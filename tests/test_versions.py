"""versions.py: the one version question answered without cargo (does a pinned version
meet a requirement), checked against what cargo's own ``semver`` crate answers.

The expected values were printed by a small program around ``semver::VersionReq::matches``
(semver 1.x, the crate cargo uses); the cases are those where Python's semver libraries
part ways with cargo: carets on ``0.x``, bare requirements, wildcards, partial
comparators and pre-releases. Fast: no cargo runs here (test_lockfile.py has the check
against a real ``cargo update``)."""

from __future__ import annotations

import pytest

from ipy_rustasync._sources import versions

CARGO_SAYS = [
    ("1.0.19", "1", True),
    ("1.0.19", "=1.0.15", False),
    ("1.0.15", "=1.0.15", True),
    ("1.3.0", "1.2.*", False),
    ("1.2.9", "1.2.*", True),
    ("0.5.0", "^0.4", False),
    ("0.4.9", "0.4", True),
    ("0.0.4", "0.0.3", False),
    ("0.0.3", "0.0.3", True),
    ("0.1.0", "^0.0", False),
    ("0.5.0", "0", True),
    ("1.0.0", "0", False),
    ("1.2.9", "~1.2.3", True),
    ("1.3.0", "~1.2.3", False),
    ("1.9.0", "~1", True),
    ("1.0.19", ">=1.0.17,<2", True),
    ("1.0.16", ">=1.0.17,<2", False),
    ("1.0.15", ">=1.0.15, <1.0.16", True),
    ("1.0.0-alpha", "*", False),
    ("1.2.7", "<=1.2", True),
    ("1.2.7", ">1.2", False),
    ("1.3.0", ">1.2", True),
    ("1.2.0", "<1.2", False),
    ("1.2.7", "=1.2", True),
    ("2.0.0", "=1", False),
    ("1.2.3-beta", "^1.2.3-beta", True),
    ("1.2.3-beta.2", "~1.2.3-beta", True),
    ("1.2.7", "^1.2.3-beta", True),
    ("1.0.0-alpha.1", "1.0.0-alpha", True),
    ("2.0.0-pre", "^2.0.0-pre", True),
    ("1.2.3", ">=1.2.3-beta.1,<1.3", True),
    ("1.2.3-beta.2", ">=1.2.3-beta.1,<1.3", True),
    ("3.1.4+build.5", "3.1.4", True),
    ("0.0.0", "^0.0.3-x", False),
    # a pre-release only for a comparator naming one of the same major.minor.patch
    ("1.2.0-rc.1", "1.0.0-alpha", False),
    ("1.2.3-beta", ">=1.2.0-alpha", False),
    ("1.0.0-alpha.1", "<1.2.3-beta.2", False),
    ("1.2.3-beta", "<1.2.3", False),
    ("1.2.3-beta.2", "<1.2.3-beta.2", False),
    ("1.0.0", "=1.0.0-alpha", False),
    ("2.0.0-pre", "<2", False),
]


@pytest.mark.parametrize(("version", "requirement", "expected"), CARGO_SAYS)
def test_requirements_mean_what_cargo_says(version: str, requirement: str, expected: bool) -> None:
    assert versions.matches(version, requirement) is expected


def test_newest_takes_the_highest_accepted_version() -> None:
    locked = ["1.0.15", "1.0.19", "0.4.8", "1.1.0-rc.1"]
    assert versions.newest(locked, "1") == "1.0.19"
    assert versions.newest(locked, "~1.0.15") == "1.0.19"
    assert versions.newest(locked, "0.4") == "0.4.8"
    assert versions.newest(locked, "=1.1.0-rc.1") == "1.1.0-rc.1"
    assert versions.newest(locked, ">=2") is None
    assert versions.newest([], "*") is None


def test_versions_sort_in_semver_precedence() -> None:
    ordered = ["0.0.3", "0.4.8", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0", "1.0.10", "1.2.0", "10.0.0"]
    assert sorted(reversed(ordered), key=versions.key) == ordered


def test_compatible_ranges_are_cargos() -> None:
    assert versions.compatible_range("1.0.15") == versions.compatible_range("1.9.0") == (1,)
    assert versions.compatible_range("0.4.8") == (0, 4) != versions.compatible_range("0.5.0")
    assert versions.compatible_range("0.0.3") == (0, 0, 3) != versions.compatible_range("0.0.4")


@pytest.mark.parametrize("text", ["1.0", "1.0.0.0", "v1.0.0", " 1.0.0", "01.0.0", "1.0.0-", "", "=1.0.0"])
def test_only_versions_as_cargo_writes_them_are_valid(text: str) -> None:
    assert not versions.valid(text)
    assert not versions.matches(text, "*")
    with pytest.raises(ValueError, match="not a semver version"):
        versions.key(text)
    assert versions.valid("0.11.0+wasi-snapshot-preview1") and versions.valid("1.0.0-rc.1")
