"""One reading of the settings per call (ipy_rustasync/_settings/context.py), one place that
knows the cache's layout (cache.py), one place that knows the exporter macro's names
(cell_macro.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cells
from ipy_rustasync._settings import config
from ipy_rustasync._settings.cache import Cache
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
