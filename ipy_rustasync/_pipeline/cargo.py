"""Running cargo the way maturin does, and listening to what it says.

``build.py`` decides *whether* to build (cache, lock, install); this module knows
*how*: the environment that keeps PyO3's build configuration stable, the ``cargo
rustc`` command line, and cargo's JSON messages, read line by line as they come so
a ``Watcher`` (the progress display) can follow the build live.

Why JSON (``--message-format json``): each finished unit is a ``compiler-artifact``
message (fresh ones too), which counts "n of N" exactly; rustc's diagnostics come
as structured ``compiler-message`` records (spans, labels, notes) that
``diagnostics.py`` maps onto the cell, instead of text to be re-parsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ipy_rustasync._base import atomic
from ipy_rustasync._settings import platforms, toolchain

Message = dict[str, Any]


class Watcher(Protocol):
    """Follows a build: how many units to expect, cargo's status lines, its JSON messages."""

    def expect(self, units: int | None) -> None: ...

    def line(self, text: str) -> None: ...

    def message(self, message: Message) -> None: ...


def build_env(*, shared_runtime: bool = False) -> dict[str, str]:
    """The environment cargo sees: the same for every build from this interpreter,
    whatever shell or kernel started it, so PyO3's build script never reruns.

    pyo3-build-config reruns when PYO3_PYTHON, VIRTUAL_ENV or CONDA_PREFIX change;
    those are derived from the interpreter, not inherited (PYO3_PYTHON by
    ``maturin_env``)."""
    env = dict(os.environ)
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYO3_CONFIG_FILE", "PYO3_NO_PYTHON", "PYO3_CROSS"):
        env.pop(name, None)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    elif (Path(sys.prefix) / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = sys.prefix
    env["CARGO_TERM_COLOR"] = "never"
    env.setdefault("CARGO_TERM_PROGRESS_WHEN", "never")
    env.update(maturin_env())
    env.pop("CARGO", None)  # maturin unsets it too: it would point build scripts at another cargo
    if shared_runtime:
        # libstd as a shared library in every crate (the runtime dylib, the cell, and
        # the crates under them), or a cell using the runtime library does not link:
        # "cannot satisfy dependencies so `std` only shows up once".
        env["RUSTFLAGS"] = " ".join(filter(None, [env.get("RUSTFLAGS", "").strip(), "-C prefer-dynamic"]))
    return env


def maturin_env() -> dict[str, str]:
    """What ``maturin build`` adds to cargo's environment for a PyO3 extension module.

    pyo3-build-config reruns (and PyO3 recompiles) when any of these change, so they
    must match maturin's byte for byte for the two to share a target directory."""
    threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    signature = (
        f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}{threaded}"
        f"-{struct.calcsize('P') * 8}bit"
    )
    return {
        "PYO3_BUILD_EXTENSION_MODULE": "1",
        "PYO3_ENVIRONMENT_SIGNATURE": signature,
        "PYO3_PYTHON": toolchain.interpreter(),
        "PYTHON_SYS_EXECUTABLE": toolchain.interpreter(),
    }


def cargo_command(
    manifest: Path,
    target_dir: Path,
    *,
    release: bool,
    extra: list[str],
    shared_runtime: bool = False,
    rustc_args: list[str] | None = None,
) -> list[str]:
    """The ``cargo rustc`` maturin would run for a cdylib crate (maturin asks for
    ``json-render-diagnostics``; the message format does not enter cargo's
    fingerprints, so artifacts stay shared). ``shared_runtime``: the cell links the
    shared runtime library (``platforms.shared_runtime_link_args``; run it with
    ``build_env(shared_runtime=True)``). ``rustc_args``: more for the cell crate's own
    rustc (the named cells it uses, ``--extern``)."""
    link = [
        *platforms.extension_link_args(),
        *(platforms.shared_runtime_link_args() if shared_runtime else []),
        *(rustc_args or []),
    ]
    return [
        toolchain.cargo(), "rustc",
        "--lib",
        "--manifest-path", str(manifest),
        "--target-dir", str(target_dir),
        "--message-format", "json",
        "--color", "never",
        *(["--release"] if release else []),
        *extra,
        *(["--", *link] if link else []),
    ]  # fmt: skip


@dataclass
class Outcome:
    """What one cargo run said."""

    ok: bool
    text: str  # cargo's own lines (status, errors that are not rustc's)
    messages: list[Message] = field(default_factory=list)

    def artifacts(self) -> int:
        return sum(m.get("reason") == "compiler-artifact" for m in self.messages)

    def compiler_messages(self) -> list[Message]:
        return [m for m in self.messages if m.get("reason") == "compiler-message"]

    def cdylib(self, name: str) -> Path | None:
        """The shared library cargo reported for crate ``name``, if it built one."""
        return self.library(name, "cdylib")

    def library(self, name: str, kind: str) -> Path | None:
        """The shared library of ``kind`` (``cdylib``, ``dylib``) cargo reported for
        crate ``name``, if it built one."""
        for message in self.messages:
            target = message.get("target")
            if message.get("reason") != "compiler-artifact" or not isinstance(target, dict):
                continue
            if target.get("name") != name or kind not in (target.get("kind") or []):
                continue
            for filename in message.get("filenames") or []:
                if str(filename).endswith(platforms.SHARED_LIBRARY_SUFFIXES):
                    return Path(str(filename))
        return None


def run(
    cmd: list[str],
    cwd: Path,
    watcher: Watcher | None = None,
    *,
    shared_runtime: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Outcome:
    """Runs cargo, handing each status line and JSON message to ``watcher`` as it comes
    (in ``build_env(shared_runtime=...)``, plus ``extra_env``)."""
    lines: list[str] = []
    messages: list[Message] = []
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**build_env(shared_runtime=shared_runtime), **(extra_env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if line.startswith('{"reason":'):
                    message = json.loads(line)
                    messages.append(message)
                    if watcher is not None:
                        watcher.message(message)
                    continue
                lines.append(line)
                if watcher is not None:
                    watcher.line(line.rstrip("\n"))
        except BaseException:
            # KeyboardInterrupt (a kernel interrupt): stop cargo; nothing half-written
            # is ever loaded because the module is only renamed into place at the end.
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
    return Outcome(code == 0, "".join(lines), messages)


# --- how many units a build has ---------------------------------------------------------
#
# Cargo does not say up front how many units it will build. The count of the last
# build with the same dependency set is exact (every unit reports, fresh or not), so
# it is remembered in a memo file next to the target directory (``Cache.units_memo``);
# a first build estimates from the lock file (one unit per package plus build scripts,
# roughly).


def expected_units(memo: Path, key: str, lock: Path) -> int | None:
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if isinstance(saved.get(key), int):
            return int(saved[key])
    except (OSError, ValueError, AttributeError):
        pass
    try:
        packages = lock.read_text(encoding="utf-8").count("[[package]]")
    except OSError:
        return None
    return round(packages * 1.25) + 1 if packages else None


def remember_units(memo: Path, key: str, units: int) -> None:
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            saved = {}
    except (OSError, ValueError):
        saved = {}
    if saved.get(key) == units:
        return
    saved[key] = units
    with contextlib.suppress(OSError):  # only a nicer progress bar next time
        atomic.write(memo, json.dumps(saved, indent=1, sort_keys=True))
