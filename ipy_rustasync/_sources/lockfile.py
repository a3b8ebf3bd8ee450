"""The notebook's lock sidecar, and the cargo run that pins a cell's extra crates: the
versions a notebook's cells resolved, kept next to the notebook so a rebuild (another
edit, a restart, another machine) gets the same ones.

    analysis.ipynb  ->  analysis.rust_async.lock   (same directory; commit it with the notebook)

Why: every cell is its own cargo crate whose Cargo.lock starts as a copy of
rust/Cargo.lock, which pins the shared graph (pyo3, tokio, futures and what they pull
in) and nothing else. A crate a cell adds with ``--dep`` or a ```` ```cargo ```` block
would otherwise resolve to the newest matching release every time a cell's crate is
new, which is every edit.

The sidecar is in Cargo.lock's own format (cargolock.py reads, combines and writes
it): ``[[package]]`` entries for the crates the notebook's extra deps pull in that
rust/Cargo.lock does not pin, at most one version per semver-compatible range. This
module holds what touches files or runs cargo:

* seeding: a cell with extra deps starts from rust/Cargo.lock plus the sidecar's
  packages. Cargo keeps every pinned version it can use and prunes the rest.
* hashing: the module name covers the pinned versions of the cell's extra deps and of
  everything they pull in, so a cached module built against other versions is never
  loaded.
* resolving first: if the seeded lock does not pin a version of every extra dep that
  its requirement accepts (a crate new to the notebook, or a requirement the pin does
  not meet), ``cargo update --workspace`` resolves them in a scratch crate before the
  build (it adds what is missing and keeps every pin), and its Cargo.lock says what
  each got, so the module is named after the versions it is built with and the next
  run is a cache hit. When the sidecar pins them all, no cargo runs at all (the check
  is versions.matches).
* recording, after a successful build: the closure of the cell's extra deps in the
  Cargo.lock cargo wrote for the cell, minus what rust/Cargo.lock pins, joins the
  sidecar (cargolock.merge: a pin stays until a build needed a newer compatible release).
* a cell without extra deps never reads the sidecar (its build path is unchanged), and
  without a notebook (no ``__session__``, no ``--lock``) there is no sidecar at all.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipy_rustasync._base import atomic
from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import cargolock, crate, registry
from ipy_rustasync._sources.cargolock import REGISTRY, Lock, Package
from ipy_rustasync._sources.deps import Dep

#: ``<notebook stem>`` + this, next to the notebook.
SUFFIX = ".rust_async.lock"
SIDECAR_HEADER = (
    "# The crate versions this notebook's %%rust_async cells use, written by ipy-rustasync.\n"
    "# Each cell's Cargo.lock starts from these pins; one stays until a cell needs a newer\n"
    "# compatible release. Delete an entry (or the file) to let cargo choose again.\n"
)


def base() -> Lock:
    """rust/Cargo.lock: the shared graph every cell is built against."""
    path = crate.rust_dir() / "Cargo.lock"
    return cargolock.parse(path.read_text(encoding="utf-8"), str(path))


# --- the sidecar -----------------------------------------------------------------------------


def sidecar_for(notebook: Path) -> Path:
    """``dir/analysis.ipynb`` -> ``dir/analysis.rust_async.lock``."""
    return notebook.with_name(notebook.stem + SUFFIX)


def notebook_path(namespace: Mapping[str, Any]) -> Path | None:
    """The notebook this kernel runs, if it is known: ``__session__`` in the user
    namespace, else ``JPY_SESSION_NAME``, both set when jupyter-server starts the
    kernel for a notebook (an absolute path; a relative one is taken as a file in the
    kernel's working directory, which jupyter-server makes the notebook's directory).
    nbclient and plain IPython set neither."""
    for value in (namespace.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(value, str) and value.endswith(".ipynb"):
            path = Path(value).expanduser()
            return path if path.is_absolute() else Path.cwd() / path.name
    return None


def choose(choice: str, namespace: Mapping[str, Any]) -> Path | None:
    """The sidecar for ``%rust_async --lock CHOICE``: ``auto`` (the notebook's, if the
    kernel knows the notebook), ``off``, a notebook ``.ipynb`` (its sidecar) or the
    lock file's own path."""
    if choice == "off":
        return None
    if choice == "auto":
        notebook = notebook_path(namespace)
        return sidecar_for(notebook) if notebook is not None else None
    path = Path(choice).expanduser().resolve()
    return sidecar_for(path) if path.suffix == ".ipynb" else path


def read(path: Path) -> Lock:
    """The sidecar's pins (none if it does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Lock()
    return cargolock.parse(text, f"the lock file {path}", sidecar=True)


# --- pinning a cell -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinned:
    """What the sidecar means for one cell's build."""

    #: the Cargo.lock the cell crate starts from
    seed: str
    #: the cell's extra crates and what they pull in, at the versions the build will use
    packages: tuple[Package, ...]
    #: the extra crates themselves (what ``record`` looks up after the build)
    wanted: tuple[Dep, ...]
    #: whether cargo had to resolve something the sidecar did not pin
    resolved: bool

    @property
    def pins(self) -> tuple[str, ...]:
        """``name version`` of ``packages``: what the module's hash covers."""
        return cargolock.pins_of(self.packages)


def pin(wanted: Sequence[Dep], path: Path, context: Context) -> Pinned:
    """The seed lock and pins for a cell with extra deps in the notebook whose sidecar
    is ``path``. Runs no tool when the sidecar pins a version of every extra dep that
    its requirement accepts (an unchanged cell must load without starting cargo);
    otherwise cargo resolves them first and says what each got."""
    seeded = cargolock.seed(base(), read(path))
    found = cargolock.pinned_closure(seeded, wanted)
    if found is not None:
        return Pinned(cargolock.render(seeded), tuple(found), tuple(wanted), resolved=False)
    resolved = resolve(wanted, seeded, context)
    found = cargolock.resolved_closure(resolved, RESOLVE_CRATE, wanted) or []
    return Pinned(cargolock.render(resolved.without([RESOLVE_CRATE])), tuple(found), tuple(wanted), resolved=True)


def record(path: Path, pinned: Pinned, built: Path, *, root: str) -> bool:
    """Merges what a cell's extra deps resolved to into the sidecar at ``path``; writes
    it only if that changed something (a notebook under git sees no churn). Returns
    whether it wrote. A sidecar that cannot be written is a warning, not a failure:
    the cell itself built.

    What they resolved to is cargo's answer, read from ``built``, the Cargo.lock cargo
    wrote for the cell crate (package ``root``); a module loaded from the cache whose
    crate has since been removed records the pins it was named after."""
    found: Sequence[Package] = pinned.packages
    if built.is_file():
        lock = cargolock.parse(built.read_text(encoding="utf-8"), str(built))
        found = cargolock.resolved_closure(lock, root, pinned.wanted) or found
    shared = set(base().slots())
    own = [p for p in found if p.source == REGISTRY and p.slot not in shared]
    existing = read(path)
    merged = cargolock.merge(existing, own)
    if set(merged.packages) == set(existing.slots().values()):
        return False  # nothing new (and no file for a notebook whose crates rust/Cargo.lock pins)
    text = cargolock.render(merged, header=SIDECAR_HEADER, sidecar=True)
    try:
        atomic.write(path, text, fsync=True)  # the user's file, kept beside the notebook
    except OSError as err:
        warnings.warn(f"rust_async: could not write the lock file {path}: {err}", stacklevel=2)
        return False
    return True


#: The package name of the scratch crate ``resolve`` runs cargo in.
RESOLVE_CRATE = "ira_resolve"


def resolve(wanted: Sequence[Dep], seeded: Lock, context: Context) -> Lock:
    """What cargo resolves ``wanted`` to from the ``seeded`` lock (pins kept, what is
    missing added): ``cargo update --workspace`` on a scratch crate (package
    ``RESOLVE_CRATE``) with the cell's manifest, and the Cargo.lock it writes. It reads
    the registry index only, downloads no crate, and honours the offline mode."""
    with tempfile.TemporaryDirectory(prefix="resolve-", dir=context.cache.root) as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        (root / "src" / "lib.rs").write_text("", encoding="utf-8")
        spec = crate.CellSpec(source="", deps=tuple(wanted))
        (root / "Cargo.toml").write_text(crate.manifest(spec, name=RESOLVE_CRATE), encoding="utf-8")
        (root / "Cargo.lock").write_text(cargolock.render(seeded), encoding="utf-8")
        extra = registry.configure(root, context.settings.offline_crates)
        env = {**os.environ, "CARGO_TERM_COLOR": "never"}
        env.pop("CARGO", None)
        cmd = [toolchain.cargo(), "update", "--workspace", "--manifest-path", str(root / "Cargo.toml"), *extra]
        out = subprocess.run(
            cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            sentence = registry.explain_resolution_failure(out.stderr, context.settings.offline_crates, wanted)
            tail = "\n".join(out.stderr.strip().splitlines()[-20:])
            raise RustAsyncUsageError(sentence or f"cargo could not resolve the cell's crates:\n{tail}")
        lock = root / "Cargo.lock"
        return cargolock.parse(lock.read_text(encoding="utf-8"), str(lock))
