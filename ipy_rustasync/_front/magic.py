"""The ``%%rust_async`` cell magic and the ``%rust_async`` line magic.

Flags are parsed by IPython's ``magic_arguments`` (argparse underneath), so a wrong
flag is an IPython ``UsageError`` line, not a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ipy_rustasync._base.errors import RustAsyncUsageError, RustCompileError
from ipy_rustasync._base.logs import Phase
from ipy_rustasync._front import arguments
from ipy_rustasync._front.named_cells import NamedCells
from ipy_rustasync._pipeline import cells, export, loader
from ipy_rustasync._presentation import diagnostics, summary
from ipy_rustasync._presentation.progress import Progress
from ipy_rustasync._runtime import loops
from ipy_rustasync._settings import config
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import lockfile

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def _named(marker: Callable[[str], object], name: str) -> Callable[[_F], _F]:
    """IPython's ``line_magic(name)`` / ``cell_magic(name)``, typed as the decorator
    that call returns (IPython annotates both of its call forms as one union). A line
    and a cell magic share the name ``rust_async`` but not a method, nor a parser."""
    return cast("Callable[[_F], _F]", marker(name))


@dataclass
class LoadedCell:
    module: str
    names: list[str]
    cached: bool
    seconds: float


@magics_class
class RustAsyncMagics(Magics):
    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.binder = loader.Binder()
        self.loaded: list[LoadedCell] = []
        #: the notebook cell being run (ipykernel and nbclient give cell ids), so a
        #: rebuilt cell's dropped functions can be unbound
        self.cell_id: str | None = None
        #: that cell's text as the editor has it (IPython drops blank lines before the
        #: magic line before the magic sees the cell: see _first_line)
        self.raw_cell: str | None = None
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.events.register("post_run_cell", self.binder.stale_object_hint)
        #: the ``warm_on_load`` background build, if the setting started one
        self.background_warm: cells.BackgroundWarm | None = None
        #: ``%rust_async --lock``: "auto" (the notebook's sidecar), "off", or a path
        self.lock_choice = "auto"
        #: the named cells (``--name``) of this session, and what is stale
        self.named_cells = NamedCells()

    def _pre_run_cell(self, info: object) -> None:
        self.cell_id = getattr(info, "cell_id", None)
        self.raw_cell = getattr(info, "raw_cell", None)

    def _first_line(self, cell: str) -> int:
        """The editor's line of the cell body's first line: the one after the
        ``%%rust_async`` line, which is line 1 unless the editor has blank lines above
        it (IPython drops those before calling the magic; the raw cell still has them)."""
        lines = (self.raw_cell or "").splitlines(keepends=True)
        blank = next((i for i, text in enumerate(lines) if text.strip()), len(lines))
        if blank < len(lines) and lines[blank].startswith("%%rust_async") and "".join(lines[blank + 1 :]) == cell:
            return blank + 2
        return 2

    # --- %%rust_async ------------------------------------------------------------

    @magic_arguments(name="%rust_async")  # IPython adds one "%"
    @argument("--release", action="store_true", help="build optimized (default from the `release` setting)")
    @argument("--debug", action="store_true", help="build unoptimized even if `release` is set")
    @argument("--force", action="store_true", help="rebuild even if a cached module exists")
    @argument(
        "--dep",
        action="append",
        default=[],
        metavar="NAME[FEATURES]@VERSION",
        help="an extra crate, e.g. itoa@1 or serde[derive]@1 (repeatable)",
    )
    @argument("--export", metavar="DIR", help="also write the cell to DIR as a standalone maturin project")
    @argument(
        "--name",
        metavar="NAME",
        help="name the cell (a Rust identifier): later cells use its items as `use NAME::...` (Linux)",
    )
    @_named(cell_magic, "rust_async")
    def rust_async_cell(self, line: str, cell: str) -> None:
        """Compile a cell of async Rust and bind its ``pub fn``s here.

        The cell's Rust source is built into an extension module; each ``pub async fn``
        becomes a function returning an awaitable, each ``pub fn`` a plain function.
        ``%rust_async?`` lists the options of the line magic (settings, cache, lock file).
        """
        start = time.perf_counter()
        args = arguments.parse(self.rust_async_cell, line, self.rust_async_line, arguments.line_option)
        context = Context.load()
        self.named_cells.check_upstream(cell, args.name)
        progress = Progress(in_kernel=self._in_kernel())
        try:
            compiled = cells.compile_cell(
                cell,
                release=False if args.debug else (True if args.release else None),
                deps=args.dep,
                force=args.force,
                watcher=progress,
                lock=self._lock(),
                context=context,
                first_line=self._first_line(cell),
                name=args.name,
                known=self.named_cells.named,
            )
        except RustCompileError as err:
            progress.clear()
            if self._in_kernel():
                # Colored, on the cell's lines; the traceback is then just the headline.
                from IPython.display import display

                display({"text/html": err.html(), "text/plain": str(err)}, raw=True)
                err.shown = True
            raise
        except BaseException:
            progress.clear()
            raise
        assert self.shell is not None
        exports, result = compiled.exports, compiled.build
        with Phase(log, "bind", result.module):
            # A named cell is that name wherever it runs: reusing the name replaces it.
            cell_id = f"--name {args.name}" if args.name else self.cell_id
            binding = self.binder.bind(compiled.module, self.shell.user_ns, cell_id)
            self.named_cells.track(compiled.spec, [e.name for e in exports], self.shell, self.binder)
        elapsed = time.perf_counter() - start
        log.debug("%s: the cell took %.3f s (%s)", result.module, elapsed, "cached" if result.cached else "built")
        self.loaded.append(LoadedCell(result.module, [e.name for e in exports], result.cached, elapsed))
        how = "cached" if result.cached else f"built in {elapsed:.2f} s"
        if result.warnings:
            how += f", {len(result.warnings)} warning{'s' * (len(result.warnings) != 1)}"
        said = summary.exports_line(
            how,
            [(e.name, e.kind) for e in exports],
            added=[e.name for e in binding.added],
            replaced=[e.name for e in binding.replaced],
            removed=binding.removed,
        )
        progress.finish(said.text, html=said.html)
        self._show_warnings(result.warnings)
        if args.export:
            if compiled.spec.upstream:
                # Its crates are the other cells': one cell alone cannot build.
                used = ", ".join(f"`{u.name}`" for u in compiled.spec.upstream)
                raise RustAsyncUsageError(
                    f"the cell ran, but --export writes this one cell and it uses the named cells {used}: "
                    "export the notebook instead (`ipy-rustasync export DIR NOTEBOOK.ipynb`), "
                    "which makes each named cell a crate of the project"
                )
            sources = [
                export.Source(cell, args.dep, lock=self._lock(), first_line=compiled.spec.first_line, name=args.name)
            ]
            project = export.export(Path(args.export), sources, context=context)
            print(f"rust_async: {project.summary()}")

    def _show_warnings(self, warnings: list[diagnostics.Diagnostic]) -> None:
        """Folded: in a notebook one collapsed block with the count (rustc's full text
        inside); in a terminal one line per warning."""
        if not warnings:
            return
        if self._in_kernel():
            from IPython.display import display

            plain = "\n\n".join(diagnostics.render.text(w) for w in warnings)
            count = f"{len(warnings)} warning{'s' * (len(warnings) != 1)}"
            folded = f"<details><summary>rust_async: {count}</summary>{''.join(diagnostics.render.html(w) for w in warnings)}</details>"
            display({"text/html": folded, "text/plain": plain}, raw=True)
            return
        for w in warnings:
            where = f" (cell line {w.line})" if w.line else ""
            print(f"rust_async: warning: {w.message}{where}")

    def _in_kernel(self) -> bool:
        return "ipykernel" in type(self.shell).__module__

    # --- %rust_async ---------------------------------------------------------------

    @magic_arguments(name="rust_async")
    @argument(
        "--lock",
        metavar="PATH",
        help="the lock file pinning extra crates: auto (next to the notebook), off, a .ipynb or a file",
    )
    @argument("--offline-crates", metavar="DIR", help="build from this vendored crate directory, offline (remembered)")
    @argument("--online", action="store_true", help="go back to crates.io (remembered)")
    @argument(
        "--nest",
        action="store_true",
        help="let asyncio.run() nest inside this kernel's running loop (nest-asyncio2; this kernel only)",
    )
    @argument("--no-nest", action="store_true", help="turn off the saved `nest` default for future kernels")
    @argument("--warm", action="store_true", help="build the shared dependencies now (quick if already built)")
    @argument(
        "--clear-cache",
        action="store_true",
        help="delete built modules and generated crates (keeps the dependency build)",
    )
    @_named(line_magic, "rust_async")
    def rust_async_line(self, line: str) -> None:
        """Show the settings and the loaded cells, or change a setting.

        ``%%rust_async?`` lists the options of the cell magic (profile, crates, export).
        """
        args = arguments.parse(self.rust_async_line, line, self.rust_async_cell, arguments.cell_option)
        context = Context.load()
        if args.offline_crates:
            directory = Path(args.offline_crates).expanduser().resolve()
            if not directory.is_dir():
                raise RustAsyncUsageError(
                    f"{directory} is not a directory; fill one with `ipy-rustasync vendor DIR` first"
                )
            config.write_setting("offline_crates", str(directory))
            print(f"rust_async: crates now come from {directory}, offline (saved in {config.config_path()})")
        elif args.online:
            config.write_setting("offline_crates", None)
            print(f"rust_async: crates now come from crates.io (saved in {config.config_path()})")
        elif args.nest:
            loops.nest()
            print(
                "rust_async: asyncio.run() now nests inside this kernel's running loop (this kernel only; "
                "`ipy-rustasync config nest true` makes it the default for every kernel)"
            )
        elif args.no_nest:
            if context.settings.nest:
                config.write_setting("nest", "false")
                print(f"rust_async: future kernels will not nest asyncio.run() (saved in {config.config_path()})")
            if loops.nested():
                print(
                    "rust_async: this kernel stays nested until it restarts, "
                    "because nest-asyncio2 cannot be undone on a running loop"
                )
            else:
                print("rust_async: asyncio.run() does not nest in this kernel")
        elif args.warm:
            progress = Progress(in_kernel=self._in_kernel())
            try:
                result = cells.warm(watcher=progress, context=context)
            except BaseException:
                progress.clear()
                raise
            how = "already built" if result.cached else f"built in {result.seconds:.1f} s"
            progress.finish(f"rust_async: dependencies {how}")
            return
        elif args.clear_cache:
            context.cache.clear(keep_target=True)
            print(f"rust_async: cleared built modules and crates in {context.settings.cache_dir}")
        elif args.lock:
            self.lock_choice = (
                args.lock if args.lock in ("auto", "off") else str(Path(args.lock).expanduser().resolve())
            )
        # A setting written above is shown as it now is.
        self._show(Context.load() if args.offline_crates or args.online or args.no_nest else context)

    def _lock(self) -> Path | None:
        """The lock sidecar cells pin their extra crates with (lockfile.choose)."""
        assert self.shell is not None
        return lockfile.choose(self.lock_choice, self.shell.user_ns)

    def _show(self, context: Context) -> None:
        settings = context.settings
        source = f"offline: {settings.offline_crates}" if settings.offline_crates else "crates.io"
        print(f"cache:   {settings.cache_dir}")
        print(f"crates:  {source}")
        print(f"profile: {'release' if settings.release else 'debug'} (per cell: --release / --debug)")
        print(f"nest:    {'on: asyncio.run() nests in cells' if settings.nest else 'off'}")
        if self.background_warm is not None:
            print(f"warm:    {self.background_warm.state}")
        print(f"config:  {config.config_path()}")
        lock = self._lock()
        print(f"lock:    {lock if lock else 'none (no notebook known; %rust_async --lock PATH sets one)'}")
        if self.loaded:
            print("loaded cells:")
            for cell in self.loaded:
                many = f"{len(cell.names):,} exports: " if len(cell.names) > summary.FULL_UP_TO else ""
                print(f"  {cell.module}: {many}{summary.abbreviate(cell.names)}")
