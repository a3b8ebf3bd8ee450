"""A cell's extra crates: the ```cargo fragment at the top of a cell, --dep with
features, their merge, and the checks that keep anything else out of the manifest.
The builds are real (cargo, crates.io)."""

from __future__ import annotations

import pytest

from ipy_rustasync import crate, deps
from ipy_rustasync.cells import cell_deps
from ipy_rustasync.deps import Dep
from ipy_rustasync.errors import RustAsyncUsageError

from .conftest import Shell, cell


def fragment(*toml: str, prefix: str = "//!") -> str:
    lines = ["```cargo", *toml, "```"]
    return "".join(f"{prefix} {line}\n" for line in lines) + "pub fn f() -> u8 { 1 }\n"


def test_fragment_declares_versions_features_and_aliases() -> None:
    source = fragment(
        "[dependencies]",
        'itoa = "1"',
        'smallvec = { version = "1.13", features = ["union", "const_generics"] }',
        'json = { package = "serde_json", version = "1", default-features = false }',
    )
    assert deps.fragment_deps(source) == (
        Dep("itoa", "1"),
        Dep("smallvec", "1.13", ("const_generics", "union")),
        Dep("json", "1", default_features=False, package="serde_json"),
    )
    manifest = crate.manifest(crate.CellSpec(source, deps=deps.fragment_deps(source)))
    assert 'itoa = "1"\n' in manifest
    assert 'smallvec = { version = "1.13", features = ["const_generics", "union"] }' in manifest
    assert 'json = { version = "1", package = "serde_json", default-features = false }' in manifest


def test_plain_comments_and_dotted_tables_work_too() -> None:
    source = fragment("[dependencies.smallvec]", 'version = "1"', "default_features = false", prefix="//")
    assert deps.fragment_deps(source) == (Dep("smallvec", "1", default_features=False),)


def test_no_fragment_and_other_comments_are_left_alone() -> None:
    assert deps.fragment_deps("//! A module doc.\n/// ```\n/// let x = 1;\n/// ```\npub fn f() {}\n") == ()
    assert deps.fragment("pub fn f() {}\n") is None


D = "[dependencies]"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ([D, 'itoa = { path = "../itoa" }'], "itoa: `path` dependencies are not supported in a cell"),
        ([D, 'itoa = { git = "https://example.com/itoa" }'], "itoa: `git` dependencies are not supported"),
        ([D, 'itoa = { version = "1", registry = "mine" }'], "`registry` dependencies are not supported"),
        ([D, 'itoa = { version = "1", optional = true }'], "itoa: `optional` is not supported"),
        (["[package]", 'name = "x"'], "may only have a [dependencies] table; [package] is not supported"),
        ([D, 'itoa = "1"', "[features]", "a = []"], "[features] is not supported"),
        (['edition = "2021"'], "`edition` is outside it (a [dependencies] line missing?)"),
        (['itoa = "1"'], "`itoa` is outside it"),
        ([D, '"evil\\" = 1 #" = "1"'], "a crate name is letters"),
        ([D, 'itoa = "1\\"\\nevil = \\"2"'], "is not a cargo version requirement"),
        ([D, 'itoa = { version = "1", features = ["a\\"b"] }'], "is not a feature name"),
        ([D, 'itoa = { version = "1", default-features = "no" }'], "give default-features once, as true or false"),
        ([D, 'pyo3 = "0.22"'], "every cell already depends on pyo3"),
        ([D, "itoa = 1"], "give a version string or a table"),
        (["[dependencies"], "is not valid TOML"),
    ],
)
def test_fragment_refuses_anything_but_crates_io_dependencies(toml: list[str], message: str) -> None:
    with pytest.raises(RustAsyncUsageError, match="the ```cargo block") as err:
        deps.fragment_deps(fragment(*toml))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_fragment_must_lead_and_be_closed() -> None:
    late = "pub fn f() {}\n" + fragment("[dependencies]", 'itoa = "1"')
    with pytest.raises(RustAsyncUsageError, match=r"at cell line 2 must come first in the cell"):
        deps.fragment_deps(late)
    with pytest.raises(RustAsyncUsageError, match="is not closed"):
        deps.fragment_deps("//! ```cargo\n//! [dependencies]\npub fn f() {}\n")
    with pytest.raises(RustAsyncUsageError, match="is not closed"):
        deps.fragment_deps("//! ```cargo\n// [dependencies]\n//! ```\npub fn f() {}\n")


def test_dep_flag_takes_features_in_brackets() -> None:
    assert Dep.parse("smallvec[union, const_generics]@1") == Dep("smallvec", "1", ("const_generics", "union"))
    assert Dep.parse("smallvec[union]") == Dep("smallvec", "*", ("union",))
    assert str(Dep.parse("smallvec[union]@1")) == "smallvec[union]@1"
    assert str(Dep.parse("itoa@1")) == "itoa@1"  # unchanged: the module hash of old cells stays
    with pytest.raises(RustAsyncUsageError, match="is not a feature name"):
        Dep.parse('smallvec[a"]@1')
    with pytest.raises(RustAsyncUsageError, match="a crate name is letters"):
        Dep.parse('evil" = 1')
    with pytest.raises(RustAsyncUsageError, match="is not a cargo version requirement"):
        Dep.parse("itoa@1\n[patch]")
    with pytest.raises(RustAsyncUsageError, match=r"write NAME, NAME@VERSION or NAME\[FEATURE,...\]@VERSION"):
        Dep.parse("itoa[a,\n[patch]]@1")


def test_fragment_and_flags_merge_and_a_version_clash_is_one_sentence() -> None:
    source = fragment("[dependencies]", 'smallvec = { version = "1", features = ["union"] }')
    assert cell_deps(source, ["smallvec[const_generics]", "itoa@1"]) == (
        Dep("itoa", "1"),
        Dep("smallvec", "1", ("const_generics", "union")),
    )
    with pytest.raises(RustAsyncUsageError) as err:
        cell_deps(source, ["smallvec@0.6"])
    assert str(err.value) == (
        "the ```cargo block and --dep ask for different versions of smallvec (1 and 0.6); keep one"
    )


@pytest.mark.parametrize(
    ("version", "requirement", "expected"),
    [
        ("1.0.19", "1", True),
        ("1.0.19", "=1.0.15", False),
        ("1.0.15", "=1.0.15", True),
        ("1.3.0", "1.2.*", False),
        ("1.2.9", "1.2.*", True),
        ("0.5.0", "^0.4", False),
        ("0.4.9", "0.4", True),
        ("0.0.4", "0.0.3", False),
        ("1.2.9", "~1.2.3", True),
        ("1.0.19", ">=1.0.17, <2", True),
        ("1.0.16", ">=1.0.17, <2", False),
        ("1.0.0-alpha", "*", False),
        ("1.2.7", "<=1.2", True),
        ("1.2.7", ">1.2", False),
    ],
)
def test_semver_requirements_as_cargo_reads_them(version: str, requirement: str, expected: bool) -> None:
    assert deps.satisfies(version, requirement) is expected


# --- real builds -----------------------------------------------------------------------


def test_a_cell_carries_its_own_dependency_table(shell: Shell) -> None:
    shell.rust(
        """
        //! ```cargo
        //! [dependencies]
        //! itoa = "1"
        //! smallvec = { version = "1", features = ["union"] }
        //! ```
        use smallvec::SmallVec;

        pub async fn digits(n: i64) -> Vec<String> {
            let mut v: SmallVec<[String; 4]> = SmallVec::new();
            v.push(itoa::Buffer::new().format(n).to_owned());
            v.into_vec()
        }
        """
    )
    assert shell.run("await digits(-7)") == ["-7"]


def test_dep_flag_features_and_the_fragment_merge(shell: Shell) -> None:
    shell.rust(
        """
        // ```cargo
        // [dependencies]
        // smallvec = "1"
        // ```
        pub fn inline_len() -> usize { smallvec::SmallVec::<[u8; 8]>::from_slice(&[1, 2, 3]).len() }
        """,
        "--dep smallvec[const_generics]@1 --dep itoa@1",
    )
    assert shell.ns["inline_len"]() == 3


def test_the_fragment_keeps_the_cells_line_numbers(shell: Shell) -> None:
    err = shell.fails(
        "%%rust_async\n"
        + cell(
            """
            //! ```cargo
            //! [dependencies]
            //! itoa = "1"
            //! ```
            pub fn broken() -> u8 { "not a number" }
            """
        )
    )
    assert "cell line 5" in str(err)


def test_a_bad_fragment_is_a_one_line_error_before_any_build(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.ip.run_cell(
        '%%rust_async\n//! ```cargo\n//! [dependencies]\n//! itoa = { git = "https://x" }\n//! ```\npub fn f() {}\n'
    )
    assert not result.success
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "`git` dependencies are not supported in a cell" in text
    assert "Traceback" not in text
