"""``--export`` and ``ipy-rustasync export``, for real: the project is built with plain
``maturin build --locked``, its wheel installed into a fresh virtual environment that
has no ipy-rustasync, and the generated tests run there.

The projects live at fixed paths under the test cache and maturin shares the cells'
target directory, so after the first run only what changed is compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cargo
from ipy_rustasync._pipeline.export import Source, export
from ipy_rustasync._settings import toolchain

from .conftest import CACHE_DIR, ROOT, TEST_CACHE, Shell, cell

EXPORTS = TEST_CACHE / "export"

CELL = """
//! ```cargo
//! [dependencies]
//! itoa = "1"
//! ```
use futures::Stream;

/// Formats after a tick of the runtime.
pub async fn formatted() -> String {
    tokio::task::yield_now().await;
    itoa::Buffer::new().format(-42).to_owned()
}
pub async fn twice(x: u64) -> u64 { x * 2 }
pub fn add(a: i64, b: i64) -> i64 { a + b }
pub fn count_to(n: u32) -> impl Stream<Item = u32> { futures::stream::iter(1..=n) }
"""


#: Projects built by ``maturin_build`` in this session, in order.
EXPORTS_BUILT: list[Path] = []


def maturin_build(project: Path, out: Path) -> Path:
    """``maturin build`` as a user would run it (``--locked``: the exported Cargo.lock
    must need no change), sharing the cells' target directory."""
    maturin = Path(sys.executable).parent / "maturin"
    if not maturin.exists():
        pytest.skip("maturin is not installed in this environment")
    env = {k: v for k, v in cargo.build_env().items() if k not in cargo.maturin_env()}
    env["CARGO_TARGET_DIR"] = str(CACHE_DIR / "target")
    cmd = [
        str(maturin), "build", "--locked",
        "--interpreter", toolchain.interpreter(),
        "--out", str(out),
        "--auditwheel", "skip",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    compiled = {line.split()[1] for line in result.stderr.splitlines() if line.strip().startswith("Compiling")}
    shared = {"pyo3", "tokio", "futures", "itoa"} & compiled
    if toolchain.shared_runtime():
        # The cells build in target-dylib/ (prefer-dynamic): the first export builds the
        # shared crates in target/ once, and every later one reuses them.
        assert not (shared and EXPORTS_BUILT), result.stderr
        EXPORTS_BUILT.append(project)
    else:
        assert not shared, result.stderr  # shared with the cells
    (wheel,) = out.glob("*.whl")
    return wheel


def isolated() -> dict[str, str]:
    """The environment for the fresh venv's interpreter: without PYTHONPATH (a developer
    running the suite from a worktree sets it), which would carry ipy-rustasync in."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run_installed(python: Path, code: str, cwd: Path) -> str:
    """What ``code`` prints when run by the fresh venv's interpreter (which must succeed)."""
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, cwd=cwd, env=isolated(), check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv holding the wheel and nothing else but pytest (a .pth to pytest's own
    directory: no network, and ipy-rustasync's editable install is not carried over)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "pytest_only.pth").write_text(str(Path(pytest.__file__).parent.parent) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    return python


def run_generated_tests(python: Path, project: Path, cwd: Path) -> str:
    cannot = subprocess.run(
        [str(python), "-c", "import ipy_rustasync"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=isolated(),
        check=False,
    )
    assert cannot.returncode != 0, "the fresh venv must not see ipy-rustasync"
    out = subprocess.run(
        [str(python), "-m", "pytest", str(project / "tests"), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=isolated(),
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def points_back(project: Path) -> list[str]:
    """Files that name the checkout, site-packages or the cache."""
    bad = []
    for path in project.rglob("*"):
        if path.is_file() and "target" not in path.relative_to(project).parts:
            text = path.read_text(encoding="utf-8")
            if any(s in text for s in (str(ROOT), "site-packages", str(TEST_CACHE))):
                bad.append(str(path))
    return bad


def test_a_cell_exports_to_a_project_that_builds_and_passes_its_tests(
    shell: Shell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = EXPORTS / "cellmod"
    shell.rust(CELL, f"--export {project}")
    assert f"exported 1 cell as the module cellmod (4 exports) to {project}" in capsys.readouterr().out
    assert shell.run("await formatted()") == "-42"  # the cell was bound as usual too

    lib = (project / "src" / "lib.rs").read_text()
    # A cell's body starts on the editor's line 2, under the magic line, and so in src/lib.rs.
    assert lib.startswith('#[::ipy_rustasync::cell(module = "cellmod", line_offset = 0)] mod cell {')
    assert lib.splitlines()[1] == cell(CELL).splitlines()[0]
    assert cell(CELL) in lib
    manifest = (project / "Cargo.toml").read_text()
    table = tomllib.loads(manifest)["dependencies"]
    assert table["itoa"] == "1" and table["ipy-rustasync"] == {"path": "rust/bridge"}
    magics = shell.ip.magics_manager.registry["RustAsyncMagics"]
    cell_manifest = (CACHE_DIR / "crates" / magics.loaded[-1].module / "Cargo.toml").read_text()
    # The same profiles (what cargo's fingerprints see), so the export shares the cells' build;
    # only the cell crate's own override (not incremental) is the cell's alone.
    cell_profile = tomllib.loads(cell_manifest)["profile"]
    assert cell_profile["dev"]["package"].pop(magics.loaded[-1].module) == {"incremental": False}
    assert tomllib.loads(manifest)["profile"] == cell_profile
    pyproject = (project / "pyproject.toml").read_text()
    assert 'build-backend = "maturin"' in pyproject and 'module-name = "cellmod"' in pyproject
    assert (project / "rust" / "bridge" / "src" / "lib.rs").is_file()
    assert (project / "rust" / "macros" / "src" / "lib.rs").is_file()
    assert points_back(project) == []

    wheel = maturin_build(project, tmp_path / "wheels")
    python = fresh_venv(tmp_path / "venv", wheel)
    assert "2 passed" in run_generated_tests(python, project, tmp_path)  # exports present; formatted() awaited
    check = (
        "import asyncio, cellmod\n"
        "async def main():\n"
        "    return await cellmod.twice(21), [x async for x in cellmod.count_to(3)]\n"
        "print(asyncio.run(main()), cellmod.add(2, 3))\n"
    )
    out = run_installed(python, check, tmp_path)
    assert out.strip() == "(42, [1, 2, 3]) 5"


def test_re_exporting_leaves_unchanged_files_alone(shell: Shell) -> None:
    project = EXPORTS / "cellmod"
    shell.rust(CELL, f"--export {project}")
    bridge = project / "rust" / "bridge" / "src" / "lib.rs"
    before = bridge.stat().st_mtime_ns
    shell.rust(CELL, f"--export {project}")
    assert bridge.stat().st_mtime_ns == before  # cargo fingerprints path crates by mtime


NOTEBOOK_CELLS = [
    (
        "code",
        "%%rust_async --dep itoa@1\n"
        "use std::time::Duration;\n"
        "pub async fn tick() -> u64 { tokio::time::sleep(Duration::from_millis(1)).await; 1 }\n"
        "pub fn fmt(n: i64) -> String { itoa::Buffer::new().format(n).to_owned() }\n",
    ),
    ("markdown", "Then a second cell, redefining `fmt`:"),
    ("code", "await tick()"),
    (
        "code",
        "%%rust_async\n"
        "//! ```cargo\n"
        "//! [dependencies]\n"
        '//! smallvec = { version = "1", features = ["union"] }\n'
        "//! ```\n"
        "use std::time::Duration;\n"
        "pub async fn tock() -> usize {\n"
        "    tokio::time::sleep(Duration::from_millis(1)).await;\n"
        "    smallvec::SmallVec::<[u8; 4]>::from_slice(&[1, 2]).len()\n"
        "}\n"
        'pub fn fmt(n: i64) -> String { format!("v2 {n}") }',
    ),
]


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    for kind, text in NOTEBOOK_CELLS:
        nb.cells.append(nbformat.v4.new_code_cell(text) if kind == "code" else nbformat.v4.new_markdown_cell(text))
    nbformat.write(nb, path)


def test_a_notebooks_cells_export_as_one_module(tmp_path: Path) -> None:
    notebook = tmp_path / "analysis.ipynb"
    write_notebook(notebook)
    project = EXPORTS / "nbmod"
    out = subprocess.run(
        [sys.executable, "-m", "ipy_rustasync._front.cli", "export", str(project), "--name", "nbmod", str(notebook)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"exported 2 cells as the module nbmod (3 exports) to {project}" in out.stdout
    # Exporting ran the cells as the kernel would: the notebook's sidecar pins their crates.
    sidecar = tmp_path / "analysis.rust_async.lock"
    assert {"itoa", "smallvec"} <= set(sidecar.read_text().split('"'))
    manifest = (project / "Cargo.toml").read_text()
    table = tomllib.loads(manifest)["dependencies"]
    assert table["itoa"] == "1" and table["smallvec"] == {"version": "1", "features": ["union"]}
    lib = (project / "src" / "lib.rs").read_text()
    assert "mod cell_1 {" in lib and "mod cell_2 {" in lib
    assert points_back(project) == []

    wheel = maturin_build(project, tmp_path / "wheels")
    python = fresh_venv(tmp_path / "venv", wheel)
    assert "3 passed" in run_generated_tests(python, project, tmp_path)  # exports; tick() and tock() awaited
    check = "import asyncio, nbmod\nprint(nbmod.fmt(3), asyncio.run(nbmod.tock()), sorted(r[0] for r in nbmod.__ira_exports__))\n"
    done = run_installed(python, check, tmp_path)
    assert done.strip() == "v2 3 2 ['fmt', 'tick', 'tock']"  # the later cell's fmt won


def test_export_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(RustAsyncUsageError, match="is not empty and holds no earlier export"):
        export(taken, [Source("pub fn f() -> u8 { 1 }\n")])
    with pytest.raises(RustAsyncUsageError, match="'my-mod' cannot be a Python module name"):
        export(tmp_path / "new", [Source("pub fn f() -> u8 { 1 }\n")], name="my-mod")
    with pytest.raises(RustAsyncUsageError, match="'tokio' is taken"):
        export(tmp_path / "tokio", [Source("pub fn f() -> u8 { 1 }\n")])
    empty = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), empty)
    cli = [sys.executable, "-m", "ipy_rustasync._front.cli", "export", str(tmp_path / "out")]
    out = subprocess.run([*cli, str(empty)], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == f"ipy-rustasync: the notebook {empty} has no %%rust_async cells"
    assert json.loads(empty.read_text())["cells"] == []
    assert not os.path.exists(tmp_path / "out")
