"""Compiler errors on the cell's own lines, with our sentence where rustc's is not
enough; build progress from cargo's JSON messages. Every case is a real build: the
end-to-end path from a cell to the error the user sees. The mapping, hints and
rendering are tested case by case on recorded builds in test_diagnostics_*.py."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ipy_rustasync import RustCompileError, RustPanic, rust_module
from ipy_rustasync._pipeline import cells
from ipy_rustasync._presentation import diagnostics, progress
from ipy_rustasync._presentation.diagnostics import Diagnostic, render
from ipy_rustasync._sources import crate

from . import diagnostics_recordings as recordings
from .conftest import cell


def compile_error(source: str) -> RustCompileError:
    with pytest.raises(RustCompileError) as info:
        rust_module(cell(source))
    err = info.value
    assert not recordings.GLUE.search(str(err)), str(err)
    assert not recordings.GLUE.search(err.html()), err.html()
    return err


def first_error(err: RustCompileError) -> Diagnostic:
    return next(d for d in err.diagnostics if d.level == "error")


def test_type_error_quotes_the_cell_line_with_markers() -> None:
    err = compile_error(
        """
        /// doc line
        pub fn broken(a: i64) -> i64 {
            let s: String = a;
            a
        }
        """
    )
    d = first_error(err)
    assert (d.line, d.column, d.code) == (3, 21, "E0308")
    assert err.headline == "the cell did not compile: 1 error; first: mismatched types (cell line 3)"
    lines = render.text(d).splitlines()
    assert lines[0] == "error[E0308]: mismatched types"
    assert " --> cell line 3, column 21" in lines
    quoted = lines.index("3 |     let s: String = a;")
    # The marker sits under `a` (column 21) with rustc's label; the help is kept.
    assert lines[quoted + 1] == "  |                     ^ expected `String`, found `i64`"
    assert "help: try using a conversion method" in render.text(d)
    assert "insert `.to_string()`" in render.text(d)


def test_not_send_future_gets_a_sentence_naming_the_value() -> None:
    err = compile_error(
        """
        pub async fn hold() -> u64 {
            let rc = std::rc::Rc::new(5u64);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            *rc
        }
        """
    )
    d = first_error(err)
    assert d.message == "future cannot be sent between threads safely"
    assert d.hint is not None
    assert d.hint.startswith("`rc` (a `Rc<u64>`) is held across an `.await`")
    assert "Arc" in d.hint
    # rustc's note is kept, on the cell's lines: where the value lives and the await.
    assert "2 |     let rc = std::rc::Rc::new(5u64);" in render.text(d)
    assert "has type `Rc<u64>` which is not `Send`" in render.text(d)
    # The future is the function's own (the glue adds no `async` block around it).
    assert "future returned by `hold` is not `Send`" in render.text(d)


def test_types_that_cannot_cross_to_python_get_a_sentence() -> None:
    err = compile_error(
        """
        pub struct Point { x: i64 }
        pub async fn norm(p: Point) -> i64 { p.x }
        pub fn origin() -> Point { Point { x: 0 } }
        """
    )
    errors = [d for d in err.diagnostics if d.level == "error"]
    # PyO3 reports a bad argument once per trait it tries; the user sees it once.
    assert [(d.line, d.message) for d in errors] == [
        (2, "`Point` cannot be used as a Python function argument"),
        (3, "`Point` cannot be converted to a Python object"),
    ]
    assert errors[0].hint and "cannot come in from Python" in errors[0].hint
    # PyO3 0.30: a pyclass converts from Python only when it asks to.
    assert "#[pyo3::pyclass(from_py_object)]" in errors[0].hint
    assert errors[1].hint and "#[pyo3::pyclass]" in errors[1].hint


def test_signatures_may_use_the_cells_own_imports_and_types() -> None:
    # The exporter's wrappers live inside the cell's module, so names resolve as written.
    mod = rust_module(
        cell(
            """
            use std::collections::HashMap;
            #[pyo3::pyclass(from_py_object)]
            #[derive(Clone)]
            pub struct Point { #[pyo3(get)] pub x: i64 }
            pub fn total(m: HashMap<String, u64>) -> u64 { m.values().sum() }
            pub fn shift(p: Point, by: i64) -> Point { Point { x: p.x + by } }
            pub fn origin() -> Point { Point { x: 0 } }
            """
        )
    )
    assert mod.total({"a": 2, "b": 3}) == 5
    assert mod.shift(mod.origin(), 4).x == 4


def test_missing_crate_says_how_to_add_it() -> None:
    err = compile_error("pub fn r() -> u32 { rand::random() }\n")
    d = first_error(err)
    assert d.hint == (
        "`rand` is not a dependency of this cell: add it with `%%rust_async --dep rand` "
        "(tokio, futures and pyo3 come with every cell), or if it is a named cell, "
        "run that cell (`%%rust_async --name rand`) first in this kernel."
    )
    # Crates every cell has never get that sentence.
    err = compile_error("pub fn r() -> u32 { tokio::nope::thing() }\n")
    assert first_error(err).hint is None


def test_a_name_defined_twice_is_one_message_per_problem() -> None:
    err = compile_error("pub fn f() -> u8 { 1 }\npub async fn f() -> u8 { 2 }\n")
    messages = [d.message for d in err.diagnostics]
    assert messages == ["the name `f` is defined multiple times", "two exported items are both named `f` in Python"]
    assert "note: first defined here" in render.text(err.diagnostics[1])


def test_html_is_escaped_colored_and_carries_the_same_text() -> None:
    err = compile_error("pub fn v() -> Vec<u8> { Vec::<u16>::new() }\n")
    page = err.html()
    assert "Vec&lt;u8&gt;" in page and "Vec<u8>" not in page
    assert "var(--jp-error-color1" in page  # the theme's own error color, light or dark
    text = re.sub(r"<[^>]+>", "", page)
    import html

    assert render.text(first_error(err)) in html.unescape(text)


def test_warnings_are_kept_on_the_cell_lines(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    source = f"pub fn w(a: u8) -> u8 {{ let unused_here = {uuid.uuid4().int % 10**9}; a }}\n"
    shell.rust(source)
    out = capsys.readouterr().out
    assert "built in" in out and "1 warning" in out
    # Line 2 as the editor counts: the %%rust_async line is line 1.
    assert "rust_async: warning: unused variable: `unused_here` (cell line 2)" in out
    shell.rust(source)  # re-run: loaded from the cache, and the warning comes with it
    again = capsys.readouterr().out
    assert "cached, 1 warning" in again
    assert "rust_async: warning: unused variable: `unused_here` (cell line 2)" in again


#: A cell whose panics come after a ```cargo block: editor lines 7 and 12 under the
#: %%rust_async line (line 1), the source's own lines 6 and 11 without it.
PANICS = """
//! ```cargo
//! [dependencies]
//! itoa = "1"
//! ```
pub fn explode_now(n: u8) -> String {
    if n > 0 { panic!("sync boom {}", itoa::Buffer::new().format(n)) }
    String::new()
}
pub async fn explode_later() -> u8 {
    tokio::task::yield_now().await;
    panic!("async boom")
}
"""


def test_a_panic_names_the_line_the_editor_shows(shell: Any) -> None:
    nonce = uuid.uuid4().hex  # a new module, so the build itself is what is tested
    source = cell(PANICS) + f"// {nonce}\n"
    shell.rust(source)
    with pytest.raises(RustPanic, match="sync boom 3") as now:
        shell.ns["explode_now"](3)
    assert now.value.cell_line == 7
    assert str(now.value).startswith("Rust panicked at cell line 7, column 16: ")
    later = shell.fails("await explode_later()")
    assert isinstance(later, RustPanic) and later.cell_line == 12
    # rust_module(source) has no magic line: its lines are the source's own.
    mod = rust_module(source)
    with pytest.raises(RustPanic, match="sync boom 1") as own:
        mod.explode_now(1)
    assert own.value.cell_line == 6
    assert str(own.value).startswith("Rust panicked at cell line 6, column 16: ")
    # Both kinds in one process, on one copy of the bridge (the shared runtime): each
    # keeps its own numbering, the cell's after the module was loaded too.
    with pytest.raises(RustPanic, match="sync boom 2") as again:
        shell.ns["explode_now"](2)
    assert again.value.cell_line == 7
    with pytest.raises(RustPanic) as own_again:
        mod.explode_now(4)
    assert own_again.value.cell_line == 6


def test_a_compile_error_names_the_line_the_editor_shows(shell: Any) -> None:
    # The headline, the --> line and the quoted line's gutter all say line 3: the
    # editor's, the %%rust_async line being line 1.
    err = shell.fails(f'%%rust_async\n// {uuid.uuid4().hex}\npub fn f() -> u8 {{ "text" }}\n')
    assert isinstance(err, RustCompileError)
    assert err.headline.endswith("first: mismatched types (cell line 3)")
    text = str(err)
    assert " --> cell line 3, column 20" in text.splitlines()
    assert '3 | pub fn f() -> u8 { "text" }' in text.splitlines()
    assert "cell line 3, column 20" in err.html()


def test_blank_lines_above_the_magic_line_count_too(shell: Any) -> None:
    # IPython drops them before the magic runs; the editor still shows them.
    err = shell.ip.run_cell(f'\n\n%%rust_async\n// {uuid.uuid4().hex}\npub fn f() -> u8 {{ "text" }}\n').error_in_exec
    assert isinstance(err, RustCompileError)
    assert err.headline.endswith("(cell line 5)")


# --- progress -------------------------------------------------------------------------------


class Recorder(progress.Progress):
    """A real Progress writing to a buffer instead of the terminal."""

    def __init__(self) -> None:
        super().__init__(in_kernel=False, interval=0.0)
        self.in_place = True  # as in a terminal: every update is shown
        self.shown: list[str] = []

    def _show(self) -> None:
        self.shown.append(self.status())


def test_progress_counts_cargo_units_exactly_after_the_first_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPY_RUSTASYNC_DIRECT_RUSTC", "0")  # cargo's units (a replay is one: test_rustc_direct)
    first = Recorder()
    cells.compile_cell("pub async fn progress_probe() -> u8 { 7 }\n", force=True, watcher=first)
    second = Recorder()
    edited = cells.compile_cell(
        f"pub async fn progress_probe() -> u32 {{ {uuid.uuid4().int % 1000} }}\n", watcher=second
    )
    # Every unit reports (fresh ones too); the second build knows the total.
    assert second.total == first.done == second.done
    assert second.current == edited.build.module  # the crate compiling now
    assert second.shown and second.shown[-1].startswith(f"rust_async: compiling {second.done - 1}/{second.total}: ira_")
    assert first.done > 20  # pyo3, tokio, futures and their dependencies


def test_progress_plain_output_is_a_few_lines_not_a_scroll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal (nbconvert, CI): quick builds print only the summary; long ones a
    line per interval at most."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 3600.0)
    p = progress.Progress(in_kernel=False)
    p.expect(3)
    for name in ("a", "b", "c"):
        p.line(f"   Compiling {name} v0.1.0")
        p.message({"reason": "compiler-artifact", "fresh": False})
    p.finish("rust_async: built in 0.10 s")
    assert out.getvalue() == "rust_async: built in 0.10 s\n"

    out.seek(0)
    out.truncate()
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    p = progress.Progress(in_kernel=False)
    p.expect(2)
    p.line("   Compiling tokio v1.0.0")
    p.message({"reason": "compiler-artifact", "fresh": False})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rust_async: compiling 0/2: tokio (")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_kept_warnings_round_trip() -> None:
    source = "pub fn w2(a: u8) -> u8 { let unused_too = 1; a }\n"
    built = cells.compile_cell(source, force=True).build
    assert [w.message for w in built.warnings] == ["unused variable: `unused_too`"]
    assert diagnostics.loads(diagnostics.dumps(built.warnings), source) == built.warnings


# --- the recordings the fast tests read ------------------------------------------------------


def test_the_recorder_captures_what_the_mapping_reads(tmp_path: Path) -> None:
    """tests/data/diagnostics/record.py still works with the build (it drives
    cells.compile_cell with a watcher), and a fresh build of a recorded cell maps
    to the same places as its recording."""
    spec = importlib.util.spec_from_file_location("record", recordings.DATA / "record.py")
    assert spec is not None and spec.loader is not None
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    written = recorder.record("type_error", tmp_path)
    fresh = json.loads(written.read_text(encoding="utf-8"))
    assert (fresh["first_line"], fresh["line_offset"]) == (2, crate.line_offset(2)) == (2, 0)
    assert fresh["module"].startswith("ira_")
    text = written.read_text(encoding="utf-8")
    assert str(recordings.DATA.parent.parent.parent) not in text and str(Path.home()) not in text
    stored = recordings.load("type_error")
    again = replace(stored, module=fresh["module"], messages=fresh["messages"]).diagnostics()
    assert [(d.message, d.line, d.column, d.spans) for d in again] == [
        (d.message, d.line, d.column, d.spans) for d in stored.diagnostics()
    ]
