"""ipy-rustasync: write async Rust in a notebook cell and ``await`` it from Python.

Load it with ``%load_ext ipy_rustasync``; then a ``%%rust_async`` cell compiles its
Rust source into an extension module and binds each ``pub fn`` / ``pub async fn`` in
the notebook's namespace.

Its modules log to the ``ipy_rustasync`` logger (logs.py says how to see a build's
steps); a library adds only a ``NullHandler``, so nothing is printed unless asked.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from ipy_rustasync._base.errors import RustAsyncUsageError, RustCompileError, RustError, RustPanic, ToolchainError
from ipy_rustasync._base.version import __version__
from ipy_rustasync._pipeline.cells import rust_module
from ipy_rustasync._runtime.loops import run

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


__all__ = [
    "RustAsyncUsageError",
    "RustCompileError",
    "RustError",
    "RustPanic",
    "ToolchainError",
    "__version__",
    "load_ipython_extension",
    "run",
    "rust_module",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Called by ``%load_ext ipy_rustasync``: registers the magics, the hint after a
    nested ``asyncio.run``, and, if their settings are on, nest-asyncio2 and a
    background build of the shared dependencies."""
    from ipy_rustasync._front.magic import RustAsyncMagics
    from ipy_rustasync._runtime import loops
    from ipy_rustasync._settings.context import Context

    magics = RustAsyncMagics(ipython)
    ipython.register_magics(magics)
    if loops.asyncio_run_hint not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", loops.asyncio_run_hint)
    settings = Context.load().settings
    if settings.nest:
        try:
            loops.nest()
        except RustAsyncUsageError as err:
            print(f"rust_async: the nest setting is on, but {err}", file=sys.stderr)
    if settings.warm_on_load:
        from ipy_rustasync._pipeline.cells import BackgroundWarm

        magics.background_warm = BackgroundWarm()
    if "ipykernel" in type(ipython).__module__:
        loops.wake_loop_on_signals()
    _prefetch_toolchain()


def _prefetch_toolchain() -> None:
    """Asks rustc for its version in the background, so the first cell (even a cached
    one, whose name includes that version) does not wait for it."""
    import threading

    from ipy_rustasync._settings import toolchain
    from ipy_rustasync._sources import crate

    def work() -> None:
        try:
            toolchain.rustc_version()
            crate.rust_sources_digest()
        except Exception:  # noqa: BLE001 - reported properly at the first build
            pass

    threading.Thread(target=work, name="ipy-rustasync-prefetch", daemon=True).start()


def unload_ipython_extension(ipython: Any) -> None:
    """Removes the event hooks; loaded modules stay loaded, bound names stay bound."""
    from ipy_rustasync._runtime import loops

    if loops.asyncio_run_hint in ipython.events.callbacks["post_run_cell"]:
        ipython.events.unregister("post_run_cell", loops.asyncio_run_hint)
    magics = ipython.magics_manager.registry.get("RustAsyncMagics")
    if magics is not None and magics._pre_run_cell in ipython.events.callbacks["pre_run_cell"]:
        ipython.events.unregister("pre_run_cell", magics._pre_run_cell)
    if magics is not None and magics.binder.stale_object_hint in ipython.events.callbacks["post_run_cell"]:
        ipython.events.unregister("post_run_cell", magics.binder.stale_object_hint)
