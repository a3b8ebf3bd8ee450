"""A warm edit replays rustc as cargo last ran it for the same build (``rustc_direct.py``):
real builds, with cargo made to fail where the replay must do without it."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from ipy_rustasync._base.errors import RustCompileError
from ipy_rustasync._pipeline import cargo, cells, rustc_direct
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import crate

pytestmark = pytest.mark.skipif(
    not rustc_direct.enabled(crate.CellSpec("x")), reason="replays are on Linux only (and can be turned off)"
)


def source(body: str) -> str:
    """A cell no earlier run has built (a fresh hash)."""
    return f"{body}\n// {uuid.uuid4().hex}\n"


class CargoCalls:
    """Counts cargo runs; ``refuse`` makes one fail the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.refuse = False
        real = cargo.run

        def counting(*args: Any, **kwargs: Any) -> cargo.Outcome:
            assert not self.refuse, "cargo ran where a replay should have built the cell"
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(cargo, "run", counting)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> CargoCalls:
    return CargoCalls(monkeypatch)


def recipe_of(spec: crate.CellSpec) -> Path:
    context = Context.load()
    target = context.target_for(shared_runtime=spec.runtime is not None)
    return context.cache.recipe(target, rustc_direct.key(spec, target))


def test_a_warm_edit_is_compiled_by_rustc_alone_and_behaves_as_cargos_build(calls: CargoCalls) -> None:
    first = cells.compile_cell(source("pub fn add(a: i64) -> i64 { a + 1 }"), first_line=2)  # records (or replays)
    assert recipe_of(first.spec).is_file()
    calls.refuse = True
    second = cells.compile_cell(
        source("pub fn add(a: i64) -> i64 { a + 2 }\npub async fn later() -> u8 { 7 }\npub fn unused() { let x = 1; }"),
        first_line=2,
    )
    assert not second.build.cached and second.module.add(1) == 3
    assert [w.line for w in second.build.warnings] == [4]  # `x` unused: the cell's line, as through cargo
    import asyncio

    assert asyncio.run(second.module.later()) == 7


def test_an_error_in_the_cell_is_reported_from_the_replay_without_cargo(calls: CargoCalls) -> None:
    cells.compile_cell(source("pub fn ok() -> u8 { 1 }"), first_line=2)
    calls.refuse = True
    with pytest.raises(RustCompileError) as err:
        cells.compile_cell(source('pub fn bad() -> u8 {\n    "x"\n}'), first_line=2)
    assert err.value.diagnostics[0].line == 3
    assert "mismatched types" in str(err.value)
    assert "\x1b[" not in err.value.texts[0]  # rustc's colours, which cargo strips, are stripped


def test_a_replay_sees_the_environment_as_it_is_now(calls: CargoCalls, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell's `env!` reads rustc's environment: a replay's is today's, as cargo's would be."""
    monkeypatch.setenv("IRA_DIRECT_VAR", "one")
    first = cells.compile_cell(source('pub fn v() -> String { env!("IRA_DIRECT_VAR").into() }'), first_line=2)
    assert first.module.v() == "one"
    # the recipe keeps cargo's own variables only, not the user's environment
    assert "IRA_DIRECT_VAR" not in recipe_of(first.spec).read_text()
    monkeypatch.setenv("IRA_DIRECT_VAR", "two")
    calls.refuse = True
    second = cells.compile_cell(source('pub fn w() -> String { env!("IRA_DIRECT_VAR").into() }'), first_line=2)
    assert second.module.w() == "two"


def test_a_stale_or_broken_recipe_falls_back_to_cargo_and_is_recorded_again(calls: CargoCalls) -> None:
    first = cells.compile_cell(source("pub fn one() -> u8 { 1 }"), first_line=2)
    path = recipe_of(first.spec)
    recipe = json.loads(path.read_text())
    # A dependency rebuilt since: every artifact is newer than a recipe from the epoch.
    path.write_text(json.dumps({**recipe, "time": 0}))
    before = calls.count
    assert cells.compile_cell(source("pub fn two() -> u8 { 2 }"), first_line=2).module.two() == 2
    assert calls.count == before + 1
    assert json.loads(path.read_text())["time"] > 0  # cargo's build recorded a fresh one
    # A recipe rustc cannot follow (a dependency it cannot load): cargo, not an error.
    recipe = json.loads(path.read_text())
    args = recipe["args"]
    linked = f"{first.spec.runtime or 'ipy_rustasync'}="  # a crate every cell loads (`extern crate`, the glue)
    at = next(i for i, a in enumerate(args) if a.startswith(linked))
    args[at] = linked + str(Path(args[at].split("=", 1)[1]).with_name("libnot-a-crate.rlib"))
    broken = Path(args[at].split("=", 1)[1])
    broken.write_bytes(b"not an rlib")
    os.utime(broken, (1, 1))  # older than the recipe: it looks fresh, and rustc cannot read it
    try:
        path.write_text(json.dumps({**recipe, "args": args}))
        assert cells.compile_cell(source("pub fn three() -> u8 { 3 }"), first_line=2).module.three() == 3
        assert calls.count == before + 2
    finally:
        Path(args[at].split("=", 1)[1]).unlink(missing_ok=True)


def test_force_and_the_switch_build_with_cargo(calls: CargoCalls, monkeypatch: pytest.MonkeyPatch) -> None:
    text = source("pub fn forced() -> u8 { 4 }")
    cells.compile_cell(text, first_line=2)
    before = calls.count
    cells.compile_cell(text, first_line=2, force=True)
    assert calls.count == before + 1
    monkeypatch.setenv("IPY_RUSTASYNC_DIRECT_RUSTC", "0")
    cells.compile_cell(source("pub fn switched() -> u8 { 5 }"), first_line=2)
    assert calls.count == before + 2


def test_a_cell_using_a_named_cell_replays_with_its_own_upstream(calls: CargoCalls) -> None:
    if crate.CellSpec("x").runtime is None:
        pytest.skip("named cells need the shared runtime")
    up = cells.compile_cell(source("pub fn base() -> u64 { 40 }"), first_line=2, name="direct_up")
    known = {"direct_up": up.spec.as_upstream()}
    cells.compile_cell(source("pub fn a() -> u64 { direct_up::base() + 1 }"), first_line=2, known=known)
    calls.refuse = True
    down = cells.compile_cell(source("pub fn b() -> u64 { direct_up::base() + 2 }"), first_line=2, known=known)
    assert down.module.b() == 42


# --- without building ---------------------------------------------------------------------


def test_rustcs_json_lines_become_cargos_messages() -> None:
    spec = crate.CellSpec("pub fn f() {}\n", first_line=2)
    lines = [
        json.dumps(
            {"$message_type": "diagnostic", "level": "warning", "rendered": "\x1b[33mwarning\x1b[0m: x", "spans": []}
        ),
        json.dumps({"$message_type": "artifact", "artifact": "/t/deps/libira_x.so", "emit": "link"}),
        json.dumps({"$message_type": "artifact", "artifact": "/t/deps/ira_x.d", "emit": "dep-info"}),
        "plain text rustc printed",
    ]
    outcome = rustc_direct._outcome(spec, Path("/c"), True, "\n".join(lines))
    assert outcome.ok and outcome.text == "plain text rustc printed\n"
    (message,) = outcome.compiler_messages()
    assert message["message"]["rendered"] == "warning: x" and message["target"]["name"] == spec.module
    assert outcome.library(spec.module, spec.crate_type) == Path("/t/deps/libira_x.so")
    assert not rustc_direct._outcome(spec, Path("/c"), True, lines[0]).ok  # no artifact: not built


def test_a_dependency_rustc_cannot_load_is_the_recipes_fault_not_the_cells() -> None:
    spec = crate.CellSpec("pub fn f() {}\n", first_line=2)
    span = [{"file_name": "src/lib.rs", "line_start": 5}]

    def failed(code: str) -> cargo.Outcome:
        diagnostic = {"$message_type": "diagnostic", "level": "error", "code": {"code": code}, "spans": span}
        return rustc_direct._outcome(spec, Path("/c"), False, json.dumps(diagnostic))

    assert rustc_direct._cell_errors(failed("E0308"), spec)
    assert not rustc_direct._cell_errors(failed("E0463"), spec)  # can't find crate: on the `extern crate` line
    assert not rustc_direct._cell_errors(failed("E0514"), spec)  # built by another rustc


def test_the_recipe_key_separates_what_changes_rustcs_command_line() -> None:
    target = Path("/t")
    base = crate.CellSpec("a\n", first_line=2)
    assert rustc_direct.key(base, target) == rustc_direct.key(crate.CellSpec("b\n", first_line=2), target)
    others = [
        crate.CellSpec("a\n", first_line=2, release=True),
        crate.CellSpec("a\n", first_line=1),  # src/rust_module.rs
        rustc_direct.key(base, Path("/other")),
    ]
    assert rustc_direct.key(others[0], target) != rustc_direct.key(base, target)
    assert rustc_direct.key(others[1], target) != rustc_direct.key(base, target)
    assert others[2] != rustc_direct.key(base, target)
