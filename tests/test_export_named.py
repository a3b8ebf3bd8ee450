"""Exporting named cells, for real (issue 14): ``notebooks/named_cells.ipynb``
(two named cells, one of them re-run with an edit, a ``#[pyclass]`` and a ``static``
used across cells) becomes one maturin project, built with ``maturin build --locked``,
installed into a fresh venv, its generated tests run there, and the installed module
checked: one static, one class, the edited cell's code; and one named cell exported by
the magic's ``--export``. The composed files are tested
without building in ``test_export_named_unit.py``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import toolchain

from .conftest import ROOT, Shell
from .test_export import EXPORTS, fresh_venv, maturin_build, points_back, run_generated_tests, run_installed

pytestmark = pytest.mark.skipif(not toolchain.shared_runtime(), reason="named cells need the shared runtime")

CHECK = """
import asyncio, shop, shop.pricing
from shop.orders import Order

basket = [Order("tea", 2, 450), Order("scone", 3, 275), Order("jam", 1, 600)]
print(shop.total(basket))
print(asyncio.run(shop.checkout(basket, 10)))
print(shop.quote("jam", 2, 600))
print(shop.priced_so_far(), shop.pricing.priced_so_far())
print(shop.pricing.price(basket[0], 50), shop.priced_so_far())
print(shop.Order is shop.orders.Order is type(basket[0]), shop.price is shop.pricing.price)
print(sorted(shop.pricing.__ira_exports__)[0][0], "Order" in dir(shop.pricing))
import pickle
print(shop.Order.__module__, pickle.loads(pickle.dumps(shop.Order)) is shop.Order)
"""


def test_the_named_cells_notebook_exports_as_a_package_with_a_submodule_per_named_cell(tmp_path: Path) -> None:
    notebook = tmp_path / "named_cells.ipynb"
    shutil.copy(ROOT / "notebooks" / "named_cells.ipynb", notebook)
    project = EXPORTS / "shop"
    cli = [sys.executable, "-m", "ipy_rustasync._front.cli", "export", str(project), "--name", "shop", str(notebook)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr
    # six cells ran; the first `pricing` was replaced by the second, so five are exported
    assert f"exported 5 cells as the module shop (6 exports) to {project}" in out.stdout
    assert "its named cells are the submodules shop.orders, shop.pricing" in out.stdout

    root = tomllib.loads((project / "Cargo.toml").read_text())
    assert root["workspace"]["members"] == ["crates/orders", "crates/pricing"]
    assert root["dependencies"]["pricing"] == {"path": "crates/pricing"}
    pricing = tomllib.loads((project / "crates" / "pricing" / "Cargo.toml").read_text())
    assert pricing["lib"]["crate-type"] == ["rlib"] and pricing["dependencies"]["orders"] == {"path": "../orders"}
    assert "discount_pct.min(5)" in (project / "crates" / "pricing" / "src" / "lib.rs").read_text()  # the edit
    lib = (project / "src" / "lib.rs").read_text()
    assert lib.count("mod cell_") == 3  # checkout, quote, checkout again: the unnamed cells
    lock = tomllib.loads((project / "Cargo.lock").read_text())["package"]
    paths = {p["name"] for p in lock if "source" not in p}
    assert {"orders", "pricing", "shop", "ipy-rustasync", "ipy-rustasync-macros"} == paths
    assert not [p for p in project.rglob("*") if p.is_file() and "ira_rt_" in p.read_text(errors="replace")]
    assert points_back(project) == []

    wheel = maturin_build(project, tmp_path / "wheels")
    python = fresh_venv(tmp_path / "venv", wheel)
    # exports; shop.orders and shop.pricing with theirs; the module's objects are theirs
    assert "4 passed" in run_generated_tests(python, project, tmp_path)
    done = run_installed(python, CHECK, tmp_path)
    assert done.splitlines() == [
        "2325",  # orders' total of Order objects
        "2208",  # another cell's checkout takes orders' class, and prices with the edited pricing (5% cap)
        "1200",  # quote, built against the first pricing in the notebook, uses the edited one here
        "4 4",  # one PRICED static, counted from checkout's and quote's cells, read through either module
        "855 5",  # pricing's own function: the cap, the same counter
        "True True",  # one class; the module's functions are the submodule's objects
        "price False",  # the submodule holds its own cell's exports only
        "shop.orders True",  # the class names the submodule it lives in, so pickle finds it there
    ]


TICKETS = """
use std::sync::atomic::{AtomicU64, Ordering};
use pyo3::prelude::*;

pub static ISSUED: AtomicU64 = AtomicU64::new(0);

#[pyclass(get_all)]
pub struct Ticket { pub n: u64 }

pub fn ticket() -> Ticket { Ticket { n: ISSUED.fetch_add(1, Ordering::SeqCst) + 1 } }
pub async fn issued() -> u64 { ISSUED.load(Ordering::SeqCst) }
"""


def test_the_magic_exports_one_named_cell_as_a_package_and_refuses_a_cell_using_one(
    shell: Shell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = EXPORTS / "ticketing"
    shell.rust(TICKETS, f"--name export_tickets --export {project}")
    said = capsys.readouterr().out
    assert f"exported 1 cell as the module ticketing (3 exports) to {project}" in said
    assert "its named cells are the submodules ticketing.export_tickets" in said
    assert (project / "crates" / "export_tickets" / "Cargo.toml").is_file()

    wheel = maturin_build(project, tmp_path / "wheels")
    python = fresh_venv(tmp_path / "venv", wheel)
    # exports; issued() awaited; the submodule; the module's objects are the submodule's
    assert "4 passed" in run_generated_tests(python, project, tmp_path)
    check = (
        "import asyncio, ticketing\n"
        "from ticketing.export_tickets import ticket\n"
        "print(ticket().n, ticketing.ticket().n, asyncio.run(ticketing.issued()), type(ticket()).__module__)\n"
    )
    done = run_installed(python, check, tmp_path)
    assert done.split() == ["1", "2", "2", "ticketing.export_tickets"]

    # A cell that uses a named cell cannot be exported alone (its crates are other cells').
    err = shell.fails(
        f"%%rust_async --export {tmp_path / 'alone'}\npub fn first() -> u64 {{ export_tickets::ticket().n }}\n"
    )
    assert isinstance(err, RustAsyncUsageError)
    assert "it uses the named cells `export_tickets`: export the notebook instead" in str(err)
    assert shell.run("first()") == 1  # the cell itself ran and was bound
    assert not (tmp_path / "alone").exists()
