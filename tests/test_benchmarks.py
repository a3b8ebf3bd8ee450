"""The benchmarks that back the README's figures still run, and clean up after
themselves: ``benchmarks/glue_cost.py`` on cells of a few functions (its figures come
from cells of 1,000; what is checked here is that every kind of cell builds, exports
what it should and leaves no files behind: a run once left 38 GB in its cache)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cell_files(cache: Path) -> set[Path]:
    """What cells left in the cache: crates, modules and their files in the targets."""
    return {
        *(cache / "crates").glob("*"),
        *(cache / "modules").glob("*"),
        *cache.glob("target*/*/*ira_*"),
        *cache.glob("target*/*/*/*ira_*"),
    }


def test_glue_cost_builds_every_kind_of_cell_and_leaves_nothing_behind() -> None:
    # the session's warm cache (tests/conftest.py), so the dependencies are not built again
    cache = Path(os.environ["IPY_RUSTASYNC_CACHE_DIR"])
    before = cell_files(cache)
    out = subprocess.run(
        [sys.executable, "glue_cost.py", "--n", "3", "--rounds", "1", "--no-passes"],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    kinds = ["`fn`", "`#[pyfunction] pub fn`", "`pub fn`", "`pub async fn`"]
    assert [next(kind for kind in kinds if kind in row) for row in rows[1:]] == kinds, out.stdout
    assert "1.00× (1.00–1.00×)" in rows[2], "the reference row is the reference"
    assert cell_files(cache) == before
