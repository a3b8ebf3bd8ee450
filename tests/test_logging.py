"""The ``ipy_rustasync`` logger: a real build's steps at DEBUG (hash, cache hit or
miss, the cargo command, each phase's time), and nothing at the default level."""

from __future__ import annotations

import logging
import uuid

import pytest

from ipy_rustasync._base.logs import Phase

from .conftest import Shell
from .helpers import run_python


def test_a_real_build_records_its_steps_at_debug(
    shell: Shell, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPY_RUSTASYNC_DIRECT_RUSTC", "0")  # cargo's steps; a replay logs `rustc` (below)
    source = f"pub fn logged_{uuid.uuid4().hex[:8]}() -> u8 {{ 5 }}"
    caplog.set_level(logging.DEBUG, logger="ipy_rustasync")
    shell.rust(source)
    records = [r for r in caplog.records if r.name.startswith("ipy_rustasync.")]
    text = "\n".join(r.getMessage() for r in records)
    module = next(r.cell_module for r in records if getattr(r, "phase", None) == "hash")
    assert module.startswith("ira_")
    assert f"{module}: content hash " in text
    assert f"{module}: cache miss, building" in text
    running = next(r.getMessage() for r in records if "running" in r.getMessage())
    assert " rustc --lib --manifest-path " in running and "--message-format json" in running
    phases = {r.phase: r for r in records if hasattr(r, "phase")}
    assert {"hash", "cargo", "install", "load", "bind"} <= set(phases)
    assert all(r.levelno == logging.DEBUG and r.seconds >= 0 and r.cell_module == module for r in phases.values())
    assert (
        phases["cargo"].name == "ipy_rustasync._pipeline.build" and phases["bind"].name == "ipy_rustasync._front.magic"
    )

    caplog.clear()
    shell.rust(source)
    again = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{module}: cache hit, ") for m in again), again
    assert not any("running" in m for m in again), again

    monkeypatch.delenv("IPY_RUSTASYNC_DIRECT_RUSTC")
    caplog.clear()
    shell.rust(source + " // replayed")
    phases = {r.phase for r in caplog.records if hasattr(r, "phase")}
    assert "rustc" in phases and "cargo" not in phases, phases  # rustc replayed as cargo ran it


def test_a_failed_phase_says_so() -> None:
    records: list[logging.LogRecord] = []
    log = logging.getLogger("ipy_rustasync.test_phase")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with pytest.raises(KeyboardInterrupt), Phase(log, "cargo", "ira_0"):
            raise KeyboardInterrupt
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    assert [r.getMessage().split(" in ")[0] for r in records] == ["ira_0: cargo failed (KeyboardInterrupt)"]


BUILD = """
import logging, sys
from ipy_rustasync import rust_module
package = logging.getLogger("ipy_rustasync")
assert [type(h).__name__ for h in package.handlers] == ["NullHandler"], package.handlers
source = sys.argv[1]
rust_module(source)                       # no logging configured at all
logging.basicConfig(stream=sys.stderr)    # an application's usual setup: WARNING and up
rust_module(source, force=True)
print("QUIET", file=sys.stderr, flush=True)
package.setLevel("DEBUG")                 # the README's recipe
rust_module(source)
"""


def test_nothing_is_emitted_at_the_default_level_and_the_recipe_turns_it_on() -> None:
    source = f"pub fn quiet_{uuid.uuid4().hex[:8]}() -> u8 {{ 6 }}\n"
    out = run_python(BUILD, source, timeout=900)
    assert out.returncode == 0, out.stderr
    quiet, _, debug = out.stderr.partition("QUIET\n")
    assert quiet == ""
    assert out.stdout == ""
    assert "DEBUG:ipy_rustasync._pipeline.build:ira_" in debug and ": cache hit, " in debug, debug
    assert "DEBUG:ipy_rustasync._pipeline.cells:ira_" in debug and ": load done in " in debug, debug
