"""A warm edit without cargo: rustc run directly, the way cargo last ran it for a cell.

Cargo spends 60-120 ms of a 250-350 ms warm edit on its own work (starting, reading the
lock, checking the freshness of some 40 dependency units, JSON) before the one rustc that
compiles the cell (``benchmarks/results/edit_phases.md``). Every cell with the same build
(the runtime library, profile, crate type, root file, no extra crates) is compiled by the
same rustc command line, up to its crate name and directory. So:

- every cargo build of a cell runs with ``RUSTC_WORKSPACE_WRAPPER`` set to a tiny shell
  script (``RECORDER``) that writes down the rustc command line and environment cargo
  gives the cell's crate, then runs it. A workspace wrapper applies to workspace members
  only: the cell crate, never its dependencies, whose fingerprints and artifacts do not
  change (cargo documents it; ``benchmarks/glue_cost.py`` relies on it too);
- after a successful build that invocation is kept as a *recipe*, beside the target
  directory's artifacts it names (``Cache.recipe``);
- the next cell with the same build replays it (``replay``): the earlier module's crate
  name and directory replaced by the new one's, the named cells it uses appended as
  cargo's ``--`` arguments were. The recipe is only used while every dependency artifact
  it names (``--extern``) is there and no newer than the recipe: a dependency rebuilt
  since (another toolchain, an edited bridge) sends the build back to cargo, which
  records a new one.

A replay that fails for a reason that is not in the cell (no error on its lines: a
missing or incompatible dependency) falls back to cargo, so the worst case is cargo's
time plus one failed rustc start. ``IPY_RUSTASYNC_DIRECT_RUSTC=0`` turns it off.
Cells with extra crates always build with cargo: the lock file they record (lockfile.py)
and export read is cargo's.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ipy_rustasync._base import atomic
from ipy_rustasync._pipeline import cargo
from ipy_rustasync._settings.cache import Cache
from ipy_rustasync._sources import crate

log = logging.getLogger(__name__)

#: The workspace wrapper cargo runs instead of rustc for the cell crate: records the
#: command line (NUL-separated, so any byte but NUL survives) and the environment cargo
#: gave it (``/proc/$$/environ``, NUL-separated too, without relying on ``env -0``), for a
#: cell crate only (``--crate-name ira_...``; not cargo's ``___`` target probe), then
#: runs rustc as cargo asked.
RECORDER = """\
#!/bin/sh
# Written by ipy-rustasync (rustc_direct.py): records how cargo runs rustc for a cell.
case " $* " in
*" --crate-name ira_"*)
    if [ -n "${IPY_RUSTASYNC_RECORD:-}" ]; then
        printf '%s\\0' "$@" > "$IPY_RUSTASYNC_RECORD.args" && cat "/proc/$$/environ" > "$IPY_RUSTASYNC_RECORD.env"
    fi ;;
esac
exec "$@"
"""

#: Environment cargo hands rustc that a replay must not pass on: the jobserver (its
#: file descriptors are cargo's) and the recorder's own settings.
_DROPPED_ENV = ("CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS", "RUSTC_WORKSPACE_WRAPPER", "IPY_RUSTASYNC_RECORD")

#: What cargo itself puts in rustc's environment (the rest is the caller's).
_CARGO_SETS = ("CARGO", "LD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH")

#: rustc's errors for a dependency it cannot load as given (missing, built by another
#: compiler or against other crates): the recipe's fault, never the cell's, even where the
#: span is the ``extern crate`` line after the cell.
_LOADING = frozenset({"E0460", "E0461", "E0462", "E0463", "E0464", "E0514", "E0519", "E0523", "E0786"})

#: The colour codes of rustc's ``diagnostic-rendered-ansi`` text, which cargo strips for
#: ``--message-format json`` (a replay gets them from rustc itself).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def enabled(spec: crate.CellSpec) -> bool:
    """Whether ``spec`` may be built by a replay: on Linux (the recorder is a shell script
    reading its environment from ``/proc``; the only platform it is tested on), and not
    for a cell with extra crates, whose resolved lock is cargo's to record."""
    return (
        sys.platform.startswith("linux") and os.environ.get("IPY_RUSTASYNC_DIRECT_RUSTC", "1") != "0" and not spec.deps
    )


def key(spec: crate.CellSpec, target: Path) -> str:
    """What makes two cells' rustc command lines the same but for their names."""
    parts = {
        "target": str(target),
        "runtime": spec.runtime,
        "rust": crate.rust_sources_digest(),
        "release": spec.release,
        "crate_type": spec.crate_type,
        "file": crate.CELL_FILES[spec.line_offset],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def recording_env(cache: Cache, root: Path) -> dict[str, str]:
    """What a cargo build of the crate at ``root`` adds to its environment to record."""
    recorder = cache.root / "rustc-recorder.sh"
    try:
        current = recorder.read_text(encoding="utf-8") == RECORDER
    except OSError:
        current = False
    if not current:
        atomic.write(recorder, RECORDER)
        recorder.chmod(0o700)
    return {"RUSTC_WORKSPACE_WRAPPER": str(recorder), "IPY_RUSTASYNC_RECORD": str(root / ".rustc")}


def save(spec: crate.CellSpec, target: Path, cache: Cache, root: Path, appended: Sequence[str]) -> None:
    """Keeps the invocation cargo just ran for ``spec`` (its recording in ``root``) as the
    recipe of its build, without the arguments ``appended`` after cargo's ``--`` (the
    named cells it uses, which differ per cell). Best effort: without it the next cell
    builds with cargo."""
    try:
        args = (root / ".rustc.args").read_bytes().decode().split("\0")[:-1]
        env_items = (root / ".rustc.env").read_bytes().decode().split("\0")[:-1]
        lock = (root / "Cargo.lock").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    if appended:
        if args[-len(appended) :] != list(appended):
            return
        args = args[: -len(appended)]
    # Only what cargo sets for the crate is replayed (``_environment``): the rest of the
    # environment (the user's, tokens included) is neither kept nor written to disk.
    env = {
        name: value
        for name, value in (item.split("=", 1) for item in env_items if "=" in item)
        if name.startswith(_CARGO_SETS) and name not in _DROPPED_ENV
    }
    recipe = {"module": spec.module, "root": str(root), "args": args, "env": env, "lock": lock, "time": time.time_ns()}
    path = cache.recipe(target, key(spec, target))
    with contextlib.suppress(OSError):
        path.parent.mkdir(exist_ok=True)
        atomic.write(path, json.dumps(recipe))


def _load(path: Path) -> dict[str, Any] | None:
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (
        recipe
        if isinstance(recipe, dict) and {"module", "root", "args", "env", "lock", "time"} <= set(recipe)
        else None
    )


def _fresh(recipe: dict[str, Any]) -> bool:
    """Every artifact the recipe links is there and older than the recipe."""
    args = recipe["args"]
    if not args or shutil.which(args[0]) is None:  # rustc itself (a path, or a name on PATH: Debian's cargo)
        return False
    for flag, value in itertools.pairwise(args):
        if flag != "--extern" or "=" not in value:
            continue
        try:
            if os.stat(value.split("=", 1)[1]).st_mtime_ns > recipe["time"]:
                return False
        except OSError:
            return False
    return True


def replay(
    spec: crate.CellSpec,
    target: Path,
    cache: Cache,
    root: Path,
    appended: Sequence[str],
    watcher: cargo.Watcher | None = None,
) -> cargo.Outcome | None:
    """Compiles the crate at ``root`` by replaying its build's recipe, or returns None
    when there is none, it is stale, or rustc failed for a reason outside the cell (the
    caller then builds with cargo)."""
    path = cache.recipe(target, key(spec, target))
    recipe = _load(path)
    if recipe is None or not _fresh(recipe):
        return None
    old_module, old_root = recipe["module"], recipe["root"]

    def renamed(text: str) -> str:
        return text.replace(old_root, str(root)).replace(old_module, spec.module)

    log.debug("%s: replaying rustc as cargo ran it for %s (%s)", spec.module, old_module, path.name)
    args = [renamed(a) for a in recipe["args"]] + list(appended)
    env = _environment(recipe["env"], spec, renamed)
    atomic.write(root / "Cargo.lock", recipe["lock"].replace(old_module, spec.module))
    if watcher is not None:
        watcher.expect(1)
        watcher.line(f"   Compiling {spec.module} v0.1.0 ({root})")  # cargo's status line, for the progress
    try:
        # What cargo ran, from the cache (private to this user, like the modules loaded from it).
        done = subprocess.run(args, cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)  # noqa: S603
    except OSError as err:
        log.debug("%s: replaying rustc failed to start (%s): building with cargo", spec.module, err)
        return None
    outcome = _outcome(spec, root, done.returncode == 0, done.stderr.decode("utf-8", "replace"))
    if watcher is not None:
        for message in outcome.messages:
            watcher.message(message)
    if outcome.ok or _cell_errors(outcome, spec):
        return outcome
    log.debug("%s: replayed rustc failed outside the cell: building with cargo\n%s", spec.module, outcome.text)
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def _environment(recorded: dict[str, str], spec: crate.CellSpec, renamed: Callable[[str], str]) -> dict[str, str]:
    """rustc's environment: what cargo would give it now (``cargo.build_env``: the
    user's variables as they are, for a cell's ``env!``), with the variables cargo sets
    for the crate (``CARGO_*``: its name, directory, package; the library path its proc
    macros load with) as recorded, renamed to this cell."""
    env = cargo.build_env(shared_runtime=spec.runtime is not None)
    for name in _DROPPED_ENV:  # the caller's own, if set: cargo's jobserver is not ours
        env.pop(name, None)
    env.update((name, renamed(value)) for name, value in recorded.items())  # ``save`` kept cargo's only
    return env


def _outcome(spec: crate.CellSpec, root: Path, ok: bool, stderr: str) -> cargo.Outcome:
    """rustc's JSON lines as the cargo messages the rest of the build reads."""
    target = {
        "name": spec.module,
        "kind": [spec.crate_type],
        "src_path": str(root / crate.CELL_FILES[spec.line_offset]),
    }
    messages: list[cargo.Message] = []
    text: list[str] = []
    artifact = None
    for line in stderr.splitlines():
        try:
            record = json.loads(line) if line.startswith("{") else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            text.append(line + "\n")
            continue
        kind = record.get("$message_type")
        if kind == "artifact" and record.get("emit") == "link":
            artifact = record.get("artifact")
        elif kind == "diagnostic":
            if isinstance(record.get("rendered"), str):
                record["rendered"] = _ANSI.sub("", record["rendered"])
            messages.append({"reason": "compiler-message", "target": target, "message": record})
    if ok and artifact:
        messages.append({"reason": "compiler-artifact", "target": target, "filenames": [artifact], "fresh": False})
    return cargo.Outcome(ok and bool(artifact), "".join(text), messages)


def _cell_errors(outcome: cargo.Outcome, spec: crate.CellSpec) -> bool:
    """Whether an error points into the cell's own file (its code is wrong: cargo would
    say the same), rather than at nothing or a dependency (the recipe is)."""
    cell_file = crate.CELL_FILES[spec.line_offset]
    for message in outcome.compiler_messages():
        diagnostic = message["message"]
        if diagnostic.get("level") != "error" or (diagnostic.get("code") or {}).get("code") in _LOADING:
            continue
        if any(str(span.get("file_name", "")).endswith(cell_file) for span in diagnostic.get("spans") or []):
            return True
    return False
