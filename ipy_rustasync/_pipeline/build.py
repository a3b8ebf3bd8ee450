"""Building a cell: crate -> ``cargo rustc`` -> extension module in the cache.

A built module is looked up by its content hash first, so an unchanged cell never
starts cargo. Builds hold one file lock (``filelock``, with a timeout and a message
naming the holder) because every cell shares one cargo target directory; the module
is written under a temporary name and renamed, so a build killed halfway never
leaves a file that could be loaded.

Cargo is driven the way maturin drives it (the same ``cargo rustc --lib`` with the
same PyO3 environment: ``maturin_env``), so a maturin build of a cell crate and ours
share every artifact. We skip maturin itself on the hot path because it spends
0.4-0.6 s per build (two ``cargo metadata`` runs, three interpreter queries, a wheel)
before and after a 0.5 s cell compile, and because we want cargo's JSON messages,
which maturin consumes. ``tests/test_build.py`` checks the equivalence.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from ipy_rustasync._base.errors import RustAsyncUsageError, RustCompileError
from ipy_rustasync._base.logs import Phase
from ipy_rustasync._pipeline import cargo, rustc_direct
from ipy_rustasync._pipeline.cargo import cargo_command
from ipy_rustasync._presentation import diagnostics
from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.cache import Cache
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import crate, registry

log = logging.getLogger(__name__)

#: What the OS says when a write fails for lack of room (ENOSPC, EDQUOT, EFBIG, and
#: SIGXFSZ: the file size limit, which kills the writing compiler).
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|File too large|signal: 25\b|SIGXFSZ")

#: How long a build waits for another kernel's build before giving up.
LOCK_TIMEOUT = float(os.environ.get("IPY_RUSTASYNC_LOCK_TIMEOUT", "900"))


@dataclass
class BuildResult:
    module: str
    path: Path
    cached: bool
    seconds: float
    warnings: list[diagnostics.Diagnostic] = field(default_factory=list)


class BuildError(RustAsyncUsageError):
    """The build failed for a reason other than the cell's code."""


def build(
    spec: crate.CellSpec,
    context: Context,
    *,
    force: bool = False,
    watcher: cargo.Watcher | None = None,
) -> BuildResult:
    """Returns the module for ``spec``, building it unless it is cached."""
    start = time.perf_counter()
    cache = context.cache
    _check_upstream(spec, cache)
    if not force and (path := cache.trusted_module(spec.module)) and _runtime_ready(spec, cache):
        log.debug("%s: cache hit, %s", spec.module, path)
        return _cached(spec, cache, path, start)
    log.debug("%s: %s", spec.module, "rebuild forced (--force)" if force else "cache miss, building")
    toolchain.check()
    waiting = time.perf_counter()
    with cache.holding_lock(LOCK_TIMEOUT, BuildError):
        log.debug("%s: build lock held after %.3f s", spec.module, time.perf_counter() - waiting)
        if not force and (path := cache.trusted_module(spec.module)) and _runtime_ready(spec, cache):
            log.debug("%s: cache hit after waiting (another process built it), %s", spec.module, path)
            return _cached(spec, cache, path, start)
        root = crate.write(spec, cache.crates)
        found = _run_cargo(spec, context, root, watcher, force=force)
        path = cache.module_path(spec.module)
        warnings = [d for d in found if d.level == "warning"]
        cache.save_warnings(spec.module, diagnostics.dumps(warnings))
        return BuildResult(spec.module, path, cached=False, seconds=time.perf_counter() - start, warnings=warnings)


#: Shared runtime libraries checked (or installed) in this process: a library is
#: loaded once per process, so it is checked once, and a re-run stays cheap.
_RUNTIMES_READY: set[Path] = set()


def _runtime_ready(spec: crate.CellSpec, cache: Cache) -> bool:
    """Whether the shared runtime library a cached module links is in the cache,
    with what it needs, intact (a cell linking its own copy needs none)."""
    if spec.runtime is None:
        return True
    filename = runtime_filename(spec.runtime)
    if cache.library_path(filename) in _RUNTIMES_READY:
        return True
    if not cache.trusted_library(filename):
        log.debug("%s: the runtime library %s is missing or damaged: building", spec.module, filename)
        return False
    _RUNTIMES_READY.add(cache.library_path(filename))
    return True


def _check_upstream(spec: crate.CellSpec, cache: Cache) -> None:
    """Every named cell the cell builds on (directly or through another) must be in the
    cache as it was built, with its library name: the cell links that very file."""
    for module in sorted({u.module for u in spec.upstream} | {m for u in spec.upstream for m in u.requires}):
        if cache.trusted_module(module) is None:
            names = ", ".join(u.name for u in spec.upstream if module == u.module or module in u.requires)
            raise RustAsyncUsageError(
                f"the build {module} of the named cell this cell uses ({names}) is no longer in the cache: "
                "re-run that cell first"
            )
        cache.link_named(module)


def _upstream_args(spec: crate.CellSpec, cache: Cache, root: Path) -> list[str]:
    """rustc's arguments for the named cells a cell uses: each under the name the cell
    writes (``--extern orders=.../libira_<hash>.so``: a renamed dependency, as cargo's
    ``package = ...`` makes one), and a search directory holding those and the named
    cells they use in turn (rustc looks a dependency's own dependencies up there by crate
    name and build, never through ``--extern``; ``modules/`` itself would also offer it
    a second libstd). Given to the cell's rustc directly rather than as cargo path
    dependencies: cargo would build the named crate again inside every dependent's build,
    as a non-member of its workspace (another profile: ``[profile.dev.package."*"]``), so
    the dependent would link a copy that is not the one loaded."""
    if not spec.upstream:
        return []
    closure = sorted({u.module for u in spec.upstream} | {m for u in spec.upstream for m in u.requires})
    found = cache.link_upstream(root / "upstream", closure)
    args = ["-L", f"dependency={found}"]
    for up in sorted(spec.upstream):
        args += ["--extern", f"{up.name}={found / cache.named_library(up.module).name}"]
    return args


def runtime_filename(runtime: str) -> str:
    """The file cargo (and the dynamic linker, by its SONAME) calls the runtime crate's ``dylib``."""
    return f"lib{runtime}.so"


def _cached(spec: crate.CellSpec, cache: Cache, path: Path, start: float) -> BuildResult:
    """A cache hit, with the warnings its build printed (a re-run shows them again)."""
    saved = cache.load_warnings(spec.module)
    warnings = diagnostics.loads(saved, spec.source, spec.first_line) if saved else []
    return BuildResult(spec.module, path, cached=True, seconds=time.perf_counter() - start, warnings=warnings)


def _run_cargo(
    spec: crate.CellSpec, context: Context, root: Path, watcher: cargo.Watcher | None, *, force: bool = False
) -> list[diagnostics.Diagnostic]:
    """Compiles the crate and moves its library into the cache; returns the diagnostics.
    A warm build replays rustc as cargo last ran it for the same build
    (``rustc_direct``), unless ``force``; otherwise, or when that cannot serve, cargo."""
    target = context.target_for(shared_runtime=spec.runtime is not None)
    appended = _upstream_args(spec, context.cache, root)
    direct = rustc_direct.enabled(spec)
    outcome = None
    if direct and not force and _runtime_ready(spec, context.cache):
        with Phase(log, "rustc", spec.module):
            outcome = rustc_direct.replay(spec, target, context.cache, root, appended, watcher)
    replayed = outcome is not None
    if outcome is None:
        outcome = _cargo(spec, context, root, target, appended, watcher, record=direct)
    found = diagnostics.from_messages(
        outcome.compiler_messages(), spec.source, spec.module, first_line=spec.first_line, line_offset=spec.line_offset
    )
    artifact = outcome.library(spec.module, spec.crate_type)
    if not outcome.ok or artifact is None:
        context.cache.remove_cell_build(target, spec.module)  # a failed build leaves little, but nothing of use
        raise _failure(spec, context, outcome, found)
    with Phase(log, "install", spec.module):
        if spec.runtime is not None and not replayed:
            _install_runtime(spec.runtime, outcome, context.cache)
        context.cache.install(artifact, spec.module)
        if spec.name is not None:
            context.cache.link_named(spec.module)
        if direct and not replayed:
            rustc_direct.save(spec, target, context.cache, root, appended)
        # The module is in the cache now; its crate's files in the shared target are never reused.
        context.cache.remove_cell_build(target, spec.module)
    return found


def _cargo(
    spec: crate.CellSpec,
    context: Context,
    root: Path,
    target: Path,
    appended: list[str],
    watcher: cargo.Watcher | None,
    *,
    record: bool,
) -> cargo.Outcome:
    """``cargo rustc`` of the crate, recording the cell's rustc invocation if ``record``."""
    cmd = cargo_command(
        root / "Cargo.toml",
        target,
        release=False,  # always cargo's dev profile: --release is an override for the cell (crate.RELEASE_CELL)
        extra=registry.configure(root, context.settings.offline_crates),
        shared_runtime=spec.runtime is not None,
        rustc_args=appended,
    )
    # Cells with the same dependencies build the same units (in either profile); remembered per set.
    units_key = f"dev {' '.join(str(d) for d in sorted(set(spec.deps)))}".strip()
    memo = context.cache.units_memo(target)
    if watcher is not None:
        watcher.expect(cargo.expected_units(memo, units_key, root / "Cargo.lock"))
    log.debug("%s: running %s (in %s)", spec.module, shlex.join(cmd), root)
    extra_env = rustc_direct.recording_env(context.cache, root) if record else None
    with Phase(log, "cargo", spec.module):
        outcome = cargo.run(cmd, root, watcher, shared_runtime=spec.runtime is not None, extra_env=extra_env)
    log.debug("%s: cargo %s, %d units", spec.module, "succeeded" if outcome.ok else "failed", outcome.artifacts())
    if outcome.ok:
        cargo.remember_units(memo, units_key, outcome.artifacts())
    return outcome


def _install_runtime(runtime: str, outcome: cargo.Outcome, cache: Cache) -> None:
    """Puts the shared runtime library and the toolchain's libstd beside the modules
    (before the module: a module in the cache always finds its runtime there)."""
    built = outcome.library(runtime, "dylib")
    if built is None:
        raise BuildError(f"cargo built no runtime library {runtime_filename(runtime)}; re-run the cell with --force")
    libstd = toolchain.shared_libstd()
    if not libstd:
        raise BuildError("the Rust toolchain has no libstd shared library (`rustc --print target-libdir`)")
    for lib in libstd:
        cache.install_library(lib, lib.name, needs=[])
    filename = runtime_filename(runtime)
    cache.install_library(built, filename, needs=[lib.name for lib in libstd])
    _RUNTIMES_READY.add(cache.library_path(filename))


def _failure(
    spec: crate.CellSpec, context: Context, outcome: cargo.Outcome, found: list[diagnostics.Diagnostic]
) -> Exception:
    offline = context.settings.offline_crates
    said = outcome.text + "\n".join(str(m.get("message", {}).get("rendered")) for m in outcome.compiler_messages())
    if full := _DISK_FULL.search(said):
        return BuildError(
            f"the build could not write its files ({_why(full[0])}): free some disk space, or move the cache "
            f"({context.cache.root}) with IPY_RUSTASYNC_CACHE_DIR; "
            "`ipy-rustasync cache clear --all` removes the shared build"
        )
    errors = [d for d in found if d.level == "error"]
    if not errors:
        sentence = registry.explain_resolution_failure(outcome.text, offline, spec.deps)
        if sentence:
            return BuildError(sentence)
        tail = "\n".join(outcome.text.strip().splitlines()[-20:])
        return BuildError(f"the build failed without a compiler message; cargo said:\n{tail}")
    first = errors[0]
    where = f" (cell line {first.line})" if first.line else ""
    headline = f"the cell did not compile: {diagnostics.summary(found)}; first: {first.message}{where}"
    return RustCompileError(
        headline,
        found,
        texts=[diagnostics.render.text(d) for d in found],
        htmls=[diagnostics.render.html(d) for d in found],
    )


def _why(said: str) -> str:
    return "the file size limit, `ulimit -f`, was exceeded" if "25" in said or "SIGXFSZ" in said else said
