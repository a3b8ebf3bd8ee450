"""Properties of the bridge's source (``rust/bridge/src``) that keep it safe to
change: its modules depend on each other without a circle, every ``unsafe`` lives in
the two modules that exist for it, each with the comment that proves it sound, and
no code path can panic on a re-entrant borrow or an unwrap."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "rust" / "bridge" / "src"
#: The modules allowed to hold `unsafe` code: CPython's C API, the OS, and a method's
#: receiver (PyO3's borrow guard kept beside the object it borrows, a lifetime that
#: safe Rust cannot name; receiver.rs proves it sound).
UNSAFE_HOMES = {"capi", "platform", "receiver"}


def modules() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(SRC.glob("*.rs"))}


def code_only(text: str) -> str:
    """The source without comments (doc comments mention `unsafe` and paths)."""
    return re.sub(r"//[^\n]*", "", text)


def dependencies() -> dict[str, set[str]]:
    found = modules()
    graph: dict[str, set[str]] = {}
    for name, text in found.items():
        if name == "lib":
            continue  # declares and re-exports every module
        used = set(re.findall(r"\bcrate::(\w+)", code_only(text)))
        graph[name] = {other for other in used if other in found and other != name}
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_the_bridge_modules_form_no_import_circle() -> None:
    circle = find_circle(dependencies())
    assert circle is None, " -> ".join(circle or [])


def test_the_circle_check_finds_a_circle() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_unsafe_code_lives_in_capi_and_platform_with_a_safety_comment() -> None:
    for name, text in modules().items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            code = line.split("//")[0]
            if not re.search(r"\bunsafe\b", code):
                continue
            assert name in UNSAFE_HOMES, f"{name}.rs:{number + 1} has unsafe code: {line.strip()}"
            if "unsafe fn" in code or "unsafe extern" in code:
                continue  # a declaration; its body's blocks carry the comments
            window = "\n".join(lines[max(0, number - 12) : number + 1])
            assert "SAFETY:" in window or "# Safety" in window, f"{name}.rs:{number + 1} lacks a SAFETY comment"


def test_no_path_panics_on_a_borrow_or_an_unwrap() -> None:
    """Python code can re-enter the bridge from anywhere (a callback, an `__eq__`, a
    `__del__`): a `RefCell` borrow or an unwrap that fails then would be a panic."""
    for name, text in modules().items():
        # Unit tests (a `#[cfg(test)]` module at the end of a file) may unwrap.
        code = code_only(text.split("#[cfg(test)]")[0])
        for pattern in (
            r"\.borrow_mut\(\)",
            r"\.borrow\(\)",
            r"\.unwrap\(\)",
            r"\.expect\(",
            r"unreachable!",
            r"panic!\(",
        ):
            assert not re.search(pattern, code), f"{name}.rs uses {pattern}"


def test_cell_modules_say_they_need_the_gil() -> None:
    """No free-threaded interpreter has run this suite (none can be had on the
    machines it runs on), so every module the project generates declares
    ``gil_used = true``: a free-threaded Python then re-enables the GIL for it, with a
    warning, instead of trusting an untested claim (PyO3 0.28 and later, 0.30
    included, default to claiming free-threading support)."""
    generators = {
        "the cell exporter": ROOT / "rust" / "macros" / "src" / "lib.rs",
        "a multi-cell export": ROOT / "ipy_rustasync" / "_sources" / "cell_macro.py",
    }
    for what, path in generators.items():
        # Attribute lines (or the string that writes one), not messages that name it,
        # nor the cells a Rust unit test expands (a `#[cfg(test)]` module at the end).
        text = path.read_text(encoding="utf-8").split("#[cfg(test)]")[0]
        declared = re.findall(r'^\s*"?#\[(?:::pyo3::)?pymodule(\([^)]*\))?\]', text, flags=re.MULTILINE)
        assert declared and all("gil_used = true" in args for args in declared), f"{what} ({path}): {declared}"
