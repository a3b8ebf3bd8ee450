"""Shared fixtures: one warm cache for the whole session, a real IPython shell, real
kernels.

Every test build goes to ``$IPY_RUSTASYNC_TEST_CACHE/cache`` (``make test`` points it
at ``.test-cache/`` in the checkout), so the ~30 s dependency build happens once per
machine and every later cell is a warm, sub-second build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .kernels import Kernel

# The load test's cancellation storm lives with the soak's (benchmarks/load.py): its
# asserts explain themselves as a test's do.
pytest.register_assert_rewrite("benchmarks.load")

ROOT = Path(__file__).resolve().parent.parent

#: Each test file's tier (a marker, registered in pyproject.toml): ``unit`` runs in
#: under a minute once the dependency build is warm (``pytest -m unit``); ``bridge``
#: builds and runs cells in this process (the tier other Pythons run: Makefile);
#: ``kernel`` starts Jupyter kernels; ``browser`` drives chromium; ``load`` is the
#: long-running stress. ``make test`` runs them all.
# A suite started in the background by a non-interactive shell (`make test &`, nohup, some
# CI runners) inherits SIGINT ignored, and every process it starts (the scripts the
# interrupt tests run, the kernels) would inherit that and never see Ctrl-C: three
# interrupt tests failed that way. A handler here is reset to the default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TIERS: dict[str, str] = {
    "test_bridge_source": "unit",
    "test_platforms": "unit",
    "test_deps": "unit",
    "test_contract": "unit",
    "test_diagnostics": "unit",
    "test_diagnostics_mapping": "unit",
    "test_diagnostics_hints": "unit",
    "test_diagnostics_render": "unit",
    "test_packaging": "unit",
    "test_offline": "unit",
    "test_terminal": "unit",
    "test_bad_input": "unit",
    "test_lockfile": "unit",
    "test_versions": "unit",
    "test_cargolock": "unit",
    "test_atomic": "unit",
    "test_layers": "unit",
    "test_context": "unit",
    "test_named_cells_unit": "unit",
    "test_export_named_unit": "unit",
    "test_bridge": "bridge",
    "test_processes": "bridge",
    "test_pyo3_async": "bridge",
    "test_build": "bridge",
    "test_rustc_direct": "bridge",
    "test_shared_runtime": "bridge",
    "test_named_cells": "bridge",
    "test_export": "bridge",
    "test_export_named": "bridge",
    "test_logging": "bridge",
    "test_printing": "bridge",
    "conformance": "bridge",
    "test_kernel": "kernel",
    "test_notebooks": "kernel",
    "test_printing_kernel": "kernel",
    "test_named_cells_kernel": "kernel",
    "test_browser": "browser",
    "test_load": "load",
    "test_faults": "load",
    "test_benchmarks": "load",
}


def tier_of(path: Path) -> str | None:
    """The tier of the test file at ``path`` (a file under ``conformance/`` takes
    the folder's)."""
    relative = path.resolve().relative_to(Path(__file__).resolve().parent)
    return TIERS.get(relative.parts[0]) or TIERS.get(relative.stem)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(str(item.path)))
        if tier is None:
            raise pytest.UsageError(f"{item.path.name} has no tier: add it to TIERS in tests/conftest.py")
        item.add_marker(tier)


TEST_CACHE = Path(os.environ.get("IPY_RUSTASYNC_TEST_CACHE", ROOT / ".test-cache")).resolve()
CACHE_DIR = TEST_CACHE / "cache"


@pytest.fixture(scope="session", autouse=True)
def test_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Points the package (and every kernel or subprocess the tests start) at the test
    cache and a throwaway config file, then builds the shared dependencies once."""
    config = tmp_path_factory.mktemp("config") / "config.toml"
    saved = dict(os.environ)
    os.environ["IPY_RUSTASYNC_CACHE_DIR"] = str(CACHE_DIR)
    os.environ["IPY_RUSTASYNC_CONFIG"] = str(config)
    os.environ.pop("IPY_RUSTASYNC_OFFLINE_CRATES", None)
    os.environ.pop("IPY_RUSTASYNC_RELEASE", None)
    CACHE_DIR.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "ipy_rustasync._front.cli", "warm"], check=True, cwd=ROOT)
    yield
    os.environ.clear()
    os.environ.update(saved)


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


class Shell:
    """A real IPython InteractiveShell (the terminal kind: its asyncio loop stops
    between cells), with helpers that fail the test on unexpected errors."""

    def __init__(self) -> None:
        from IPython.testing.globalipapp import start_ipython

        self.ip = start_ipython()
        assert self.ip is not None
        self.ip.run_line_magic("load_ext", "ipy_rustasync")

    def run(self, code: str) -> Any:
        result = self.ip.run_cell(cell(code))
        if not result.success:
            raise AssertionError(f"cell failed: {result.error_before_exec or result.error_in_exec!r}")
        return result.result

    def fails(self, code: str) -> BaseException:
        result = self.ip.run_cell(cell(code))
        assert not result.success, "the cell was expected to fail"
        err = result.error_before_exec or result.error_in_exec
        assert err is not None
        return err

    def rust(self, source: str, flags: str = "") -> Any:
        return self.run(f"%%rust_async {flags}\n" + cell(source))

    @property
    def ns(self) -> dict[str, Any]:
        return self.ip.user_ns  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def shell() -> Shell:
    return Shell()


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    """One real kernel per test module, with the extension loaded."""
    k = Kernel(load_ext=True)
    yield k
    k.km.shutdown_kernel(now=True)
