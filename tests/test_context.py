"""One reading of the settings per call (ipy_rustasync/_settings/context.py), one place that
knows the cache's layout (cache.py), one place that knows the exporter macro's names
(cell_macro.py)."""

from __future__ import annotations

import hashlib
import os
import time
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cells
from ipy_rustasync._settings import cache as cache_module
from ipy_rustasync._settings import config
from ipy_rustasync._settings.cache import EXT_SUFFIX, Cache
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import cell_macro, crate

from .conftest import Shell


def test_the_cache_opens_at_first_use_so_settings_show_with_a_bad_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shell: Shell, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("", encoding="utf-8")
    monkeypatch.setenv("IPY_RUSTASYNC_CACHE_DIR", str(not_a_directory))
    context = Context.load()
    assert context.settings.cache_dir == not_a_directory
    with pytest.raises(RustAsyncUsageError, match=r"cannot use .* as the cache directory"):
        context.cache  # noqa: B018 - the property opens it
    capsys.readouterr()
    shell.run("%rust_async")
    assert f"cache:   {not_a_directory}" in capsys.readouterr().out


def test_a_cell_magic_call_reads_the_settings_once(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "pub fn settings_read_once() -> u8 { 1 }"
    shell.rust(source)  # built (or cached) before counting
    calls: list[int] = []
    real = config.Settings.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[config.Settings]) -> config.Settings:
        calls.append(1)
        return real(cls)  # type: ignore[no-any-return]

    monkeypatch.setattr(config.Settings, "load", classmethod(counting))
    shell.rust(source)
    assert len(calls) == 1


def test_the_config_file_is_parsed_once_while_unchanged_and_again_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cell run reads the settings; a settled file (changed ≥ 1 s ago) is parsed
    once while its stat holds, and any write (another process's too) is seen."""
    path = tmp_path / "config.toml"
    monkeypatch.setenv("IPY_RUSTASYNC_CONFIG", str(path))
    monkeypatch.delenv("IPY_RUSTASYNC_RELEASE", raising=False)
    parsed: list[Path] = []
    real = config._parse

    def counting(p: Path) -> dict[str, Any]:
        parsed.append(p)
        return real(p)

    monkeypatch.setattr(config, "_parse", counting)
    config._parse_settled.cache_clear()
    path.write_text("release = true\n", encoding="utf-8")
    # Just written (the clock's tick could hide a second write): parsed every time.
    assert [config.Settings.load().release for _ in range(2)] == [True] * 2 and len(parsed) == 2
    monkeypatch.setattr(config, "SETTLED_NS", 0)  # as if written long ago (ctime cannot be set back)
    assert [config.Settings.load().release for _ in range(3)] == [True] * 3
    assert len(parsed) == 3  # once more for the settled file, then remembered
    path.write_text("release = false\n", encoding="utf-8")  # another size and mtime
    assert config.Settings.load().release is False and len(parsed) == 4


def test_a_given_context_is_used_and_the_settings_are_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    context = Context.load()
    source = "pub fn given_context() -> u8 { 2 }\n"
    cells.compile_cell(source, context=context)

    def refuse(cls: type[config.Settings]) -> config.Settings:
        raise AssertionError("the settings were read again")

    monkeypatch.setattr(config.Settings, "load", classmethod(refuse))
    compiled = cells.compile_cell(source, context=context)
    assert compiled.build.cached
    assert compiled.module.given_context() == 2


def test_the_cache_names_the_crate_where_the_build_writes_it(tmp_path: Path) -> None:
    context = Context.load()
    compiled = cells.compile_cell("pub fn crate_layout() -> u8 { 3 }\n", context=context)
    module = compiled.spec.module
    assert context.cache.crate_lock(module).is_file()
    # crate.write lays out the same folder under any crates directory.
    scratch = Cache(tmp_path)
    assert crate.write(compiled.spec, scratch.crates) == scratch.crate_dir(module)
    assert scratch.crate_lock(module).is_file()


def test_the_single_cell_crate_uses_the_macro_attribute_cell_macro_documents() -> None:
    spec = crate.CellSpec(source="pub fn f() {}\n")
    assert crate.lib_rs(spec).splitlines()[0].startswith(cell_macro.attribute(spec.module, spec.line_offset) + " ")


@pytest.mark.parametrize(("first_line", "offset"), [(1, 1), (2, 0), (4, 0)])
def test_src_lib_rs_numbers_the_cell_as_the_editor_does(first_line: int, offset: int) -> None:
    # A %%rust_async cell's body is the editor's line 2 and src/lib.rs's too (so rustc,
    # panics and line!() need no subtraction); rust_module source (line 1 its own first)
    # is one line further down; blank lines above a magic line pad the header.
    spec = crate.CellSpec(source="pub fn f() {}\npub fn g() {}\n", first_line=first_line)
    assert spec.line_offset == offset == crate.line_offset(first_line)
    lines = crate.lib_rs(spec).splitlines()
    assert lines.index("pub fn g() {}") + 1 - spec.line_offset == first_line + 1
    assert f"line_offset = {offset})] mod cell {{" in crate.lib_rs(spec)
    # Where the cell sits is part of the module's name: a panic's line is compiled in.
    assert spec.module != crate.CellSpec(source=spec.source, first_line=first_line + 1).module


def test_the_notebook_module_registers_every_cell_in_order() -> None:
    text = cell_macro.notebook_lib_rs(
        "nb", [("a.ipynb cell 1", "pub fn a() {}"), ("a.ipynb cell 3", "pub fn b() {}\n")]
    )
    first, second = text.index("mod cell_1 {"), text.index("mod cell_2 {")
    assert first < second
    assert cell_macro.attribute("nb_cell_1", 0) in text and cell_macro.attribute("nb_cell_2", 0) in text
    assert text.index("cell_1::register(m)?;") < text.index("cell_2::register(m)?;")
    assert text.count(f"{cell_macro.REGISTER}(m)") == 2
    assert f'm.add("{cell_macro.EXPORTS_TABLE}", table)' in text


# --- the module checksum, hashed once per process -------------------------------------------


MODULE = "ira_" + "0123456789abcdef"


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the sha256 objects cache.py makes (each is one hashing of a module), with an
    empty memory of verified modules."""
    made: list[str] = []

    def sha256(*args: bytes) -> Any:
        made.append("sha256")
        return hashlib.sha256(*args)

    monkeypatch.setattr(cache_module, "hashlib", types.SimpleNamespace(sha256=sha256))
    monkeypatch.setattr(cache_module, "_VERIFIED", {})
    return made


def later(monkeypatch: pytest.MonkeyPatch, seconds: float = 5.0) -> None:
    """The checks from now on happen ``seconds`` after the files were written."""
    monkeypatch.setattr(
        cache_module, "time", types.SimpleNamespace(time_ns=lambda: time.time_ns() + int(seconds * 1e9))
    )


def installed(tmp_path: Path, data: bytes = b"\x7fELF a module" * 1000) -> Cache:
    cache = Cache.open(tmp_path / "cache")
    artifact = tmp_path / f"built{EXT_SUFFIX}"
    artifact.write_bytes(data)
    cache.install(artifact, MODULE)
    return cache


def test_an_unchanged_module_is_hashed_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    cache = installed(tmp_path)
    hashes.clear()  # install's own
    later(monkeypatch)
    for _ in range(5):
        assert cache.trusted_module(MODULE) == cache.module_path(MODULE)
    assert len(hashes) == 1
    # Another Cache object (each Context.load() makes one) shares the process's memory.
    assert Cache.open(cache.root).trusted_module(MODULE) == cache.module_path(MODULE)
    assert len(hashes) == 1


def test_a_shared_library_installed_again_unchanged_is_neither_copied_nor_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    """Every build of a cell on the shared runtime installs the runtime and libstd again:
    unchanged, they stay as they are, hashed once per process; a changed one is copied."""
    cache = Cache.open(tmp_path / "cache")
    artifact = tmp_path / "libruntime.so"
    artifact.write_bytes(b"\x7fELF a runtime" * 1000)
    dest = cache.install_library(artifact, "libruntime.so", needs=[])
    later(monkeypatch)
    placed = dest.stat()
    hashes.clear()
    for _ in range(3):
        assert cache.install_library(artifact, "libruntime.so", needs=[]) == dest
    assert len(hashes) == 2  # the artifact and the installed copy, once each
    assert dest.stat().st_ino == placed.st_ino  # not copied again
    artifact.write_bytes(b"\x7fELF another runtime" * 1000)
    cache.install_library(artifact, "libruntime.so", needs=[])
    assert dest.read_bytes() == artifact.read_bytes() and dest.stat().st_ino != placed.st_ino
    assert cache.trusted_library("libruntime.so")


def test_a_module_just_written_is_hashed_at_every_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    """File times tick coarsely: a rewrite in the tick it was hashed in could keep its
    stat, so a file is remembered only once its last change is SETTLED_NS old."""
    cache = installed(tmp_path)
    hashes.clear()
    monkeypatch.setattr(cache_module, "SETTLED_NS", 3_600 * 10**9)
    for _ in range(3):
        assert cache.trusted_module(MODULE) is not None
    assert len(hashes) == 3


def test_a_module_replaced_after_its_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    data = b"\x7fELF a module" * 1000
    cache = installed(tmp_path, data)
    later(monkeypatch)
    path = cache.module_path(MODULE)
    assert cache.trusted_module(MODULE) == path
    # Another file renamed into place, the same size and mode (a new inode and ctime).
    other = tmp_path / "other"
    other.write_bytes(data.replace(b"ELF", b"FLE"))
    other.chmod(0o700)
    os.replace(other, path)
    hashes.clear()
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert cache.trusted_module(MODULE) is None
    assert hashes == ["sha256"] and not path.exists()


def test_a_module_changed_in_place_after_its_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    data = b"\x7fELF a module" * 1000
    cache = installed(tmp_path, data)
    later(monkeypatch)
    path = cache.module_path(MODULE)
    assert cache.trusted_module(MODULE) == path
    before = path.stat()
    time.sleep(0.05)  # past the file system's clock tick
    with path.open("r+b") as fh:  # the same size, the same inode; its mtime put back
        fh.write(b"\x00")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ctime_ns != before.st_ctime_ns  # what gives it away
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert cache.trusted_module(MODULE) is None
    # A rebuilt module (installed anew) is checked from scratch and trusted.
    artifact = tmp_path / "rebuilt"
    artifact.write_bytes(data)
    cache.install(artifact, MODULE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.trusted_module(MODULE) == path


def test_a_changed_checksum_file_is_noticed_though_the_module_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    cache = installed(tmp_path)
    later(monkeypatch)
    assert cache.trusted_module(MODULE) is not None
    size = cache.module_path(MODULE).stat().st_size
    cache.checksum_path(MODULE).write_text(f"{'0' * 64} {size}\n")
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert cache.trusted_module(MODULE) is None


# --- a cell's own files in the shared target ------------------------------------------------


#: What cargo leaves for one cell crate in a profile directory, on each platform.
CELL_FILES = (
    "lib{m}.so",
    "lib{m}.d",
    "lib{m}.dylib",
    "{m}.dll",
    "{m}.dll.lib",
    "{m}.pdb",
    "{m}.d",
    "deps/lib{m}.so",
    "deps/{m}.d",
    "deps/{m}.{m}.1234abcd-cgu.0.rcgu.o",
    ".fingerprint/{m}-bc1ecfb2ede51779/lib-{m}.json",
    "incremental/{m}-2ro45o5g7zxro/s-abc/query-cache.bin",
)

#: The dependencies' files, which stay.
DEPENDENCY_FILES = (
    "deps/libpyo3-5d3f.rlib",
    "deps/libipy_rustasync-c86d.rlib",
    "deps/ipy_rustasync-c86d.d",
    ".fingerprint/ipy-rustasync-61b5/lib-ipy_rustasync.json",
    "incremental/ipy_rustasync-1zqdo5z57q0ly/s-x/query-cache.bin",
    "build/pyo3-ffi-e1ec/output",
    "build/ipy-rustasync-61b5/output",
    "deps/libira_utils-1234.rlib",  # a dependency whose name starts like a cell's
)


def fake_target(target: Path, modules: list[str], profiles: tuple[str, ...] = ("debug", "release")) -> None:
    for profile in profiles:
        for name in (*DEPENDENCY_FILES, *(f.format(m=m) for m in modules for f in CELL_FILES)):
            path = target / profile / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")


def files_under(target: Path) -> set[str]:
    return {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}


def test_a_cells_build_is_removed_from_the_target_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "target"
    mine, other = "ira_" + "a" * 16, "ira_" + "b" * 16
    fake_target(target, [mine, other])
    removed = Cache(tmp_path).remove_cell_build(target, mine)
    left = files_under(target)
    assert not {f for f in left if mine in f}
    assert removed == 2 * (len(CELL_FILES) - 2 + 2)  # files, and the fingerprint and incremental folders
    expected = {f"{p}/{f.format(m=other)}" for p in ("debug", "release") for f in (*CELL_FILES, *DEPENDENCY_FILES)}
    assert left == expected
    assert Cache(tmp_path).remove_cell_build(target, mine) == 0  # again: nothing there
    assert Cache(tmp_path).remove_cell_build(tmp_path / "no-target", mine) == 0


def test_cache_clear_keeps_the_dependency_build_and_removes_every_cells_files(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "cache")
    cells_built = ["ira_" + "a" * 16, "ira_" + "b" * 16]
    for target in (cache.target, cache.target_for(tmp_path / "vendored")):
        fake_target(target, cells_built, profiles=("debug",))
    cache.clear(keep_target=True)
    for target in (cache.target, cache.target_for(tmp_path / "vendored")):
        assert files_under(target) == {f"debug/{f}" for f in DEPENDENCY_FILES}
    cache.clear()
    assert not list(cache.root.glob("target*"))
