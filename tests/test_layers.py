"""The package's layers (pyproject.toml, ``[tool.importlinter]``; ARCHITECTURE.md): the
contracts hold, and they fail when a circle or an upward import comes back."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import ipy_rustasync
import ipy_rustasync.built
from ipy_rustasync._pipeline import loader

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
        ("_sources.crate", "_front.magic"),
        # versions.py, of the pure lock-file and version logic, importing what runs cargo.
        ("_sources.versions", "_settings.toolchain"),
        # inside one layer: a build step importing the pipeline that drives it.
        ("_pipeline.build", "_pipeline.cells"),
    ],
    ids=["a-circle-brought-back", "impure-lock-logic", "upward-inside-a-layer"],
)
def test_an_import_the_contracts_forbid_breaks_them(tmp_path: Path, module: str, imported: str) -> None:
    package = copy_of_package(tmp_path)
    source = package.joinpath(*module.split(".")).with_suffix(".py")
    parent, name = imported.rsplit(".", 1)
    line = f"\nfrom ipy_rustasync.{parent} import {name}  # noqa: E402\n"
    source.write_text(source.read_text(encoding="utf-8") + line)
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
    modules = {p.stem for p in package.rglob("*.py") if p.stem != "__init__" and "_rust" not in p.parts}
    modules |= {p.parent.name for p in package.rglob("__init__.py") if p.parent != package}
    named = set(re.findall(r"`([a-z_]+)(?:/|\.py)?`", page))
    assert sorted(modules - named) == [], "modules ARCHITECTURE.md does not name"


def test_every_layer_is_a_private_subpackage_in_the_contract() -> None:
    """The tree shows the layers: the package's top level holds its public face
    (``__init__``), ``built`` (a name pickles store) and one private subpackage per
    layer, each in the layers contract, so a module cannot sit outside every layer."""
    package = ROOT / "ipy_rustasync"
    top = {p.name for p in package.iterdir() if p.name not in {"__pycache__", "py.typed", "_rust", "_kernel_ext"}}
    layers = {m.strip() for line in layer_lines() for m in line.split(":")}
    assert top - {"__init__.py"} == layers
    assert all(name.startswith("_") for name in layers - {"built"})


def test_what_is_public_is_what_the_readme_documents() -> None:
    """``ipy_rustasync.__all__`` is the public API: the README names each entry, and the
    exceptions say ``ipy_rustasync.<Name>`` in tracebacks, not their private module."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in ipy_rustasync.__all__ if name not in readme]
    assert missing == [], "public names the README does not document"
    for name in ipy_rustasync.__all__:
        obj = getattr(ipy_rustasync, name)
        if isinstance(obj, type):
            assert obj.__module__ == "ipy_rustasync", name


def layer_lines() -> list[str]:
    """The layers of the top-level contract in pyproject.toml (its container is the
    package itself), top to bottom."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        config = tomllib.load(fh)
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers" and c["containers"] == ["ipy_rustasync"]]
    return list(layers)
