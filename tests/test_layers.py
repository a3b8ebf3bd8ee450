"""The package's layers (pyproject.toml, ``[tool.importlinter]``; ARCHITECTURE.md): the
contracts hold, and they fail when a circle or an upward import comes back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import ipy_rustasync.built
from ipy_rustasync import loader

ROOT = Path(__file__).resolve().parent.parent
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"
)


def lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the repository's contracts on the package in ``package_parent``
    (the working directory, which comes first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [sys.executable, "-c", LINT],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_contracts_hold() -> None:
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "ipy_rustasync", tmp_path / "ipy_rustasync", ignore=shutil.ignore_patterns("__pycache__", "labextension")
    )
    return tmp_path / "ipy_rustasync"


def test_a_circle_brought_back_breaks_them(tmp_path: Path) -> None:
    """crate.py importing the package's front again (the circle issue 15 removed:
    crate read ``__version__`` from the package's ``__init__``) fails the layers."""
    package = copy_of_package(tmp_path)
    crate = package / "crate.py"
    crate.write_text(crate.read_text(encoding="utf-8") + "\nfrom ipy_rustasync import magic  # noqa: E402\n")
    out = lint(tmp_path)
    assert out.returncode != 0, out.stdout
    assert "ipy_rustasync.crate -> ipy_rustasync.magic" in out.stdout, out.stdout


def test_impure_lock_logic_breaks_them(tmp_path: Path) -> None:
    package = copy_of_package(tmp_path)
    versions = package / "versions.py"
    versions.write_text(versions.read_text(encoding="utf-8") + "\nfrom ipy_rustasync import toolchain  # noqa: E402\n")
    out = lint(tmp_path)
    assert out.returncode != 0, out.stdout
    assert "ipy_rustasync.versions -> ipy_rustasync.toolchain" in out.stdout, out.stdout


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
