"""Records shown to the user, on recorded builds (no cargo): rustc's plain-text layout
on the cell's lines, the same words as escaped, theme-colored HTML, the headline count,
and the JSON a cached module keeps them in."""

from __future__ import annotations

import html
import re

import pytest

from ipy_rustasync._presentation.diagnostics import Diagnostic, dumps, loads, render, summary

from .diagnostics_recordings import GLUE, NAMES, diagnose, foreign_error, load


def test_text_is_rustcs_layout_on_the_cell() -> None:
    (mismatch,) = diagnose("type_error")
    assert render.text(mismatch) == (
        "error[E0308]: mismatched types\n"
        " --> cell line 4, column 21\n"
        "  |\n"
        "4 |     let s: String = a;\n"
        "  |                     ^ expected `String`, found `i64`\n"
        "  |            ------ expected due to this\n"
        "help: try using a conversion method\n"
        "  |\n"
        "4 |     let s: String = a;\n"
        "  |                      ^ insert `.to_string()`"
    )


def test_the_text_and_html_count_lines_as_the_editor_does() -> None:
    # Under the %%rust_async line (the editor's line 1) the broken line is line 4, in the
    # `-->` line, the gutter of the quoted source and the HTML alike.
    recording = load("type_error")
    (in_cell,) = recording.diagnostics()
    text, page = render.text(in_cell), render.html(in_cell)
    assert " --> cell line 4, column 21" in text.splitlines()
    assert "4 |     let s: String = a;" in text.splitlines()
    assert "cell line 4, column 21" in page and "<span style='opacity: 0.6'>4 | </span>" in page
    # The same source given to rust_module has no magic line: its own line 3.
    (in_script,) = recording.as_script().diagnostics()
    assert " --> cell line 3, column 21" in render.text(in_script).splitlines()
    assert "3 |     let s: String = a;" in render.text(in_script).splitlines()
    # Lines after a ```cargo block count the block.
    (after_block,) = load("dep_misuse").diagnostics()
    assert "7 |     itoa::Buffer::new().format(text).to_owned()" in render.text(after_block).splitlines()


def test_notes_without_a_place_are_indented_under_the_gutter_and_the_hint_comes_last() -> None:
    (not_send,) = diagnose("not_send")
    assert not_send.hint is not None
    assert render.text(not_send) == (
        "error: future cannot be sent between threads safely\n"
        " --> cell line 2, column 5\n"
        "  |\n"
        "2 | pub async fn hold() -> u64 {\n"
        "  |     ^^^^^ future created by async block is not `Send`\n"
        "  = help: within `{async block@cell line 2:5}`, the trait `std::marker::Send` is not implemented for `Rc<u64>`\n"
        "note: future is not `Send` as this value is used across an await\n"
        "  |\n"
        "3 |     let rc = std::rc::Rc::new(5u64);\n"
        "  |         -- has type `Rc<u64>` which is not `Send`\n"
        "4 |     tokio::time::sleep(std::time::Duration::from_millis(1)).await;\n"
        "  |                                                             ^^^^^ await occurs here, with `rc` maybe used later\n"
        f"  = hint: {not_send.hint}"
    )
    *_, bounds = diagnose("macro_expansion")
    assert render.text(bounds).endswith(
        "  = note: the following trait bounds were not satisfied:\n    `u8: std::future::Future`"
    )


def test_the_gutter_is_as_wide_as_the_largest_line_number() -> None:
    (mismatch,) = diagnose("long_cell")
    assert render.text(mismatch) == (
        "error[E0308]: mismatched types\n"
        "  --> cell line 12, column 5\n"
        "   |\n"
        " 5 | pub fn tally(text: &str) -> Vec<(String, u64)> {\n"
        "   |                             ------------------ expected `Vec<(String, u64)>` because of return type\n"
        "12 |     sorted.len()\n"
        "   |     ^^^^^^^^^^^^ expected `Vec<(String, u64)>`, found `usize`\n"
        "   = note: expected struct `Vec<(String, u64)>`\n"
        "          found type `usize`"
    )


def test_a_span_to_its_lines_end_is_marked_to_the_end_of_the_quoted_line() -> None:
    (mismatch,) = diagnose("multi_line")
    lines = render.text(mismatch).splitlines()
    at = lines.index("3 |     String::from(")
    assert lines[at + 1] == "  |     ^^^^^^^^^^^^^ expected `u32`, found `String`"


def test_a_warning_says_its_lint_only_in_the_note_and_shows_a_replacement() -> None:
    (unused,) = diagnose("warning")
    lines = render.text(unused).splitlines()
    assert lines[0] == "warning: unused variable: `unused_here`"  # no [unused_variables]
    assert lines[-1] == "  |                             ^^^^^^^^^^^ `_unused_here`"


def test_another_crates_error_is_rustcs_text_without_a_place() -> None:
    foreign, rendered = foreign_error()
    rest = rendered.partition("\n")[2]
    first, *others = rest.splitlines()
    assert render.text(foreign).splitlines() == [
        "error[E0277]: the trait bound `&str: Integer` is not satisfied",
        f"  = note: {first}",
        *(f"    {line}" for line in others),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_html_carries_the_same_words_escaped(name: str) -> None:
    for d in diagnose(name):
        page = render.html(d)
        assert page == render.html(d)
        assert not GLUE.search(page)
        pre = re.fullmatch(r"<div [^>]*><pre [^>]*>(.*)</pre>(.*)</div>", page, re.DOTALL)
        assert pre is not None
        words = html.unescape(re.sub(r"<[^>]+>", "", pre[1]))
        assert words == re.sub(r"\n *= hint: [^\n]*\Z", "", render.text(d))  # the hint is under the <pre>
        assert "<" not in re.sub(r"<[^>]+>", "", pre[1])  # every < in rustc's words is escaped


def test_html_escapes_types_and_uses_the_themes_colors() -> None:
    (mismatch,) = diagnose("html_escape")
    page = render.html(mismatch)
    assert "Vec&lt;u8&gt;" in page and "Vec<u8>" not in page
    assert page.startswith(
        "<div style='margin: 4px 0; padding: 4px 8px; border-left: 3px solid; border-color: var(--jp-error-"
    )
    assert "<span style='color: var(--jp-error-color1, #d32f2f); font-weight: bold'>error[E0308]</span>" in page
    assert "<span style='opacity: 0.6'>2 | </span>" in page
    # The primary marker in the level's color, the secondary one in a quieter one.
    assert (
        "<span style='color: var(--jp-error-color1, #d32f2f); font-weight: bold'>^^^^^^^^^^^^^^^^^ "
        "expected `Vec&lt;u8&gt;`, found `Vec&lt;u16&gt;`</span>"
    ) in page
    assert (
        "<span style='color: var(--jp-info-color1, #0277bd)'>------- expected `Vec&lt;u8&gt;` because of return type</span>"
    ) in page
    (unused,) = diagnose("warning")
    assert "border-left: 3px solid; border-color: var(--jp-warn-" in render.html(unused)


def test_the_hint_is_a_paragraph_under_the_code_with_code_spans() -> None:
    (missing,) = diagnose("missing_crate")
    assert render.html(missing).endswith(
        "</pre><div style='margin-top: 4px; font-family: var(--jp-ui-font-family, sans-serif)'>"
        "<span style='color: var(--jp-brand-color1, #1976d2); font-weight: bold'>hint</span>: "
        "<code>rand</code> is not a dependency of this cell: add it with <code>%%rust_async --dep rand</code> "
        "(tokio, futures and pyo3 come with every cell), or if it is a named cell, "
        "run that cell (<code>%%rust_async --name rand</code>) first in this kernel.</div></div>"
    )
    (not_send,) = diagnose("not_send")
    assert "(a <code>Rc&lt;u64&gt;</code>) is held across" in render.html(not_send)


def test_the_headline_counts_errors_and_warnings() -> None:
    assert summary([]) == "no diagnostics"
    assert summary(diagnose("type_error")) == "1 error"
    assert summary(diagnose("borrow_error")) == "2 errors"
    assert summary(diagnose("warning")) == "1 warning"
    assert summary(diagnose("borrow_error") + diagnose("warning") * 2) == "2 errors, 2 warnings"


@pytest.mark.parametrize("name", NAMES)
def test_kept_beside_the_module_they_read_back_the_same(name: str) -> None:
    found = diagnose(name)
    recording = load(name)
    again: list[Diagnostic] = loads(dumps(found), recording.source, recording.first_line)
    assert again == found
    assert [render.text(d) for d in again] == [render.text(d) for d in found]


def test_a_damaged_or_older_kept_file_reads_as_no_diagnostics() -> None:
    assert loads("{not json", "") == []
    assert loads('[{"level": "warning"}]', "") == []
    assert loads('{"level": "warning"}', "") == []
