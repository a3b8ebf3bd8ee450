"""Named cells (issue 14): ``%%rust_async --name orders`` builds the cell as a Rust
``dylib`` (still its Python module too) that later cells use from Rust as the crate
``orders``, linked, not copied: one copy of its statics and types per process. Real
builds through a real IPython shell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipy_rustasync._settings import toolchain

from .conftest import Shell
from .helpers import run_python

pytestmark = pytest.mark.skipif(not toolchain.shared_runtime(), reason="named cells need the shared runtime")

UPSTREAM = """
use std::sync::atomic::{{AtomicU64, Ordering}};
use pyo3::prelude::*;

pub static COUNTER: AtomicU64 = AtomicU64::new({start});

pub fn bump() -> u64 {{ COUNTER.fetch_add(1, Ordering::SeqCst) + 1 }}

#[pyclass]
pub struct Ticket {{ pub n: u64 }}

pub fn ticket(n: u64) -> Ticket {{ Ticket {{ n }} }}
"""


def test_a_static_is_one_object_and_a_pyclass_one_type_across_cells(shell: Shell) -> None:
    shell.rust(UPSTREAM.format(start=0), "--name named_one")
    shell.rust("pub fn bump_a() -> u64 { named_one::bump() }\n// a")
    shell.rust(
        """
        use named_one::{bump, Ticket};
        use pyo3::prelude::*;
        pub fn bump_b() -> u64 { bump() }
        pub fn read(t: PyRef<Ticket>) -> u64 { t.n }
        """
    )
    # one COUNTER: the named cell's own function and both downstream cells count on
    assert shell.run("[bump_a(), bump_b(), bump(), bump_a()]") == [1, 2, 3, 4]
    # a #[pyclass] object made by the named cell is accepted by another cell's function
    assert shell.run("read(ticket(41))") == 41
    assert shell.run("type(ticket(1)) is Ticket")


def test_an_edited_named_cell_makes_old_dependents_say_which_cell_to_rerun(shell: Shell) -> None:
    shell.rust(UPSTREAM.format(start=0), "--name named_two")
    shell.rust("pub fn uses_two() -> u64 { named_two::bump() }")
    assert shell.run("uses_two()") == 1
    shell.rust(UPSTREAM.format(start=100), "--name named_two")  # edited: a new build
    err = shell.fails("uses_two()")
    message = str(err)
    assert "`uses_two` was built against an earlier build of the cell named `named_two`" in message
    assert "re-run the cell that defines `uses_two`" in message
    assert "\n" not in message
    # re-running the dependent rebuilds it against the new build (a new hash) and links it
    shell.rust("pub fn uses_two() -> u64 { named_two::bump() }")
    assert shell.run("[uses_two(), bump()]") == [101, 102]


def test_a_named_cell_built_on_an_old_build_is_named_when_used(shell: Shell) -> None:
    shell.rust(UPSTREAM.format(start=0), "--name named_base")
    shell.rust("pub fn twice() -> u64 { named_base::bump() + named_base::bump() }", "--name named_mid")
    shell.rust("pub fn top() -> u64 { named_mid::twice() }")
    assert shell.run("top()") == 3
    shell.rust(UPSTREAM.format(start=10), "--name named_base")
    err = shell.fails("%%rust_async\npub fn top2() -> u64 { named_mid::twice() }\n")
    assert "the cell named `named_mid` was built against an earlier build of the cell named `named_base`" in str(err)
    assert "re-run the cell named `named_mid` first" in str(err)
    shell.rust("pub fn twice() -> u64 { named_base::bump() + named_base::bump() }", "--name named_mid")
    shell.rust("pub fn top2() -> u64 { named_mid::twice() }")
    assert shell.run("top2()") == 11 + 12


def test_reusing_a_name_replaces_the_cell(shell: Shell) -> None:
    shell.rust("pub fn first_only() -> u64 { 1 }\npub fn shared() -> u64 { 1 }", "--name named_re")
    shell.rust("pub fn second_only() -> u64 { 2 }\npub fn shared() -> u64 { 2 }", "--name named_re")
    assert "first_only" not in shell.ns  # the replaced cell's dropped function is taken back
    assert shell.run("[second_only(), shared()]") == [2, 2]
    shell.rust("pub fn via() -> u64 { named_re::second_only() * 10 + named_re::shared() }")
    assert shell.run("via()") == 22
    shell.fails("%%rust_async\npub fn gone() -> u64 { named_re::first_only() }\n")


def test_the_name_must_be_a_rust_identifier_and_free(shell: Shell) -> None:
    assert "not a Rust identifier" in str(shell.fails("%%rust_async --name 9lives\npub fn f() {}\n"))
    assert "taken" in str(shell.fails("%%rust_async --name tokio\npub fn f() {}\n"))


#: A fresh process (a kernel restart): the named cell and a dependent come from the
#: cache; the dependent is imported first, so the dynamic linker loads the named cell's
#: library through the dependent's RUNPATH before Python imports the named module.
FRESH = """
import json
from ipy_rustasync._pipeline.cells import compile_cell
up_src, down_src = json.loads(open(__import__("sys").argv[1]).read())
from ipy_rustasync._sources import crate
up_spec = crate.CellSpec(source=up_src, first_line=2, name="named_fresh")
down = compile_cell(down_src, first_line=2, known={"named_fresh": up_spec.as_upstream()})
first = down.module.bump_down()
up = compile_cell(up_src, first_line=2, name="named_fresh")
counts = [first, up.module.bump(), down.module.bump_down()]
# a process pool's worker imports the dependent by its pickled name: its own fresh copy
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    worker = [pool.submit(down.module.bump_down).result(), pool.submit(down.module.bump_down).result()]
print(json.dumps({"cached": [down.build.cached, up.build.cached], "counts": counts, "worker": worker}))
"""


def test_a_fresh_process_loading_the_dependent_first_still_has_one_copy(shell: Shell, tmp_path: Path) -> None:
    up = "\n".join(UPSTREAM.format(start=0).strip("\n").splitlines()) + "\n// fresh\n"
    down = "pub fn bump_down() -> u64 { named_fresh::bump() }\n"
    shell.rust(up, "--name named_fresh")
    shell.rust(down)
    args = tmp_path / "sources.json"
    args.write_text(json.dumps([up, down]))
    done = run_python(FRESH, str(args))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cached"] == [True, True]
    assert report["counts"] == [1, 2, 3]
    assert report["worker"] == [1, 2]


def test_a_name_this_kernel_has_not_run_says_to_run_that_cell_first(shell: Shell) -> None:
    err = shell.fails("%%rust_async\npub fn f() -> u64 { never_named::total() }\n")
    assert "run that cell (`%%rust_async --name never_named`) first in this kernel" in str(err.diagnostics[0].hint)  # type: ignore[attr-defined]


def test_an_object_from_an_older_build_is_a_type_error_not_a_crash(shell: Shell) -> None:
    shell.rust(UPSTREAM.format(start=0), "--name named_obj")
    reader = "use pyo3::prelude::*;\npub fn read_obj(t: PyRef<named_obj::Ticket>) -> u64 { t.n }"
    shell.rust(reader)
    shell.run("old_ticket = ticket(5)")
    assert shell.run("read_obj(old_ticket)") == 5
    old_build = shell.run("type(old_ticket).__module__").rsplit(".", 1)[-1]
    shell.rust(UPSTREAM.format(start=7), "--name named_obj")
    shell.rust(reader)  # rebuilt against the new build
    assert shell.run("read_obj(ticket(6))") == 6
    err = shell.fails("read_obj(old_ticket)")
    # the message names the build that made the object, not the same class name twice
    assert isinstance(err, TypeError)
    assert f"'Ticket (earlier build {old_build})' object is not an instance of 'Ticket'" in str(err)


def test_a_release_cell_uses_a_debug_named_cell_and_its_one_runtime(shell: Shell) -> None:
    """--release changes the cell's own code only: both profiles link one runtime library
    (crate.DEPENDENCY_PROFILE), so profiles may differ across named cells."""
    shell.rust(UPSTREAM.format(start=0), "--name named_prof --debug")
    shell.rust(
        "pub fn fast_bump() -> u64 { named_prof::bump() }\npub fn optimized() -> bool { !cfg!(debug_assertions) }",
        "--release",
    )
    assert shell.run("[bump(), fast_bump(), bump(), optimized()]") == [1, 2, 3, True]


def test_a_cell_inherits_the_extra_crates_of_the_named_cells_it_uses(shell: Shell) -> None:
    shell.rust(
        "pub fn digits(n: u64) -> String { itoa::Buffer::new().format(n).to_string() }\n"
        "pub static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);",
        "--name named_dep --dep itoa@1",
    )
    shell.rust(
        "use std::sync::atomic::Ordering;\n"
        "pub fn twice(n: u64) -> String { named_dep::SEEN.fetch_add(1, Ordering::SeqCst); named_dep::digits(n).repeat(2) }\n"
        "pub fn seen() -> u64 { named_dep::SEEN.load(Ordering::SeqCst) }"
    )
    assert shell.run("[twice(12), twice(3), seen()]") == ["1212", "33", 2]


def test_a_cell_adding_extra_crates_to_a_named_cells_runtime_is_told_in_one_sentence(shell: Shell) -> None:
    shell.rust("pub fn base() -> u64 { 5 }", "--name named_nodep")
    err = shell.fails("%%rust_async --dep itoa@1\npub fn plus() -> u64 { named_nodep::base() + 1 }\n")
    message = str(err)
    assert "this cell's extra crates (itoa@1) are not the cell named `named_nodep`'s" in message
    assert "add them to that cell (--dep itoa@1) and re-run it first" in message
    assert "\n" not in message
