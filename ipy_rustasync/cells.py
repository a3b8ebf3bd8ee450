"""From Rust source to a loaded module: the one path the magic, the CLI and plain
scripts share (``ipy_rustasync.rust_module`` is this, for code outside IPython)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

from ipy_rustasync import build, config, crate, loader
from ipy_rustasync.errors import RustAsyncUsageError


@dataclass
class Compiled:
    module: ModuleType
    exports: list[loader.Export]
    build: build.BuildResult


def compile_cell(
    source: str,
    *,
    release: bool | None = None,
    deps: Iterable[str | crate.Dep] = (),
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> Compiled:
    """Builds (or finds in the cache) and loads the module for ``source``.

    ``release=None`` takes the ``release`` setting."""
    if not source.strip():
        raise RustAsyncUsageError(
            "the cell is empty: write Rust functions under %%rust_async, e.g. `pub async fn hello() -> String { ... }`"
        )
    settings = config.Settings.load()
    spec = crate.CellSpec(
        source=source,
        release=settings.release if release is None else release,
        deps=tuple(d if isinstance(d, crate.Dep) else crate.Dep.parse(d) for d in deps),
    )
    result = build.build(spec, settings, force=force, on_line=on_line)
    module = loader.load(result.module, result.path)
    exports = loader.exports(module)
    if not exports:
        raise RustAsyncUsageError(
            "the cell compiled but exports nothing: mark the functions Python should see `pub` "
            "(e.g. `pub async fn fetch() -> u64`)"
        )
    return Compiled(module, exports, result)


def rust_module(
    source: str, *, release: bool | None = None, deps: Iterable[str] = (), force: bool = False
) -> ModuleType:
    """Compiles Rust source like a ``%%rust_async`` cell and returns the module, for
    scripts and tests outside IPython: ``mod = rust_module(src); asyncio.run(mod.f())``."""
    return compile_cell(source, release=release, deps=deps, force=force).module
