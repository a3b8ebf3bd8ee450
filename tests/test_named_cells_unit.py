"""Named cells without building: which named cells a cell's source uses, which names a
cell may take, what enters the hash and the generated crate (``_sources/crate.py``)."""

from __future__ import annotations

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cells
from ipy_rustasync._sources import crate
from ipy_rustasync._sources.deps import Dep

KNOWN = ["orders", "stock", "ord"]


@pytest.mark.parametrize(
    ("source", "used"),
    [
        ("use orders::{Order, total};", ["orders"]),
        ("pub fn f() -> u64 { orders::total(&[]) }", ["orders"]),
        ("use {orders::Order, stock :: Item};", ["orders", "stock"]),
        ("extern crate ord;", ["ord"]),
        ("let x = <orders::Order as Default>::default();", ["orders"]),
        ("use crate::orders::x; self::stock::y; super::ord::z;", []),  # ends in the name: a module path
        ("let orders = 1; self.stock.len(); ordering::X", []),  # not a path root
        ("fn orders_total() {} my_orders::x()", []),
        ("mod orders { pub fn f() {} } pub fn g() { orders::f() }", []),  # the cell's own module
        ("use std::collections as stock; stock::HashMap::<u8, u8>::new();", []),
    ],
)
def test_uses_finds_the_named_cells_a_source_names_as_a_path_root(source: str, used: list[str]) -> None:
    assert crate.uses(source, KNOWN) == used


@pytest.mark.parametrize("name", ["orders", "Orders2", "_private", "a"])
def test_a_rust_identifier_is_a_name(name: str) -> None:
    assert crate.check_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("9lives", "not a Rust identifier"),
        ("my-cell", "not a Rust identifier"),
        ("_", "not a Rust identifier"),
        ("fn", "taken"),
        ("std", "taken"),
        ("tokio", "taken"),
        ("ipy_rustasync", "taken"),
        ("ira_0123", "taken"),
    ],
)
def test_a_name_that_is_no_identifier_or_is_taken_is_refused(name: str, why: str) -> None:
    with pytest.raises(RustAsyncUsageError, match=why):
        crate.check_name(name)


def test_the_hash_covers_the_name_and_each_upstream_build() -> None:
    plain = crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True)
    named = crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True, name="orders")
    v1 = crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True, upstream=(crate.Upstream("orders", "ira_1"),))
    v2 = crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True, upstream=(crate.Upstream("orders", "ira_2"),))
    assert len({plain.module, named.module, v1.module, v2.module}) == 4


def test_a_named_cell_is_a_dylib_reexporting_its_items_and_knows_what_it_builds_on() -> None:
    base = crate.Upstream("base", "ira_b")
    spec = crate.CellSpec(
        source="pub fn f() {}\n",
        shared_runtime=True,
        name="orders",
        upstream=(crate.Upstream("mid", "ira_m", ("ira_b",)), base),
    )
    assert '"dylib"' in crate.manifest(spec)
    text = crate.lib_rs(spec, runtime=spec.runtime)
    assert "extern crate base;" in text and "extern crate mid;" in text
    assert text.rstrip().endswith("pub use cell::*;  // the named cell's items, for the cells that use it")
    assert spec.as_upstream() == crate.Upstream("orders", spec.module, ("ira_b", "ira_m"))
    # the cell's own lines do not move: the additions follow its closing brace
    plain = crate.lib_rs(crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True), runtime=spec.runtime)
    assert text.splitlines()[1:3] == plain.splitlines()[1:3]
    assert '"cdylib"' in crate.manifest(crate.CellSpec(source="pub fn f() {}\n", shared_runtime=True))


def _upstream(name: str, runtime: str | None, deps: tuple[Dep, ...] = ()) -> crate.Upstream:
    return crate.Upstream(name, f"ira_{name:0>16}"[:20], (), runtime, deps)


def test_a_cell_builds_with_the_extra_crates_of_the_named_cells_it_uses() -> None:
    itoa, smallvec = Dep("itoa", "1"), Dep("smallvec", "1")
    assert cells.with_upstream_deps((), []) == ()
    assert cells.with_upstream_deps((smallvec,), [_upstream("a", "rt", (itoa,))]) == (itoa, smallvec)
    with pytest.raises(
        RustAsyncUsageError, match=r"the cell named `a` and this cell ask for different versions of itoa"
    ):
        cells.with_upstream_deps((Dep("itoa", "0.4"),), [_upstream("a", "rt", (itoa,))])


def test_a_cell_whose_runtime_would_differ_from_its_named_cells_is_told_what_to_change() -> None:
    spec = crate.CellSpec("pub fn f() {}\n")
    if spec.runtime is None:
        pytest.skip("the shared runtime is off here")
    same = crate.CellSpec("pub fn f() {}\n", upstream=(_upstream("a", spec.runtime),))
    cells.check_runtime(same, own=())  # the same runtime: nothing to say
    two = crate.CellSpec("pub fn f() {}\n", upstream=(_upstream("a", spec.runtime), _upstream("b", "ira_rt_other")))
    with pytest.raises(
        RustAsyncUsageError, match=r"the cells named `a` and `b` were built with different extra crates"
    ):
        cells.check_runtime(two, own=())
    itoa = Dep("itoa", "1")
    more = crate.CellSpec("pub fn f() {}\n", deps=(itoa,), upstream=(_upstream("a", spec.runtime),))
    with pytest.raises(RustAsyncUsageError, match=r"add them to that cell \(--dep itoa@1\) and re-run it first"):
        cells.check_runtime(more, own=(itoa,))
    other = crate.CellSpec("pub fn f() {}\n", upstream=(_upstream("a", "ira_rt_elsewhere"),))
    with pytest.raises(RustAsyncUsageError, match=r"the cell named `a` was built with other build settings"):
        cells.check_runtime(other, own=())
