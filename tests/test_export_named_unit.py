"""Exporting named cells without building (issue 14): the ``--name`` flag read from a
notebook, which definition of a name the project keeps and what is rebuilt against it,
and the files composed for it (the root crate, the named crates' manifests, the lock,
the generated test). ``test_export_named.py`` builds such a project for real."""

from __future__ import annotations

import sys
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cells, export
from ipy_rustasync._pipeline import export_templates as templates
from ipy_rustasync._sources import cargolock, cell_macro, crate


def test_notebook_cells_read_the_name_and_the_deps_of_each_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%%rust_async --name orders --dep itoa@1\npub fn a() {}"),
        nbformat.v4.new_code_cell("%%rust_async --release --name=pricing\npub fn b() {}\n"),
        nbformat.v4.new_code_cell("%%rust_async\nuse orders::X;\n"),
        nbformat.v4.new_code_cell("%%rust_async --name first --name last\npub fn c() {}\n"),
    ]
    path = tmp_path / "shop.ipynb"
    nbformat.write(nb, path)
    found = export.notebook_cells(path)
    assert [(s.name, list(s.flags)) for s in found] == [
        ("orders", ["itoa@1"]),
        ("pricing", []),
        (None, []),
        ("last", []),  # argparse's rule, as in the kernel: the last one counts
    ]
    assert found[0].text == "pub fn a() {}\n" and found[0].first_line == 2


# --- which definitions the project keeps, and what is rebuilt against them -----------------


def built(text: str, position: int, name: str | None = None, known: Mapping[str, crate.Upstream] = {}) -> export.Built:
    """A Built as export._build makes it (against ``known``), without building."""
    upstream = tuple(known[n] for n in crate.uses(text, [n for n in known if n != name]))
    spec = crate.CellSpec(source=text, first_line=2, shared_runtime=True, name=name, upstream=upstream)
    compiled = cells.Compiled(types.ModuleType(spec.module), [], build=None, spec=spec)  # type: ignore[arg-type]
    return export.Built(export.Source(text, name=name), compiled, cargolock.Lock(), position)


def run_in_order(sources: list[tuple[str, str | None]]) -> list[export.Built]:
    """What export() builds first: each cell against the named cells run before it."""
    out: list[export.Built] = []
    known: dict[str, crate.Upstream] = {}
    for position, (text, name) in enumerate(sources):
        out.append(built(text, position, name, dict(known)))
        if name is not None:
            known[name] = out[-1].compiled.spec.as_upstream()
    return out


@pytest.fixture
def rebuilt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions export._build is asked to build again (it builds nothing here)."""
    asked: list[int] = []

    def fake(source: export.Source, position: int, context: Any, known: Mapping[str, crate.Upstream]) -> export.Built:
        asked.append(position)
        return built(source.text, position, source.name, known)

    monkeypatch.setattr(export, "_build", fake)
    return asked


def against_final(run: list[export.Built]) -> list[export.Built]:
    first_run: dict[str, int] = {}
    for b in run:
        if b.source.name is not None:
            first_run.setdefault(b.source.name, b.position)
    return export._against_final(export._last_definitions(run), first_run, context=None)  # type: ignore[arg-type]


SHOP = [
    ("pub struct Order;\n", "orders"),
    ("use orders::Order;\npub fn price() {}\n", "pricing"),
    ("pub fn quote() { pricing::price() }\n", None),  # built against the first pricing
    ("use orders::Order;\npub fn price() {} // edited\n", "pricing"),
    ("pub fn checkout() { pricing::price() }\n", None),  # built against the edited one
]


def test_the_last_definition_of_a_name_is_kept_and_what_used_an_earlier_one_is_rebuilt(rebuilt: list[int]) -> None:
    run = run_in_order(SHOP)
    kept = against_final(run)
    assert [b.position for b in kept] == [0, 2, 3, 4]  # the first pricing is gone; the edit keeps its place
    assert rebuilt == [2]  # only quote: it was built against the first pricing
    final_pricing = kept[2].compiled.spec.as_upstream()
    assert kept[1].compiled.spec.upstream == (final_pricing,)
    assert kept[3] is run[4]  # checkout was built against the edited pricing already: kept as built


def test_a_named_cell_rebuilt_against_an_edit_is_what_its_users_are_built_against(rebuilt: list[int]) -> None:
    run = run_in_order(
        [
            ("pub fn base() {}\n", "base"),
            ("pub fn mid() { base::base() }\n", "mid"),
            ("pub fn base() {} // edited\n", "base"),
            ("pub fn top() { mid::mid() }\n", None),  # built against the mid built on the first base
        ]
    )
    kept = against_final(run)
    assert rebuilt == [1, 3]  # mid against the edited base, then top against that mid
    mid, base, top = kept  # the edited base at its own place, after mid
    assert [mid.position, base.position, top.position] == [1, 2, 3]
    assert mid.compiled.spec.upstream == (base.compiled.spec.as_upstream(),)
    assert top.compiled.spec.upstream == (mid.compiled.spec.as_upstream(),)


def test_named_cells_whose_last_versions_use_each_other_are_refused(rebuilt: list[int]) -> None:
    run = run_in_order(
        [
            ("pub fn a() {}\n", "a"),
            ("pub fn b() { a::a() }\n", "b"),
            ("pub fn a() { b::b() }\n", "a"),
        ]
    )
    with pytest.raises(RustAsyncUsageError, match=r"cells named `a`, `b` use each other"):
        against_final(run)


# --- the files ----------------------------------------------------------------------------------


def test_the_root_module_registers_named_cells_as_submodules_in_notebook_order() -> None:
    text = cell_macro.notebook_lib_rs(
        "shop",
        [
            cell_macro.Part("nb cell 1", crate="orders"),
            cell_macro.Part("nb cell 2", "use orders::Order;\npub fn a() {}\n"),
            cell_macro.Part("nb cell 4", crate="pricing"),
            ("nb cell 5", "pub fn b() {}"),
        ],
    )
    calls = [
        'named(m, "shop.orders", ::orders::__ira_register, &mut table)?;',
        "cell_1::register(m)?;",
        'named(m, "shop.pricing", ::pricing::__ira_register, &mut table)?;',
        "cell_2::register(m)?;",
    ]
    at = [text.index(call) for call in calls]
    assert at == sorted(at)
    assert "mod cell_3" not in text and "use orders::Order;" in text  # a named cell's source lives in its crate
    assert cell_macro.attribute("shop_cell_2", 0) in text
    # the submodule goes into sys.modules (import shop.orders) and its objects onto shop
    assert 'py.import("sys")?.getattr("modules")?.set_item(qualified, &sub)?;' in text
    assert "m.add(row.0.as_str(), from.getattr(row.0.as_str())?)?;" in text


def test_a_named_crate_is_an_rlib_named_as_the_cell_with_a_public_registration() -> None:
    up = crate.Upstream("orders", "ira_0123456789abcdef")
    spec = crate.CellSpec(
        source="use orders::Order;\n", first_line=2, shared_runtime=True, name="pricing", upstream=(up,)
    )
    files = export._named_crate("shop", spec)
    manifest = tomllib.loads(files["crates/pricing/Cargo.toml"])
    assert manifest["package"]["name"] == "pricing"
    assert manifest["lib"] == {"name": "pricing", "crate-type": ["rlib"], "path": "src/lib.rs"}
    assert manifest["dependencies"]["orders"] == {"path": "../orders"}
    assert manifest["dependencies"]["ipy-rustasync"] == {"path": "../../rust/bridge"}
    assert "profile" not in manifest and "workspace" not in manifest  # the root's apply
    lib = files["crates/pricing/src/lib.rs"]
    assert lib.startswith(cell_macro.attribute("shop.pricing", 0) + " mod cell {")  # classes name the submodule
    assert "extern crate orders;" in lib and "pub use cell::*;" in lib and "ira_rt_" not in lib
    assert f"pub fn {cell_macro.REGISTER_NAMED}(m: " in lib and f"    {cell_macro.REGISTER}(m)\n" in lib


def test_the_root_manifest_makes_the_named_crates_members_and_path_dependencies() -> None:
    text = crate.manifest(
        crate.CellSpec(source="", shared_runtime=True),
        name="shop",
        bridge="rust/bridge",
        exclude=["rust"],
        paths={"pricing": "crates/pricing", "orders": "crates/orders"},
    )
    manifest = tomllib.loads(text)
    assert manifest["workspace"] == {"exclude": ["rust"], "members": ["crates/orders", "crates/pricing"]}
    assert manifest["dependencies"]["orders"] == {"path": "crates/orders"}
    assert manifest["lib"]["crate-type"] == ["cdylib"]


def cell_lock(root: str, deps: list[str], extra: list[cargolock.Package] = ()) -> cargolock.Lock:  # type: ignore[assignment]
    runtime = crate.RUNTIME_PREFIX + "0123456789abcdef"
    shared = [cargolock.Package("pyo3", "0.30.1", cargolock.REGISTRY), cargolock.Package("ipy-rustasync", "0.1.0")]
    packages = [
        *shared,
        *extra,
        cargolock.Package(runtime, "0.1.0", dependencies=("ipy-rustasync 0.1.0", "pyo3 0.30.1")),
        cargolock.Package(
            root, "0.1.0", dependencies=(f"{runtime} 0.1.0", "ipy-rustasync 0.1.0", "pyo3 0.30.1", *deps)
        ),
    ]
    return cargolock.Lock(packages)


def test_the_lock_has_each_named_crate_as_a_path_package_and_no_runtime_crate() -> None:
    itoa = cargolock.Package("itoa", "1.0.15", cargolock.REGISTRY, "0" * 64)
    orders = built("pub struct Order;\n", 0, "orders")
    orders.lock = cell_lock(orders.compiled.spec.module, ["itoa 1.0.15"], [itoa])
    known = {"orders": orders.compiled.spec.as_upstream()}
    pricing = built("use orders::Order;\n", 1, "pricing", known)
    pricing.lock = cell_lock(pricing.compiled.spec.module, [])
    checkout = built("use pricing::price;\n", 2, None, {"pricing": pricing.compiled.spec.as_upstream()})
    checkout.lock = cell_lock(checkout.compiled.spec.module, [])
    lock = cargolock.parse(cargolock.render(export._project_lock("shop", [orders, pricing, checkout])), "lock")
    by_name = {p.name: p for p in lock.packages}
    assert set(by_name) == {"pyo3", "ipy-rustasync", "itoa", "orders", "pricing", "shop"}
    assert by_name["orders"].source == "" and by_name["orders"].dependencies == (
        "ipy-rustasync 0.1.0",
        "itoa 1.0.15",
        "pyo3 0.30.1",
    )
    assert "orders 0.1.0" in by_name["pricing"].dependencies
    # the root registers every named cell; a named cell's own crates are its crate's, not the root's
    assert by_name["shop"].dependencies == ("ipy-rustasync 0.1.0", "orders 0.1.0", "pricing 0.1.0", "pyo3 0.30.1")


def test_a_named_cell_may_not_share_its_name_with_an_export_or_a_crate() -> None:
    lock = cargolock.Lock([cargolock.Package("itoa", "1.0.15", cargolock.REGISTRY), cargolock.Package("itoa", "0.1.0")])
    with pytest.raises(RustAsyncUsageError, match="an export is also named `orders`"):
        export._check_named({"orders": []}, {"orders": ("sync", False)}, cargolock.Lock())
    with pytest.raises(RustAsyncUsageError, match="already depends on a crate of that name"):
        export._check_named({"itoa": []}, {}, lock)
    export._check_named({"orders": [("total", "sync")]}, {"total": ("sync", False)}, cargolock.Lock())


def run_generated(text: str, package: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs every test function of a generated test file against a stand-in package."""
    monkeypatch.setitem(sys.modules, package.__name__, package)
    for name in dir(package):
        if isinstance(getattr(package, name), types.ModuleType):
            monkeypatch.setitem(sys.modules, f"{package.__name__}.{name}", getattr(package, name))
    namespace: dict[str, Any] = {}
    exec(compile(text, "test_generated.py", "exec"), namespace)
    for name, test in namespace.items():
        if not name.startswith("test_"):
            continue
        parameters = test.__code__.co_varnames[: test.__code__.co_argcount]
        if parameters == ("cell",):
            for cell in namespace["SUBMODULES"]:
                test(cell)
        elif not parameters:
            test()


def test_the_generated_test_checks_each_submodule_and_that_the_objects_are_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = templates.generated_test(
        "shop",
        {"Order": ("class", False), "checkout": ("async", False)},
        {"orders": [("Order", "class")]},
        {"Order": "orders"},
    )

    class Order:
        pass

    orders = types.ModuleType("shop.orders")
    orders.Order = Order  # type: ignore[attr-defined]
    orders.__ira_exports__ = [("Order", "class", "class Order")]  # type: ignore[attr-defined]
    shop = types.ModuleType("shop")
    shop.orders = orders  # type: ignore[attr-defined]
    shop.Order = Order  # type: ignore[attr-defined]
    shop.checkout = lambda: None  # type: ignore[attr-defined]
    shop.__ira_exports__ = [("Order", "class", ""), ("checkout", "async", "")]  # type: ignore[attr-defined]
    run_generated(text, shop, monkeypatch)
    shop.Order = type("Order", (), {})  # type: ignore[attr-defined]  # another type of the same name
    with pytest.raises(AssertionError, match="Order"):
        run_generated(text, shop, monkeypatch)
    assert "SUBMODULES" not in templates.generated_test("shop", {"f": ("sync", False)})


def test_a_re_export_removes_the_crates_of_named_cells_it_no_longer_has(tmp_path: Path) -> None:
    spec = crate.CellSpec(source="pub fn f() {}\n", first_line=2, shared_runtime=True, name="old")
    for relative, text in export._named_crate("shop", spec).items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    (tmp_path / "crates" / "kept").mkdir()
    (tmp_path / "crates" / "kept" / "Cargo.toml").write_text(export.NAMED_HEADER + " kept\n")
    (tmp_path / "crates" / "mine").mkdir()  # the user's own crate: not written by an export
    (tmp_path / "crates" / "mine" / "Cargo.toml").write_text("[package]\nname = 'mine'\n")
    export._remove_stale_crates(tmp_path, {"kept"})
    assert sorted(p.name for p in (tmp_path / "crates").iterdir()) == ["kept", "mine"]
