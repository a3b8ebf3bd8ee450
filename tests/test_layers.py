"""The package's layers (pyproject.toml, ``[tool.importlinter]``; ARCHITECTURE.md): the
contracts hold, and they fail when a circle or an upward import comes back."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import ipy_rustasync.built
from ipy_rustasync import loader

from .helpers import run_python

ROOT = Path(__file__).resolve().parent.parent
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"
)


def lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the repository's contracts on the package in ``package_parent``
    (the working directory, which comes first on the path)."""
    return run_python(LINT, env={"PYTHONPATH": str(package_parent)}, cwd=package_parent, timeout=300)


def test_the_contracts_hold() -> None:
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "ipy_rustasync", tmp_path / "ipy_rustasync", ignore=shutil.ignore_patterns("__pycache__", "labextension")
    )
    return tmp_path / "ipy_rustasync"


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        # crate.py importing the package's front again: the circle issue 15 removed
        # (crate read ``__version__`` from the package's ``__init__``).
        ("crate", "magic"),
        # versions.py, of the pure lock-file and version logic, importing what runs cargo.
        ("versions", "toolchain"),
    ],
    ids=["a-circle-brought-back", "impure-lock-logic"],
)
def test_an_import_the_contracts_forbid_breaks_them(tmp_path: Path, module: str, imported: str) -> None:
    package = copy_of_package(tmp_path)
    source = package / f"{module}.py"
    source.write_text(source.read_text(encoding="utf-8") + f"\nfrom ipy_rustasync import {imported}  # noqa: E402\n")
    out = lint(tmp_path)
    assert out.returncode != 0, out.stdout
    assert f"ipy_rustasync.{module} -> ipy_rustasync.{imported}" in out.stdout, out.stdout


def test_the_loader_names_the_built_package_it_does_not_import() -> None:
    """loader.py names ``ipy_rustasync.built`` instead of importing it (built imports
    loader): the name must be that package's."""
    assert ipy_rustasync.built.__name__ == loader.BUILT_PACKAGE
    assert loader.importable_name("ira_0123456789abcdef") == f"{ipy_rustasync.built.__name__}.ira_0123456789abcdef"


def test_the_architecture_page_names_every_module() -> None:
    """ARCHITECTURE.md walks the package module by module: a module it does not name
    (added since), or one it names that is gone, means the page is out of date."""
    page = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    package = ROOT / "ipy_rustasync"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    named = set(re.findall(r"`([a-z_]+)(?:/|\.py)?`", page))
    assert sorted(modules - named) == [], "modules ARCHITECTURE.md does not name"
    in_layers = {m.strip() for line in layer_lines() for m in line.split(":")}
    assert in_layers == modules, "the layers contract and the package's modules differ"


def layer_lines() -> list[str]:
    """The layers of the contract in pyproject.toml, top to bottom."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        config = tomllib.load(fh)
    (layers,) = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return list(layers)
