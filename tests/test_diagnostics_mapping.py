"""rustc's JSON -> records on the cell's lines, on recorded builds (no cargo): where
each error lands, which spans, notes and messages survive, and what is left out."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from ipy_rustasync._presentation.diagnostics import Note, Span
from ipy_rustasync._presentation.diagnostics.model import TO_LINE_END

from .diagnostics_recordings import GLUE, NAMES, diagnose, foreign_error, load

#: (level, code, message, line, column) of every diagnostic a recording maps to, checked
#: by hand against its ``.rs``. Lines are the editor's: the cells were recorded as
#: ``%%rust_async`` cells, whose magic line is line 1, so a ``.rs`` line N is line N + 1
#: (columns are 1-based, as rustc counts them).
WHERE = {
    "borrow_error": [
        ("error", "E0505", "cannot move out of `kept` because it is borrowed", 5, 10),
        ("error", "E0382", "borrow of moved value: `words`", 6, 19),
    ],
    "defined_twice": [
        ("error", "E0428", "the name `f` is defined multiple times", 3, 1),
        ("error", None, "two exported items are both named `f` in Python", 3, 14),
    ],
    "dep_misuse": [("error", "E0277", "the trait bound `&str: Integer` is not satisfied", 7, 32)],
    "format_arg": [("error", "E0277", "`Opaque` doesn't implement `std::fmt::Display`", 5, 19)],
    "html_escape": [("error", "E0308", "mismatched types", 2, 25)],
    "long_cell": [("error", "E0308", "mismatched types", 12, 5)],
    "macro_expansion": [
        ("error", "E0277", "`u8` is not a future", 3, 46),
        ("error", "E0277", "`u8` is not a future", 3, 18),
        (
            "error",
            "E0599",
            "the method `take_output` exists for struct `Pin<&mut tokio::future::maybe_done::MaybeDone<u8>>`, "
            "but its trait bounds were not satisfied",
            3,
            18,
        ),
    ],
    "missing_crate": [("error", "E0433", "cannot find module or crate `rand` in this scope", 2, 24)],
    "missing_pub": [("error", "E0603", "function `double` is private", 6, 40)],
    "multi_line": [("error", "E0308", "mismatched types", 3, 5)],
    "multi_span": [("error", "E0308", "`if` and `else` have incompatible types", 6, 9)],
    "not_convertible": [
        ("error", "E0277", "`Point` cannot be used as a Python function argument", 3, 22),
        ("error", "E0277", "`Point` cannot be converted to a Python object", 4, 5),
    ],
    "not_send": [("error", None, "future cannot be sent between threads safely", 2, 5)],
    "provided_crate": [("error", "E0433", "cannot find `nope` in `tokio`", 2, 28)],
    "type_error": [("error", "E0308", "mismatched types", 4, 21)],
    "unknown_name": [("error", "E0425", "cannot find value `offest` in this scope", 4, 11)],
    "unresolved_import": [("error", "E0432", "unresolved import `rand`", 2, 5)],
    "warning": [("warning", "unused_variables", "unused variable: `unused_here`", 2, 29)],
}


@pytest.mark.parametrize("name", NAMES)
def test_each_recorded_build_lands_on_the_cells_own_lines(name: str) -> None:
    found = diagnose(name)
    assert [(d.level, d.code, d.message, d.line, d.column) for d in found] == WHERE[name]
    # As the editor numbers them: the magic line (blank here: nothing is said of it), then the cell's.
    lines = ["", *load(name).source.splitlines()]
    for d in found:
        assert d.source == tuple(lines)
        for span in (*d.spans, *(s for n in d.notes for s in n.spans)):
            assert 2 <= span.line <= len(lines)
            assert 1 <= span.start <= len(lines[span.line - 1]) + 1
        said = [d.message, *(s.label or "" for s in d.spans), *(n.message for n in d.notes)]
        assert not any(GLUE.search(text) for text in said), said


def test_every_span_keeps_its_place_and_label() -> None:
    moved = diagnose("borrow_error")[0]
    assert sorted(moved.spans, key=lambda s: s.line) == [
        Span(3, 9, 13, False, "binding `kept` declared here"),
        Span(4, 18, 22, False, "borrow of `kept` occurs here"),
        Span(5, 10, 14, True, "move out of `kept` occurs here"),
        Span(6, 5, 10, False, "borrow later used here"),
    ]
    # rustc's suggestion is a zero-width span with the text to insert.
    assert moved.notes == (
        Note(
            "help",
            "consider cloning the value if the performance cost is acceptable",
            (Span(4, 22, 22, True, None, ".clone()"),),
        ),
    )


def test_a_span_over_several_lines_is_kept_on_its_first_line_to_the_end() -> None:
    (mismatch,) = diagnose("multi_line")
    assert mismatch.spans == (
        Span(3, 5, TO_LINE_END, True, "expected `u32`, found `String`"),
        Span(2, 25, 28, False, "expected `u32` because of return type"),
    )
    (arms,) = diagnose("multi_span")
    assert sorted(arms.spans, key=lambda s: s.line) == [
        Span(3, 17, TO_LINE_END, False, "`if` and `else` have incompatible types"),
        Span(4, 9, 13, False, "expected because of this"),
        Span(6, 9, 15, True, "expected `u32`, found `&str`"),
    ]


def test_spans_inside_a_macros_own_source_move_to_where_the_cell_calls_it() -> None:
    # tokio::join!'s errors point into tokio's join.rs; the cell only has the call.
    first, second, _ = diagnose("macro_expansion")
    assert first.spans == (
        Span(3, 46, 49, True, "`u8` is not a future"),
        Span(3, 18, 50, False, "required by a bound introduced by this call"),
    )
    assert second.spans == (Span(3, 18, 50, True, "`u8` is not a future"),)


def test_one_message_repeated_at_one_place_is_shown_once() -> None:
    recording = load("macro_expansion")
    said = [m["message"]["message"] for m in recording.messages]
    assert said.count("`u8` is not a future") == 7  # six of them inside join.rs
    assert [d.message for d in recording.diagnostics()].count("`u8` is not a future") == 2


def test_notes_about_other_crates_and_the_machinery_are_dropped() -> None:
    # itoa's bound (in the registry's source) and rustc's list of other types.
    recording = load("dep_misuse")
    assert len(recording.messages[0]["message"]["children"]) == 2
    assert diagnose("dep_misuse")[0].notes == ()
    argument, returned = diagnose("not_convertible")
    assert [n.message for n in argument.notes] == [
        "the trait `FromPyObject<'_, '_>` is not implemented for `Point`",
        "implement `FromPyObject` to enable using `Point` as a function argument",
        "`Python<'py>` is also a valid argument type to pass the Python token into `#[pyfunction]`s and `#[pymethods]`",
    ]
    assert argument.notes[0].spans == (Span(2, 1, 17, True, None),)
    assert [n.message for n in returned.notes] == [
        "the trait `IntoPyObject<'_>` is not implemented for `Point`",
        "`IntoPyObject` is automatically implemented by the `#[pyclass]` macro",
        "if you do not wish to have a corresponding Python type, implement it manually",
        "if you do not own `Point` you can perform a manual conversion to one of the types in `pyo3::types::*`",
    ]


def test_notes_about_the_bridges_conversion_of_async_results_are_dropped() -> None:
    # An async function's result reaches Python through the bridge's `IntoOutput` impls;
    # rustc names them in a "required for" note under the user's own error.
    recording = load("not_convertible")
    messages = recording.copy_messages()
    returned = next(m for m in messages if "cannot be converted" in m["message"]["message"])
    children = returned["message"]["children"]
    for text in ("required for `PlainTag` to implement `IntoOutput<Point>`", "1 redundant requirement hidden"):
        children.append({"message": text, "level": "note", "spans": [], "children": [], "code": None, "rendered": None})
    _, edited = recording.diagnostics(messages)
    _, unedited = recording.diagnostics()
    assert edited.notes == unedited.notes


def test_locations_inside_rustcs_words_are_told_on_the_cell() -> None:
    (not_send,) = diagnose("not_send")
    assert not_send.notes[0] == Note(
        "help", "within `{async block@cell line 2:5}`, the trait `std::marker::Send` is not implemented for `Rc<u64>`"
    )
    # The note keeps both of its spans on the cell; the bridge's bound is dropped.
    assert not_send.notes[1:] == (
        Note(
            "note",
            "future is not `Send` as this value is used across an await",
            (
                Span(4, 61, 66, True, "await occurs here, with `rc` maybe used later"),
                Span(3, 9, 11, False, "has type `Rc<u64>` which is not `Send`"),
            ),
        ),
    )
    # A location in the generated header is not the user's: it is called that.
    recording = load("not_send")
    messages = recording.copy_messages()
    help_note = messages[0]["message"]["children"][0]
    assert "src/lib.rs:2:5: 2:10" in help_note["message"]
    header = recording.first_line - 1 + recording.line_offset  # the line before the cell's first
    help_note["message"] = help_note["message"].replace("src/lib.rs:2:5: 2:10", f"src/lib.rs:{header}:1")
    (edited,) = recording.diagnostics(messages)
    assert edited.notes[0].message.startswith("within `{async block@generated code}`")


def test_a_cells_lines_are_the_editors_and_a_scripts_its_own() -> None:
    # type_error.rs's third line is `let s: String = a;`. Under the %%rust_async line the
    # editor shows it as line 4, and so does src/lib.rs: nothing is subtracted.
    recording = load("type_error")
    assert (recording.first_line, recording.line_offset) == (2, 0)
    (in_cell,) = recording.diagnostics()
    assert (in_cell.line, in_cell.column) == (4, 21)
    assert {s.line for s in in_cell.spans} | {s.line for n in in_cell.notes for s in n.spans} == {4}
    assert in_cell.source[in_cell.line - 1] == "    let s: String = a;"
    # rust_module(source) has no magic line: the source's own first line is line 1.
    (in_script,) = recording.as_script().diagnostics()
    assert (in_script.line, in_script.column) == (3, 21)
    assert {s.line for s in in_script.spans} == {3}
    assert in_script.source == tuple(recording.source.splitlines())


def test_lines_after_a_cargo_block_count_the_block() -> None:
    # dep_misuse.rs: four lines of ```cargo block, then the code; the error is on its line 6.
    recording = load("dep_misuse")
    assert recording.source.splitlines()[5] == "    itoa::Buffer::new().format(text).to_owned()"
    (in_cell,) = recording.diagnostics()
    assert (in_cell.line, in_cell.column) == (7, 32)
    (in_script,) = recording.as_script().diagnostics()
    assert (in_script.line, in_script.column) == (6, 32)


def test_the_line_offset_is_what_is_subtracted() -> None:
    recording = load("type_error")
    (shifted,) = replace(recording, line_offset=recording.line_offset + 1).diagnostics()
    assert (shifted.line, shifted.column) == (3, 21)
    assert {s.line for s in shifted.spans} == {3}
    # A line the shift moves before the cell's first is the generated header's, not the user's.
    assert replace(recording, line_offset=recording.line_offset + 3).diagnostics()[0].line is None


def test_errors_about_the_glue_alone_are_left_out_when_the_users_error_explains_them() -> None:
    recording = load("defined_twice")
    errors = [m for m in recording.messages if m["message"]["level"] == "error"]
    assert len(errors) == 9  # the glue's own copies of `f`, PyO3's, the exporter's pair
    user_error, exported_twice = recording.diagnostics()
    assert user_error.spans == (
        Span(3, 1, 23, True, "`f` redefined here"),
        Span(2, 1, 17, False, "previous definition of the value `f` here"),
    )
    # The exporter's two-part error ("first defined here" is its second half) reads as one.
    assert exported_twice.spans == (Span(3, 14, 15, True, None),)
    assert exported_twice.notes == (Note("note", "first defined here", (Span(2, 8, 9, True, None),)),)
    assert not user_error.in_glue and not exported_twice.in_glue


def test_errors_about_the_glue_alone_are_kept_when_nothing_else_explains_the_failure() -> None:
    recording = load("defined_twice")
    glue_only = [m for m in recording.messages if "`f`" not in m["message"]["message"]]
    found = recording.diagnostics(glue_only)
    assert [d.message for d in found] == [
        "the name `__ira_fn_f` is defined multiple times",
        "the name `__pyfunction___ira_fn_f` is defined multiple times",
        "duplicate definitions with name `_PYO3_DEF`",
        "multiple applicable items in scope",
        "`u8` is not a future",
        "no associated item named `_PYO3_DEF` found for struct `cell::__ira_fn_f::MakeDef` in the current scope",
    ]
    assert all(d.in_glue and d.line is None and d.spans == () for d in found)


def test_another_crates_error_keeps_rustcs_text_and_its_warnings_are_not_ours() -> None:
    foreign, rendered = foreign_error()
    assert (foreign.level, foreign.code, foreign.line, foreign.spans) == ("error", "E0277", None, ())
    assert foreign.message == "the trait bound `&str: Integer` is not satisfied"
    assert foreign.notes == (Note("note", rendered.partition("\n")[2]),)
    warning = load("warning")
    messages = warning.copy_messages()
    messages[0]["target"]["name"] = "itoa"
    assert warning.diagnostics(messages) == []


def test_only_compiler_messages_that_say_something_are_diagnostics() -> None:
    recording = load("type_error")
    messages = recording.copy_messages()
    assert [m["message"]["level"] for m in messages] == ["error", "failure-note"]
    # Older rustc said "aborting due to" at level error; either way it only counts.
    aborting = {
        **messages[1],
        "message": {**messages[1]["message"], "level": "error", "message": "aborting due to 1 previous error"},
    }
    noise = [{"reason": "compiler-artifact"}, {"reason": "compiler-message", "message": "not a dict"}, aborting]
    assert recording.diagnostics([*noise, *messages]) == recording.diagnostics()
    assert len(recording.diagnostics()) == 1


def test_a_long_note_is_cut_after_four_lines() -> None:
    recording = load("html_escape")
    messages = recording.copy_messages()
    messages[0]["message"]["children"][0]["message"] = "\n".join(f"line {n}" for n in range(1, 7))
    (mismatch,) = recording.diagnostics(messages)
    assert mismatch.notes[0].message == "line 1\nline 2\nline 3\nline 4\n  ..."
    (as_recorded,) = recording.diagnostics()
    assert as_recorded.notes[0].message == "expected struct `Vec<u8>`\n   found struct `Vec<u16>`"


def _top_level_imports(module: str) -> set[str]:
    """The ipy_rustasync modules ``module`` imports when it is loaded (not inside functions)."""
    path = Path(__file__).resolve().parent.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ipy_rustasync"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ipy_rustasync"))
    return found


def test_mapping_and_hints_never_load_rendering() -> None:
    seen: set[str] = set()
    todo = ["ipy_rustasync._presentation.diagnostics.mapping", "ipy_rustasync._presentation.diagnostics.hints"]
    while todo:
        module = todo.pop()
        if module in seen or not module.startswith("ipy_rustasync._presentation.diagnostics."):
            continue
        seen.add(module)
        todo.extend(_top_level_imports(module))
    assert "ipy_rustasync._presentation.diagnostics.model" in seen  # the walk does follow imports
    assert "ipy_rustasync._presentation.diagnostics.render" not in seen
