"""From Rust source to a loaded module: the one path the magic, the CLI and plain
scripts share (``ipy_rustasync.rust_module`` is this, for code outside IPython)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._base.logs import Phase
from ipy_rustasync._pipeline import build, cargo, loader
from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import crate, deps, fragment, lockfile
from ipy_rustasync._sources.deps import Dep

log = logging.getLogger(__name__)


@dataclass
class Compiled:
    module: ModuleType
    exports: list[loader.Export]
    build: build.BuildResult
    #: what was built (export.py copies its crate's resolved Cargo.lock)
    spec: crate.CellSpec


def cell_deps(source: str, flags: Iterable[str | Dep] = (), first_line: int = 1) -> tuple[Dep, ...]:
    """The cell's extra crates: its ```cargo block merged with ``--dep`` flags."""
    parsed = [d if isinstance(d, Dep) else Dep.parse(d) for d in flags]
    return deps.combine(("the ```cargo block", fragment.deps(source, first_line)), ("--dep", parsed))


def with_upstream_deps(wanted: tuple[Dep, ...], upstream: Iterable[crate.Upstream]) -> tuple[Dep, ...]:
    """The cell's extra crates and those of the named cells it uses: it links their
    runtime library, which was built in a graph with their crates (features add up
    across the graph), so it builds with them too."""
    groups = [(f"the cell named `{u.name}`", u.deps) for u in sorted(upstream)]
    return deps.combine(*groups, ("this cell", wanted)) if groups else wanted


def check_runtime(spec: crate.CellSpec, own: Iterable[Dep]) -> None:
    """A cell links the one runtime library of the named cells it uses (two would mean
    two PyO3s in one crate, which rustc refuses in 19 lines): says, in one sentence, what
    to change when this cell's build would have another. ``own``: the cell's own extra
    crates, before the named cells' were added."""
    runtimes = {u.runtime: u.name for u in sorted(spec.upstream)}
    if not runtimes or set(runtimes) == {spec.runtime}:
        return
    if len(runtimes) > 1:
        names = " and ".join(f"`{n}`" for n in runtimes.values())
        raise RustAsyncUsageError(
            f"the cells named {names} were built with different extra crates (or build settings), so they link "
            "different runtime libraries and no cell can use both: give them the same --dep crates and re-run them"
        )
    (name,) = runtimes.values()
    theirs = {d for u in spec.upstream for d in u.deps}
    extra = [str(d) for d in own if d not in theirs]
    if extra:
        flags = " ".join(f"--dep {d}" for d in extra)
        raise RustAsyncUsageError(
            f"this cell's extra crates ({', '.join(extra)}) are not the cell named `{name}`'s, and a cell links the "
            f"runtime library of the named cells it uses: add them to that cell ({flags}) and re-run it first"
        )
    raise RustAsyncUsageError(
        f"the cell named `{name}` was built with other build settings (compiler, RUSTFLAGS or pinned crate "
        "versions) than this cell would be: re-run it first"
    )


def compile_cell(
    source: str,
    *,
    release: bool | None = None,
    deps: Iterable[str | Dep] = (),
    force: bool = False,
    watcher: cargo.Watcher | None = None,
    lock: str | Path | None = None,
    context: Context | None = None,
    first_line: int = 1,
    name: str | None = None,
    known: Mapping[str, crate.Upstream] | None = None,
) -> Compiled:
    """Builds (or finds in the cache) and loads the module for ``source``.

    ``release=None`` takes the ``release`` setting. ``lock`` is the notebook's lock
    sidecar (lockfile.py): it pins the cell's extra crates, and learns the versions
    they resolved to once the cell has built. A cell without extra crates ignores it.
    ``context`` is the caller's settings and cache (read now if not given).
    ``first_line`` is the editor's line of the source's first line: 2 for a
    ``%%rust_async`` cell's body (the magic line is line 1), 1 for source without a
    magic line. Every line the user is told of (compiler messages, a panic's
    ``cell_line``) counts from there.

    ``name`` (``--name``) builds the cell as a named cell: a Rust ``dylib`` later cells
    use as the crate ``name`` (``use orders::total;``), which is still this Python module.
    ``known``: the named cells this session has built, by name; those the source names
    as a path root (``crate.uses``) are the cell's upstream, linked as they were built."""
    if not source.strip():
        raise RustAsyncUsageError(
            "the cell is empty: write Rust functions under %%rust_async, e.g. `pub async fn hello() -> String { ... }`"
        )
    if name is not None:
        crate.check_name(name)
        if not toolchain.shared_runtime():
            raise RustAsyncUsageError(
                "--name needs the shared runtime library, which cells use on Linux only so far, with a Rust "
                "toolchain that ships libstd as a shared library (rustup's do; Debian's packaged rustc does not), "
                "and not with IPY_RUSTASYNC_SHARED_RUNTIME=0"
            )
    known = dict(known or {})
    upstream = tuple(known[n] for n in crate.uses(source, [n for n in known if n != name]))
    context = context or Context.load()
    # Opened (created) before hashing: rustc -vV, part of the hash, is asked in the cache
    # directory and remembered there (toolchain.rustc_version).
    cache = context.cache
    lock = Path(lock).expanduser() if lock is not None else None
    own = cell_deps(source, deps, first_line)
    wanted = with_upstream_deps(own, upstream)
    pinned = lockfile.pin(wanted, lock, context) if lock is not None and wanted else None
    spec = crate.CellSpec(
        source=source,
        release=context.release(release),
        first_line=first_line,
        deps=wanted,
        pins=pinned.pins if pinned else (),
        seed_lock=pinned.seed if pinned else None,
        name=name,
        upstream=upstream,
    )
    check_runtime(spec, own=own)
    with Phase(log, "hash") as hashing:
        hashing.module = spec.module  # the digest: rustc -vV (remembered), the bridge's sources, the cell
    log.debug(
        "%s: content hash %s (release %s, deps [%s], %d pins)",
        spec.module,
        spec.digest,
        spec.release,
        ", ".join(map(str, spec.deps)),
        len(spec.pins),
    )
    try:
        result = build.build(spec, context, force=force, watcher=watcher)
    except build.BuildError as err:
        if context.settings.offline_crates is None or lock is None or pinned is None:
            raise
        # Most likely a pinned version the vendored directory lacks: say how to add them.
        raise build.BuildError(
            f"{err}; the notebook's lock file {lock} pins its crates' versions: add `--lock {lock}` to that "
            "`ipy-rustasync vendor` command to vendor exactly those"
        ) from None
    if lock is not None and pinned is not None:
        built = cache.crate_lock(spec.module)
        lockfile.record(lock, pinned, built, root=spec.module)
    with Phase(log, "load", spec.module):
        module = loader.load(result.module, result.path)
        exports = loader.exports(module)
    if not exports:
        raise RustAsyncUsageError(
            "the cell compiled but exports nothing: mark the functions Python should see `pub` "
            "(e.g. `pub async fn fetch() -> u64`)"
        )
    return Compiled(module, exports, result, spec)


def rust_module(
    source: str,
    *,
    release: bool | None = None,
    deps: Iterable[str] = (),
    force: bool = False,
    lock: str | Path | None = None,
) -> ModuleType:
    """Compiles Rust source like a ``%%rust_async`` cell and returns the module, for
    scripts and tests outside IPython: ``mod = rust_module(src); asyncio.run(mod.f())``.
    ``lock`` is a lock sidecar to pin the extra crates with (see lockfile.py).

    ``source`` has no magic line, so its own first line is line 1 in compiler messages
    and in a panic's ``cell_line`` (in a cell, the ``%%rust_async`` line is line 1)."""
    return compile_cell(source, release=release, deps=deps, force=force, lock=lock).module


#: The cell ``warm`` builds: trivial, so the time is the dependency graph's.
WARM_CELL = "/// Built by `ipy-rustasync warm` to compile the shared dependencies.\npub async fn warm() -> u8 { 1 }\n"


def warm(
    release: bool | None = None, watcher: cargo.Watcher | None = None, context: Context | None = None
) -> build.BuildResult:
    """Builds the shared dependency graph now (a trivial cell), so the first real cell
    is a warm edit; cached if it is already built."""
    context = context or Context.load()
    spec = crate.CellSpec(source=WARM_CELL, release=context.release(release))
    return build.build(spec, context, watcher=watcher)


class BackgroundWarm:
    """``warm()`` on a daemon thread (the ``warm_on_load`` setting), reporting how it
    went; a cell built meanwhile waits on the build lock, so nothing builds twice."""

    def __init__(self) -> None:
        self.state = "building in the background"
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="ipy-rustasync-warm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            result = warm()
        except Exception as err:  # noqa: BLE001 - reported by %rust_async, and again by the first build
            self.state = f"failed: {err}".splitlines()[0]
        else:
            self.state = "already built" if result.cached else f"built in {time.perf_counter() - self._started:.1f} s"

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
