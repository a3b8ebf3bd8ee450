"""Offline crates for real: vendor with cargo on a machine that reaches crates.io,
then build and await a cell with cargo unable to reach any network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TEST_CACHE, Shell
from .helpers import run_python

CELL = """
import asyncio, sys
from ipy_rustasync._pipeline.cells import compile_cell
from ipy_rustasync._base.errors import RustAsyncUsageError
try:
    compiled = compile_cell(sys.argv[1], deps=sys.argv[2:])
except RustAsyncUsageError as err:
    print("ERROR", err)
    raise SystemExit(3)
print("CACHED" if compiled.build.cached else "BUILT")
print("RESULT", asyncio.run(compiled.module.offline_fmt(7)))
"""

SOURCE = "pub async fn offline_fmt(n: i64) -> String { itoa::Buffer::new().format(n * 6).to_owned() }"


@pytest.fixture(scope="module")
def vendored() -> Path:
    # Under the test cache, at a stable path, so the offline dependency build (its own
    # target directory) stays warm between test runs on one machine.
    directory = TEST_CACHE / "vendor"
    out = subprocess.run(
        [sys.executable, "-m", "ipy_rustasync._front.cli", "vendor", str(directory), "--dep", "itoa@1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "vendored" in out.stdout
    return directory


def offline_env(tmp: Path, crates: Path) -> dict[str, str]:
    """cargo with an empty home (no registry cache), told to stay offline, and any
    attempt at HTTP sent to a closed local port."""
    home = tmp / "cargo-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        IPY_RUSTASYNC_OFFLINE_CRATES=str(crates),
        CARGO_HOME=str(home),
        CARGO_NET_OFFLINE="true",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    # rustup's proxies live in the real CARGO_HOME/bin; keep them callable.
    return env


def test_vendor_keeps_checksums(vendored: Path) -> None:
    names = {p.name.split("-")[0] for p in vendored.iterdir()}
    assert {"pyo3", "tokio", "futures", "itoa"} <= names
    assert all((p / ".cargo-checksum.json").is_file() for p in vendored.iterdir() if p.is_dir())


def build_offline(source: str, dep: str, tmp: Path, crates: Path) -> subprocess.CompletedProcess[str]:
    """Builds ``source`` with ``--dep dep`` in a fresh process, offline from ``crates``."""
    return run_python(CELL, source, dep, env=offline_env(tmp, crates), timeout=900)


def test_build_and_await_with_no_network(vendored: Path, tmp_path: Path) -> None:
    # A comment unique to this run: a new module, so this is a real build, not a cache hit.
    source = f"// {tmp_path.name} {os.getpid()}\n{SOURCE}"
    out = build_offline(source, "itoa@1", tmp_path, vendored)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RESULT 42" in out.stdout
    assert "BUILT" in out.stdout
    assert not any((tmp_path / "cargo-home").glob("registry/cache/*/*.crate")), "cargo downloaded crates"


def test_missing_crate_offline_is_one_sentence(vendored: Path, tmp_path: Path) -> None:
    source = "pub fn uses_smallvec() -> usize { smallvec::SmallVec::<[u8; 4]>::new().len() }"
    out = build_offline(source, "smallvec@1", tmp_path, vendored)
    assert out.returncode == 3, out.stdout + out.stderr
    message = out.stdout.strip().removeprefix("ERROR ")
    assert "`smallvec`" in message
    assert f"ipy-rustasync vendor {vendored} --dep smallvec@1" in message
    assert "\n" not in message


def test_a_tampered_vendored_crate_is_refused(vendored: Path, tmp_path: Path) -> None:
    """cargo checks each vendored file against the checksums ``vendor`` kept; an edit
    after vendoring stops the build with one sentence."""
    copy = tmp_path / "vendor"
    shutil.copytree(vendored, copy, symlinks=True)
    lib = copy / "itoa" / "src" / "lib.rs"
    lib.write_text(lib.read_text() + "\n// changed after vendoring\n")
    out = build_offline(f"// {tmp_path.name}\n{SOURCE}", "itoa@1", tmp_path, copy)
    assert out.returncode == 3, out.stdout + out.stderr
    message = out.stdout.strip().removeprefix("ERROR ")
    assert message.startswith(f"{lib} in the offline crate directory no longer matches the checksum"), message
    assert f"ipy-rustasync vendor {copy}" in message


def test_line_magic_remembers_the_offline_setting(shell: Shell, vendored: Path, tmp_path: Path) -> None:
    from ipy_rustasync._settings import config

    ip = shell.ip
    saved = os.environ.get("IPY_RUSTASYNC_CONFIG")
    os.environ["IPY_RUSTASYNC_CONFIG"] = str(tmp_path / "config.toml")
    try:
        ip.run_line_magic("rust_async", f"--offline-crates {vendored}")
        assert config.Settings.load().offline_crates == vendored.resolve()
        assert f'offline_crates = "{vendored.resolve()}"' in (tmp_path / "config.toml").read_text()
        ip.run_line_magic("rust_async", "--online")
        assert config.Settings.load().offline_crates is None
    finally:
        if saved is not None:
            os.environ["IPY_RUSTASYNC_CONFIG"] = saved
