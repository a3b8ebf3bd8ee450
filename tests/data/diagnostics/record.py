"""Re-records the rustc messages the fast diagnostics tests read.

Each ``NAME.rs`` beside this script is a cell, exactly as it would sit under
``%%rust_async`` (a crate it needs comes in its own ```` ```cargo ```` block). This
builds every cell through the project as the magic does (``cells.compile_cell`` with
the body's first line on the editor's line 2, so the crate, its header and cargo's
``--message-format json`` are the ones users get) and writes ``NAME.json``: cargo's
``compiler-message`` records for that build, the name of the cell's crate, and the
editor's line of the cell's first line and the crate's line offset at recording time,
so the tests map them without running cargo. Absolute paths are replaced by ``$CACHE``, ``$ROOT`` and
``$HOME`` so a recording does not depend on the machine.

Run it when rustc or PyO3 change what they say, then read the diff and fix what the
tests (tests/test_diagnostics_*.py) expect::

    python tests/data/diagnostics/record.py            # every case
    python tests/data/diagnostics/record.py not_send   # some

It builds in the test cache (``$IPY_RUSTASYNC_TEST_CACHE``, default ``.test-cache``);
the first build there compiles PyO3 and tokio (a minute or two).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CACHE = Path(os.environ.get("IPY_RUSTASYNC_TEST_CACHE", ROOT / ".test-cache")).resolve() / "cache"
#: The editor's line of a cell's first line: under the ``%%rust_async`` line, line 2.
FIRST_LINE = 2


class Recorder:
    """A ``cargo.Watcher`` that keeps the compiler messages of one build."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def expect(self, units: int | None) -> None:
        pass

    def line(self, text: str) -> None:
        pass

    def message(self, message: dict[str, Any]) -> None:
        if message.get("reason") == "compiler-message":
            self.messages.append(message)


def cell_crate(messages: list[dict[str, Any]]) -> str:
    """The cell's own crate: the one cdylib among the build's targets."""
    names = {m["target"]["name"] for m in messages if "cdylib" in m["target"].get("kind", ())}
    if len(names) != 1:
        raise SystemExit(f"expected messages from exactly one cell crate, got {sorted(names)}")
    return names.pop()


def scrub(value: Any, paths: list[tuple[str, str]]) -> Any:
    """``value`` with this machine's absolute paths replaced by placeholders."""
    if isinstance(value, str):
        for path, placeholder in paths:
            value = value.replace(path, placeholder)
        return value
    if isinstance(value, list):
        return [scrub(v, paths) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, paths) for k, v in value.items()}
    return value


def record(name: str, out_dir: Path = HERE) -> Path:
    """Builds ``NAME.rs`` (from here) and writes ``NAME.json`` into ``out_dir``."""
    from ipy_rustasync._base import errors
    from ipy_rustasync._pipeline import cells
    from ipy_rustasync._settings import toolchain
    from ipy_rustasync._sources import crate

    source = (HERE / f"{name}.rs").read_text(encoding="utf-8")
    recorder = Recorder()
    with contextlib.suppress(errors.RustCompileError):  # most cases are meant not to compile
        cells.compile_cell(source, force=True, watcher=recorder, first_line=FIRST_LINE)
    if not recorder.messages:
        raise SystemExit(f"{name}.rs: the build said nothing to record")
    with (crate.rust_dir() / "bridge" / "Cargo.toml").open("rb") as fh:
        pyo3 = tomllib.load(fh)["dependencies"]["pyo3"]["version"]
    paths = sorted(
        [(str(CACHE), "$CACHE"), (str(ROOT), "$ROOT"), (str(Path.home()), "$HOME")],
        key=lambda pair: -len(pair[0]),
    )
    recording = {
        "recorded_with": {"rustc": toolchain.rustc_version().splitlines()[0], "pyo3": pyo3.lstrip("=")},
        "module": cell_crate(recorder.messages),
        "first_line": FIRST_LINE,
        "line_offset": crate.line_offset(FIRST_LINE),
        "messages": scrub(recorder.messages, paths),
    }
    out = out_dir / f"{name}.json"
    out.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return out


def main(names: list[str]) -> None:
    os.environ["IPY_RUSTASYNC_CACHE_DIR"] = str(CACHE)
    os.environ["IPY_RUSTASYNC_CONFIG"] = str(Path(tempfile.mkdtemp()) / "config.toml")
    os.environ.pop("IPY_RUSTASYNC_OFFLINE_CRATES", None)
    os.environ.pop("IPY_RUSTASYNC_RELEASE", None)
    sys.path.insert(0, str(ROOT))
    for name in names or sorted(p.stem for p in HERE.glob("*.rs")):
        print(f"recorded {record(name).relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
