"""Where crates come from: crates.io (cargo's default) or a local vendored directory.

The offline mode is cargo's own ``directory`` source replacing crates-io, written in
the cell crate's ``.cargo/config.toml``, with ``--offline``. ``vendor()`` fills such a directory with ``cargo vendor``
on a machine that reaches crates.io.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import toolchain
from ipy_rustasync._sources import crate
from ipy_rustasync._sources.deps import Dep

SOURCE_NAME = "ipy-rustasync-offline"


def configure(crate_root: Path, directory: Path | None) -> list[str]:
    """Points the cell crate at ``directory`` (or back at crates.io) and returns the
    extra build arguments.

    The replacement goes in the crate's own ``.cargo/config.toml`` (builds run from
    the crate directory) rather than ``--config`` flags, because maturin's first step,
    ``cargo metadata``, does not receive those flags. Written under the build lock."""
    config = crate_root / ".cargo" / "config.toml"
    if directory is None:
        config.unlink(missing_ok=True)
        return []
    if not directory.is_dir():
        raise RustAsyncUsageError(
            f"the offline crate directory {directory} does not exist; "
            "fill it with `ipy-rustasync vendor DIR` or unset offline_crates"
        )
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        "# Written by ipy-rustasync: crates come from a vendored directory, never the network.\n"
        "[source.crates-io]\n"
        f'replace-with = "{SOURCE_NAME}"\n'
        f"[source.{SOURCE_NAME}]\n"
        f"directory = {json.dumps(str(directory))}\n"
        "[net]\n"
        "offline = true\n",
        encoding="utf-8",
    )
    return ["--offline"]


#: cargo verifies every file of a directory source against its .cargo-checksum.json.
_TAMPERED = re.compile(r"the listed checksum of `(?P<file>[^`]+)` has changed")

_MISSING = [
    # cargo: "no matching package named `foo` found" (offline or not)
    re.compile(r"no matching package named `(?P<name>[^`]+)` found"),
    # cargo: "failed to select a version for the requirement `foo = "^9"`"
    re.compile(r"failed to select a version for the requirement `(?P<name>[^ `]+) = \"(?P<req>[^\"]*)\"`"),
]


def explain_resolution_failure(stderr: str, offline: Path | None, deps: Sequence[Dep] = ()) -> str | None:
    """One sentence for cargo's dependency-resolution failures, or None if it was not one.

    ``deps`` are the cell's ``--dep``s, so the suggested vendor command names the
    version the cell asked for."""
    if tampered := _TAMPERED.search(stderr):
        return (
            f"{tampered['file']} in the offline crate directory no longer matches the checksum recorded when it "
            f"was vendored, so cargo refuses to build from it; vendor the crates again (`ipy-rustasync vendor {offline or 'DIR'}`)"
        )
    for pattern in _MISSING:
        match = pattern.search(stderr)
        if not match:
            continue
        name = match.group("name")
        req = match.groupdict().get("req")
        what = f"`{name}` {req}" if req else f"`{name}`"
        if offline is not None:
            asked = next((d.flag() for d in deps if d.crate.replace("_", "-") == name.replace("_", "-")), name)
            return (
                f"the crate {what} is not in the offline crate directory {offline}; on a machine with "
                f"crates.io run `ipy-rustasync vendor {offline} --dep {asked}` and copy the directory here"
            )
        if req:
            return f"no version of the crate `{name}` matches {req!r} on crates.io; check the version (--dep or the ```cargo block)"
        return f"there is no crate named `{name}` on crates.io; check the name (--dep or the ```cargo block)"
    if "--offline" in stderr or "failed to download" in stderr or "failed to get" in stderr:
        if offline is not None:
            return f"a crate this cell needs is missing from the offline crate directory {offline}; re-run `ipy-rustasync vendor` there with the cell's --dep crates"
        return "cargo could not download the crates this cell needs; check the network, or set up offline crates (`ipy-rustasync vendor`)"
    return None


def vendor(directory: Path, deps: Sequence[Dep] = (), *, quiet: bool = False, seed_lock: str | None = None) -> Path:
    """Fills ``directory`` with the runtime's crates plus ``deps`` (cargo vendor).

    Runs on a machine that reaches crates.io; the directory is then carried to one
    that does not and named with ``offline_crates``. Cargo vendor keeps each crate's
    ``.cargo-checksum.json``, which cargo verifies when it builds from the directory.
    ``seed_lock`` starts the resolve from a notebook's pins (lockfile.py), so the
    versions its lock sidecar names are the ones vendored."""
    directory = directory.expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="ira-vendor-") as tmp:
        spec = crate.CellSpec(source="", deps=tuple(deps), seed_lock=seed_lock)
        root = crate.write(spec, Path(tmp))
        cmd = [
            toolchain.cargo(),
            "vendor",
            "--manifest-path",
            str(root / "Cargo.toml"),
            "--respect-source-config",
            str(directory),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sentence = explain_resolution_failure(out.stderr, None)
            raise RustAsyncUsageError(sentence or f"cargo vendor failed:\n{out.stderr.strip()}")
    if not quiet:
        count = sum(1 for p in directory.iterdir() if p.is_dir())
        print(f"vendored {count} crates into {directory}")
        print(
            f"use them with: export IPY_RUSTASYNC_OFFLINE_CRATES={directory}  (or `%rust_async --offline-crates {directory}`)"
        )
    return directory
