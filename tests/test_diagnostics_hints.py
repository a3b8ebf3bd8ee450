"""Our sentence under the errors newcomers get stuck on, on recorded builds (no cargo):
the exact words, and silence everywhere else."""

from __future__ import annotations

import pytest

from ipy_rustasync._presentation.diagnostics import hints

from .diagnostics_recordings import NAMES, diagnose, load

NOT_A_DEPENDENCY = (
    "`rand` is not a dependency of this cell: add it with `%%rust_async --dep rand` "
    "(tokio, futures and pyo3 come with every cell), or if it is a named cell, "
    "run that cell (`%%rust_async --name rand`) first in this kernel."
)

#: The hint of each recording's diagnostics, in order; every other recording has none.
HINTS = {
    "not_send": [
        "`rc` (a `Rc<u64>`) is held across an `.await`, but the future must be `Send` because it runs on "
        "tokio's worker threads: drop it before the `.await` (end its scope with a block) or use a `Send` type "
        "(`Arc` instead of `Rc`, `tokio::sync::Mutex` instead of a `std::sync::MutexGuard`)."
    ],
    "not_convertible": [
        "`Point` cannot come in from Python: take a type PyO3 converts (int, float, bool, str, bytes, Vec for "
        "a list, HashMap for a dict, tuples, Option for None) or make `Point` a "
        "`#[pyo3::pyclass(from_py_object)]` that derives `Clone`.",
        "`Point` cannot go back to Python: return a type PyO3 converts (numbers, bool, String, Vec, HashMap, "
        "tuples, Option) or put `#[pyo3::pyclass]` on `Point` so Python receives it as an object.",
    ],
    "missing_crate": [NOT_A_DEPENDENCY],
    "unresolved_import": [NOT_A_DEPENDENCY],
}


@pytest.mark.parametrize("name", NAMES)
def test_each_recorded_build_gets_exactly_its_sentences(name: str) -> None:
    found = diagnose(name)
    assert [d.hint for d in found] == HINTS.get(name, [None] * len(found))


def test_a_crate_every_cell_has_gets_no_dependency_sentence() -> None:
    # `tokio::nope` is unresolved too, but tokio comes with every cell.
    assert [d.hint for d in diagnose("provided_crate")] == [None]


def test_a_module_the_cell_defines_gets_no_dependency_sentence() -> None:
    recording = load("missing_crate")
    message = recording.messages[0]["message"]
    text = message["message"]
    assert hints.hint(message, text, recording.source.splitlines()) == NOT_A_DEPENDENCY
    assert hints.hint(message, text, ["mod rand { pub fn random() -> u32 { 4 } }"]) is None
    assert hints.hint(message, text, ["mod randomness {}"]) == NOT_A_DEPENDENCY


def test_a_future_that_is_not_send_without_rustcs_labels_still_gets_the_advice() -> None:
    message = {**load("not_send").messages[0]["message"], "children": []}
    sentence = hints.hint(message, message["message"], [])
    assert sentence is not None
    assert sentence.startswith("a value that is not `Send` is held across an `.await`, but the future must be `Send`")
