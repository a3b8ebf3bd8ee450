"""The build pipeline from outside: the cache across processes, cargo never run for
a cached cell, concurrent builds, the wheel carrying the Rust crates, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .helpers import run_python

ROOT = Path(__file__).resolve().parent.parent


SCRIPT = """
    import asyncio, sys
    from ipy_rustasync._pipeline.cells import compile_cell
    class Lines(list):
        def expect(self, units): pass
        def line(self, text): self.append(text)
        def message(self, message): pass
    lines = Lines()
    compiled = compile_cell(sys.argv[1] if len(sys.argv) > 1 else {source!r}, watcher=lines)
    print("CACHED" if compiled.build.cached else "BUILT")
    print("\\n".join(l for l in lines if "Compiling" in l))
    print("RESULT", asyncio.run(compiled.module.{call}))
"""


def test_plain_script_asyncio_run(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from ipy_rustasync import rust_module

            mod = rust_module('''
            pub async fn double(x: u64) -> u64 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                x * 2
            }
            ''')
            print(asyncio.run(mod.double(21)))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "42"


def test_cached_cell_after_restart_never_runs_cargo(tmp_path: Path) -> None:
    source = "pub async fn restart_probe() -> u32 { 11 }\n"
    code = SCRIPT.format(source=source, call="restart_probe()")
    first = run_python(code, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "RESULT 11" in first.stdout
    # A cargo and rustc that record being called, first on PATH.
    spy = tmp_path / "bin"
    spy.mkdir()
    log = tmp_path / "calls.log"
    real_rustc = subprocess.run(
        ["sh", "-c", "command -v rustc"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (spy / "cargo").write_text(f'#!/bin/sh\necho "cargo $*" >> {log}\nexit 1\n')
    # rustc -vV is part of the hash (and the libdir decides how cells link): the first
    # run through the spy asks them...
    (spy / "rustc").write_text(f'#!/bin/sh\necho "rustc $*" >> {log}\nexec {real_rustc} "$@"\n')
    for tool in ("cargo", "rustc"):
        (spy / tool).chmod(0o755)
    env = {"PATH": f"{spy}:{os.environ['PATH']}"}
    second = run_python(code, env=env, timeout=900)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == "CACHED"
    assert "RESULT 11" in second.stdout
    assert log.read_text().splitlines() == ["rustc -vV", "rustc --print target-libdir"]
    # ... and a restart after that runs no tool at all: the answer is remembered
    # under a fingerprint of the compiler files.
    log.unlink()
    third = run_python(code, env=env, timeout=900)
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines()[0] == "CACHED"
    assert not log.exists(), log.read_text()


def test_python3_spelling_reuses_the_dependency_build() -> None:
    """Jupyter starts kernels as bin/python3 or bin/python depending on the launcher;
    neither may rebuild PyO3."""
    python3 = Path(sys.prefix) / "bin" / "python3"
    if not python3.exists():
        pytest.skip("no bin/python3 in this environment")
    source = "pub async fn spelled() -> u8 { 3 }\n"
    out = run_python(SCRIPT.format(source=source, call="spelled()"), exe=str(python3), timeout=900)
    assert out.returncode == 0, out.stderr
    assert "RESULT 3" in out.stdout
    assert "Compiling pyo3" not in out.stdout, out.stdout


def test_two_processes_build_at_once() -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(SCRIPT.format(source=f"pub async fn par{i}() -> u8 {{ {i} }}\n", call=f"par{i}()")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ] + [
        # and two building the very same cell
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(SCRIPT.format(source="pub async fn same() -> u8 { 9 }\n", call="same()")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=900) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert "RESULT 0" in results[0][0] and "RESULT 1" in results[1][0]
    assert "RESULT 9" in results[2][0] and "RESULT 9" in results[3][0]


def test_cache_is_private(tmp_path: Path) -> None:
    from ipy_rustasync._settings.cache import Cache

    cache = Cache.open(Path(os.environ["IPY_RUSTASYNC_CACHE_DIR"]))
    assert cache.root.stat().st_mode & 0o077 == 0
    fresh = Cache.open(tmp_path / "new-cache")
    assert fresh.root.stat().st_mode & 0o777 == 0o700


def test_wheel_ships_the_rust_crates_and_builds_from_them(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = wheel_dir.glob("ipy_rustasync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ipy_rustasync/_rust/bridge/src/lib.rs" in names
    assert "ipy_rustasync/_rust/macros/src/lib.rs" in names
    assert "ipy_rustasync/_rust/Cargo.lock" in names
    assert "ipy_rustasync/_kernel_ext/kernel.json" in names
    assert not [n for n in names if "/target/" in n]
    assert not [n for n in names if "/macros-tests/" in n]  # the macro's own tests, linked by no cell
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True
    )
    out = run_python(
        """
        import asyncio, ipy_rustasync
        from ipy_rustasync._sources import crate
        from ipy_rustasync import rust_module
        from ipy_rustasync._front import kernelspec
        print("RUST", crate.rust_dir())
        print("KERNEL", kernelspec.spec_dir())
        mod = rust_module("pub async fn from_wheel() -> String { String::from(\\"wheel ok\\") }")
        print("RESULT", asyncio.run(mod.from_wheel()))
        """,
        env={"PYTHONPATH": str(site)},
        cwd=tmp_path,  # not the checkout, whose ipy_rustasync/ would shadow the wheel's
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    assert f"RUST {site / 'ipy_rustasync' / '_rust'}" in out.stdout
    assert f"KERNEL {site / 'ipy_rustasync' / '_kernel_ext'}" in out.stdout
    assert "RESULT wheel ok" in out.stdout


def test_cli_cache_info_and_config(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "ipy_rustasync._front.cli"]
    info = subprocess.run([*cli, "cache", "info"], capture_output=True, text=True, check=True)
    assert "modules:" in info.stdout and "target:" in info.stdout
    cfg = {"IPY_RUSTASYNC_CONFIG": str(tmp_path / "c.toml")}
    env = {**os.environ, **cfg}
    subprocess.run([*cli, "config", "release", "true"], env=env, check=True, capture_output=True)
    shown = subprocess.run([*cli, "config"], env=env, capture_output=True, text=True, check=True)
    assert "release:        true" in shown.stdout
    bad = subprocess.run([*cli, "config", "release", "maybe"], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "ipy-rustasync: release must be true or false, not 'maybe'"
    warm = subprocess.run([*cli, "warm"], capture_output=True, text=True, check=True)
    assert "already built" in warm.stdout


def test_maturin_and_our_cargo_share_the_dependency_build(tmp_path: Path) -> None:
    """Cells are built with ``cargo rustc`` in maturin's environment; maturin itself,
    run on a cell crate in the same target directory, must find everything fresh
    (a different environment would recompile PyO3 and everything above it). On the
    shared runtime the cells' target directory is ``target-dylib`` and every crate
    gets ``-C prefer-dynamic`` (RUSTFLAGS, in our environment), and the crate is
    written where the cells' are, so its runtime crate is the very one they share."""
    from ipy_rustasync._pipeline import cargo
    from ipy_rustasync._settings import toolchain
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import crate

    maturin = Path(sys.executable).parent / "maturin"
    if not maturin.exists():
        pytest.skip("maturin is not installed in this environment")
    cache = Context.load().cache
    spec = crate.CellSpec(source="pub async fn via_maturin() -> u8 { 5 }\n")
    shared = spec.runtime is not None
    root = crate.write(spec, cache.crates if shared else tmp_path / "crates")
    env = {k: v for k, v in cargo.build_env(shared_runtime=shared).items() if k not in cargo.maturin_env()}
    cmd = [
        str(maturin), "build",
        "--manifest-path", str(root / "Cargo.toml"),
        "--interpreter", toolchain.interpreter(),
        "--target-dir", str(cache.target_for(None, shared_runtime=shared)),
        "--out", str(tmp_path / "wheels"),
        "--auditwheel", "skip",
    ]  # fmt: skip
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    compiled = [line.split()[1] for line in out.stderr.splitlines() if line.strip().startswith("Compiling")]
    assert set(compiled) <= {spec.module}, out.stderr  # (nothing at all if an earlier run built this crate)
    assert list((tmp_path / "wheels").glob("*.whl"))
    cache.remove_cell_build(cache.target_for(None), spec.module)  # as our build leaves the target


def test_rustc_answer_is_remembered_until_the_compiler_changes(tmp_path: Path) -> None:
    fake = tmp_path / "rustc"
    calls = tmp_path / "calls"
    ask = "from ipy_rustasync._settings import toolchain; print(toolchain.rustc_version())"
    env = {"RUSTC": str(fake), "IPY_RUSTASYNC_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir(mode=0o700)

    def fake_rustc(release: str) -> None:
        fake.write_text(f'#!/bin/sh\necho x >> {calls}\necho "rustc {release}"\n')
        fake.chmod(0o755)

    fake_rustc("1.90.0")
    assert [run_python(ask, env=env).stdout.strip() for _ in range(3)] == ["rustc 1.90.0"] * 3
    assert calls.read_text().count("x") == 2  # `-vV` and `--print target-libdir`, asked once
    fake_rustc("1.91.0 (updated)")  # a new compiler: a new file, so a new fingerprint
    assert run_python(ask, env=env).stdout.strip() == "rustc 1.91.0 (updated)"
    assert calls.read_text().count("x") == 4


def test_a_fresh_cache_remembers_the_compilers_answer_from_the_first_cell(tmp_path: Path) -> None:
    """The cache is created before the cell is hashed, so ``rustc -vV`` (part of the
    hash) is asked in the cache directory, not next to the notebook, and remembered."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "cargo").write_text("#!/bin/sh\nexit 1\n")  # the build itself fails at once
    (fake / "cargo").chmod(0o755)
    cache = tmp_path / "fresh-cache"
    out = run_python(
        """
        from ipy_rustasync import rust_module
        from ipy_rustasync._pipeline.build import BuildError
        try:
            rust_module("pub fn first() {}")
        except BuildError as err:
            print("FAILED AS EXPECTED", err)
        """,
        env={"IPY_RUSTASYNC_CACHE_DIR": str(cache), "PATH": f"{fake}:{os.environ['PATH']}"},
        cwd=tmp_path,
    )
    assert "FAILED AS EXPECTED" in out.stdout, out.stderr
    assert (cache / "rustc-vV.json").is_file()


def test_a_built_cell_leaves_nothing_of_its_own_in_the_shared_target() -> None:
    """The cell crate is not incremental (a new crate per edit: nothing to reuse) and its
    files go from the target once its module is installed, so the target does not grow
    with every edit; the dependencies stay fresh (the cell's profile is its own)."""
    import uuid

    from ipy_rustasync._pipeline import build, cargo
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import crate

    context = Context.load()
    outcomes: list[cargo.Outcome] = []
    real = cargo.run

    def recording(*args: Any, **kwargs: Any) -> cargo.Outcome:
        outcomes.append(real(*args, **kwargs))
        return outcomes[-1]

    spec = crate.CellSpec(source=f"pub fn target_tidy() -> u64 {{ {uuid.uuid4().int % 10**12} }}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cargo, "run", recording)
        patch.setenv("IPY_RUSTASYNC_DIRECT_RUSTC", "0")  # cargo's build (a replay is checked below)
        result = build.build(spec, context)
    assert not result.cached and result.path.is_file()
    compiled = [m["target"]["name"] for m in outcomes[0].messages if m.get("reason") == "compiler-artifact"]
    fresh = [m["target"]["name"] for m in outcomes[0].messages if m.get("fresh")]
    assert sorted(set(compiled) - set(fresh)) == [spec.module]  # the cell alone compiled
    profile = context.target / "debug"
    assert (profile / "incremental").is_dir()  # the bridge (a path crate) is still incremental
    assert not list((profile / "incremental").glob(f"{spec.module}-*"))
    left = [str(p) for p in context.target.rglob(f"*{spec.module}*")]
    assert left == []
    # A cell compiled by replaying rustc (rustc_direct.py) leaves nothing either.
    replayed = crate.CellSpec(source=f"pub fn target_tidy() -> u64 {{ {uuid.uuid4().int % 10**12} }}\n")
    assert not build.build(replayed, context).cached
    assert [str(p) for p in context.target.rglob(f"*{replayed.module}*")] == []
    # A failed build leaves nothing either.
    broken = crate.CellSpec(source=spec.source.replace("}", "+ not_defined }"))
    with pytest.raises(Exception, match="did not compile"):
        build.build(broken, context)
    assert [str(p) for p in context.target.rglob(f"*{broken.module}*")] == []


def test_an_unchanged_rerun_does_not_hash_the_module_and_a_swapped_one_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib
    import shutil
    import time
    import types
    import uuid

    from ipy_rustasync._pipeline import build
    from ipy_rustasync._settings import cache
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import crate

    context = Context.load()
    mine = crate.CellSpec(source=f"pub fn rerun_mine() -> u64 {{ {uuid.uuid4().int % 10**12} }}\n")
    other = crate.CellSpec(source=f"pub fn rerun_other() -> u64 {{ {uuid.uuid4().int % 10**12} }}\n")
    first, second = build.build(mine, context), build.build(other, context)
    # The re-runs come a while after the build (a module is remembered once it has settled).
    monkeypatch.setattr(cache, "time", types.SimpleNamespace(time_ns=lambda: time.time_ns() + 5 * 10**9))
    hashed: list[int] = []

    def sha256(*args: bytes) -> Any:
        hashed.append(1)
        return hashlib.sha256(*args)

    monkeypatch.setattr(cache, "hashlib", types.SimpleNamespace(sha256=sha256))
    assert build.build(mine, context).cached
    hashed.clear()
    for _ in range(3):
        assert build.build(mine, context).cached
    assert hashed == []
    # Another cell's module swapped in under this one's name, the same owner and mode.
    swapped = first.path.with_name("swapped.tmp")
    shutil.copyfile(second.path, swapped)
    swapped.chmod(0o700)
    os.replace(swapped, first.path)
    with pytest.warns(UserWarning, match="does not match its checksum"):
        again = build.build(mine, context)
    assert not again.cached and hashed
