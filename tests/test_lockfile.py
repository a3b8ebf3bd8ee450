"""The notebook's lock sidecar (``<notebook>.rust_async.lock``): where the notebook's
path comes from, how cargo resolves what it does not pin, and real builds that read and
write it (the pure Cargo.lock logic is tested in test_cargolock.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import cargolock, lockfile
from ipy_rustasync._sources.cargolock import REGISTRY, Lock, Package
from ipy_rustasync._sources.deps import Dep

from .conftest import CACHE_DIR, TEST_CACHE, Shell
from .helpers import run_python

#: crates.io checksums of two itoa releases (the tests pin one, then the other)
ITOA = {
    "1.0.15": "4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c",
    "1.0.19": "3bd1574e617a9a6c1f8f8181bd7e841e1f20e4277607ef28945765188d6284d4",
}


def itoa(version: str) -> Package:
    return Package("itoa", version, REGISTRY, ITOA.get(version, "0" * 64))


def sidecar(*packages: Package) -> str:
    return cargolock.render(Lock(list(packages)), header=lockfile.SIDECAR_HEADER, sidecar=True)


@pytest.mark.parametrize(
    ("requirement", "pinned"),
    [("1", True), ("~1.0.15", True), ("<1.0.16", True), (">=1.0.17", False), ("=1.0.19", False)],
)
def test_what_the_pin_check_says_cargo_does(requirement: str, pinned: bool) -> None:
    """The one version question answered without cargo (does the sidecar's pin do?)
    against cargo's own answer: ``resolve`` keeps the pin exactly when the check
    accepts it, and says so in the root package of the lock it wrote."""
    seeded = cargolock.seed(lockfile.base(), Lock([itoa("1.0.15")]))
    wanted = [Dep("itoa", requirement)]
    resolved = lockfile.resolve(wanted, seeded, Context.load())
    found = cargolock.resolved_closure(resolved, lockfile.RESOLVE_CRATE, wanted)
    assert found is not None and len(found) == 1
    assert (found[0].version == "1.0.15") is pinned
    assert (cargolock.pinned_closure(seeded, wanted) is not None) is pinned


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('source = "git+https://example.com/itoa#abc"', "does not come from crates.io"),
        ('source = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "x"', "no sha256 checksum"),
    ],
)
def test_a_sidecar_may_pin_crates_io_versions_and_nothing_else(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "nb.rust_async.lock"
    path.write_text(f'version = 4\n\n[[package]]\nname = "itoa"\nversion = "1.0.15"\n{entry}\n')
    with pytest.raises(RustAsyncUsageError, match=message) as err:
        lockfile.read(path)
    assert str(path) in str(err.value) and "delete it" in str(err.value)


def test_where_the_notebook_path_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    nb = tmp_path / "analysis.ipynb"
    assert lockfile.choose("auto", {}) is None  # plain IPython, nbclient: no notebook known
    assert lockfile.choose("auto", {"__session__": str(nb)}) == tmp_path / "analysis.rust_async.lock"
    assert lockfile.choose("auto", {"__session__": "work/analysis.ipynb"}) == tmp_path / "analysis.rust_async.lock"
    assert lockfile.choose("auto", {"__session__": "Console 1"}) is None
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "other.ipynb"))
    assert lockfile.choose("auto", {}) == tmp_path / "other.rust_async.lock"
    assert lockfile.choose("off", {"__session__": str(nb)}) is None
    assert lockfile.choose(str(nb), {}) == tmp_path / "analysis.rust_async.lock"
    assert lockfile.choose("pins.lock", {}) == tmp_path / "pins.lock"


def test_cargo_takes_the_lower_of_two_compatible_pins(tmp_path: Path) -> None:
    """Why the sidecar holds one version per compatible range: given both, cargo
    silently resolves to the lower one and drops the other."""
    root = tmp_path / "probe"
    (root / "src").mkdir(parents=True)
    (root / "src" / "lib.rs").write_text("")
    (root / "Cargo.toml").write_text(
        '[package]\nname = "probe"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nitoa = "1"\n\n[workspace]\n'
    )
    both = "".join(
        f'\n[[package]]\nname = "itoa"\nversion = "{v}"\nsource = "{REGISTRY}"\nchecksum = "{ITOA[v]}"\n'
        for v in ("1.0.19", "1.0.15")
    )
    (root / "Cargo.lock").write_text("version = 4\n" + both)  # (render() never writes two: it keeps the newer)
    out = subprocess.run(
        [toolchain.cargo(), "update", "--workspace", "--manifest-path", str(root / "Cargo.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    kept = [p.version for p in cargolock.parse((root / "Cargo.lock").read_text(), "probe").packages if p.name == "itoa"]
    assert kept == ["1.0.15"]


# --- real builds in a shell that knows its notebook ---------------------------------------------


@pytest.fixture
def notebook(shell: Shell, tmp_path: Path) -> Iterator[Path]:
    """The shared shell, told (as ipykernel does under jupyter-server) which notebook it runs."""
    nb = tmp_path / "analysis.ipynb"
    shell.ns["__session__"] = str(nb)
    try:
        yield nb
    finally:
        del shell.ns["__session__"]


def last_module(shell: Shell) -> str:
    magics = shell.ip.magics_manager.registry["RustAsyncMagics"]
    return str(magics.loaded[-1].module)


def crate_versions(module: str, name: str) -> list[str]:
    text = (CACHE_DIR / "crates" / module / "Cargo.lock").read_text()
    return [p.version for p in cargolock.parse(text, module).packages if p.name == name]


ITOA_CELL = "pub fn pinned_fmt(n: i64) -> String { itoa::Buffer::new().format(n).to_owned() }"


def test_the_sidecar_pins_a_notebooks_crates(shell: Shell, notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sidecar_path = notebook.with_name("analysis.rust_async.lock")
    shell.rust(ITOA_CELL, "--dep itoa@1")
    pins = lockfile.read(sidecar_path)
    assert [p.name for p in pins.packages] == ["itoa"]
    first = last_module(shell)
    assert crate_versions(first, "itoa") == [pins.packages[0].version]
    # The next run finds everything pinned: no resolving, the same module, cached.
    capsys.readouterr()
    shell.rust(ITOA_CELL, "--dep itoa@1")
    assert last_module(shell) == first
    assert "cached" in capsys.readouterr().out
    # Another pin (someone else's sidecar, an older checkout) is another module, built with it.
    sidecar_path.write_text(sidecar(itoa("1.0.15")))
    shell.rust(ITOA_CELL, "--dep itoa@1")
    second = last_module(shell)
    assert second != first
    assert crate_versions(second, "itoa") == ["1.0.15"]
    assert shell.ns["pinned_fmt"](-15) == "-15"
    assert [p.version for p in lockfile.read(sidecar_path).packages] == ["1.0.15"]  # the pin stays
    # A cell that needs newer than the pin is resolved before its build; the pin moves up.
    shell.rust(ITOA_CELL.replace("pinned_fmt", "pinned_fmt2"), "--dep itoa@>=1.0.17")
    (newer,) = crate_versions(last_module(shell), "itoa")
    assert [p.version for p in lockfile.read(sidecar_path).packages] == [newer]


def test_cells_without_extra_crates_never_read_the_sidecar(shell: Shell, notebook: Path) -> None:
    notebook.with_name("analysis.rust_async.lock").write_text("this is not TOML [")
    shell.rust("pub fn no_extras() -> u8 { 7 }")
    with_notebook = last_module(shell)
    del shell.ns["__session__"]
    shell.rust("pub fn no_extras() -> u8 { 7 }")
    assert last_module(shell) == with_notebook
    shell.ns["__session__"] = str(notebook)


def test_lock_line_option_sets_the_sidecar(shell: Shell, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chosen = tmp_path / "pins" / "mine.lock"
    chosen.parent.mkdir()
    try:
        shell.run(f"%rust_async --lock {chosen}")
        assert f"lock:    {chosen}" in capsys.readouterr().out
        shell.rust(ITOA_CELL.replace("pinned_fmt", "chosen_fmt"), "--dep itoa@1")
        assert [p.name for p in lockfile.read(chosen).packages] == ["itoa"]
        shell.run("%rust_async --lock off")
        assert "lock:    none" in capsys.readouterr().out
    finally:
        shell.run("%rust_async --lock auto")


def test_a_kernel_started_for_a_notebook_keeps_its_sidecar(tmp_path: Path) -> None:
    """jupyter-server starts a notebook's kernel with JPY_SESSION_NAME, which ipykernel
    copies into ``__session__``; nbclient sets neither, so this starts the kernel
    with the variable as jupyter-server would."""
    from jupyter_client.manager import start_new_kernel

    nb = tmp_path / "kernel.ipynb"
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "JPY_SESSION_NAME": str(nb)})
    try:
        code = textwrap.dedent(
            f"""
            %load_ext ipy_rustasync
            assert __session__ == {str(nb)!r}
            """
        )
        reply = kc.execute_interactive(code, timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        reply = kc.execute_interactive(f"%%rust_async --dep itoa@1\n{ITOA_CELL}\n", timeout=600)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        km.shutdown_kernel(now=True)
    assert [p.name for p in lockfile.read(tmp_path / "kernel.rust_async.lock").packages] == ["itoa"]


def test_scripts_pass_a_sidecar_to_rust_module(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from ipy_rustasync import rust_module
        mod = rust_module({ITOA_CELL!r}, deps=["itoa@1"], lock={str(tmp_path / "script.lock")!r})
        print(mod.pinned_fmt(3))
        """
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
    assert [p.name for p in lockfile.read(tmp_path / "script.lock").packages] == ["itoa"]


def test_vendor_takes_a_notebooks_pins_for_the_offline_build(tmp_path: Path) -> None:
    """``vendor --lock`` vendors the versions a sidecar pins, and an offline build with
    that sidecar uses them; a pin missing from the directory gets a sentence naming
    ``--lock``."""
    from .test_offline import offline_env

    pins = tmp_path / "offline.rust_async.lock"
    pins.write_text(sidecar(itoa("1.0.15")))
    # The directory tests/test_offline.py vendors into (its fixture vendors it afresh),
    # so both share one offline dependency build.
    directory = TEST_CACHE / "vendor"
    cli = [
        sys.executable,
        "-m",
        "ipy_rustasync._front.cli",
        "vendor",
        str(directory),
        "--dep",
        "itoa@1",
        "--lock",
        str(pins),
    ]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert [m.read_text().count('version = "1.0.15"') for m in directory.glob("itoa*/Cargo.toml")] == [1]
    code = textwrap.dedent(
        f"""
        import sys
        from ipy_rustasync._pipeline.cells import compile_cell
        from ipy_rustasync._base.errors import RustAsyncUsageError
        try:
            c = compile_cell(sys.argv[1], deps=["itoa@1"], lock={str(pins)!r})
        except RustAsyncUsageError as err:
            print("ERROR", err)
        else:
            print("PINS", *c.spec.pins, c.module.pinned_fmt(15))
        """
    )
    source = f"// {tmp_path.name}\n{ITOA_CELL}"
    env = offline_env(tmp_path, directory)
    built = run_python(code, source, env=env, timeout=900)
    assert built.stdout.strip() == "PINS itoa 1.0.15 15", built.stdout + built.stderr
    pins.write_text(sidecar(itoa("1.0.19")))  # not in the directory now
    failed = run_python(code, source, env=env, timeout=900)
    assert failed.stdout.startswith("ERROR the crate `itoa`"), failed.stdout + failed.stderr
    assert f"add `--lock {pins}` to that `ipy-rustasync vendor` command" in failed.stdout
