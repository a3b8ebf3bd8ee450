"""The ``%%rust_async`` cell magic and the ``%rust_async`` line magic.

Flags are parsed by IPython's ``magic_arguments`` (argparse underneath), so a wrong
flag is an IPython ``UsageError`` line, not a traceback.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ipy_rustasync import cells, config, diagnostics, export, loader, lockfile, loops
from ipy_rustasync.cache import Cache
from ipy_rustasync.errors import RustAsyncUsageError, RustCompileError
from ipy_rustasync.progress import Progress


@dataclass
class LoadedCell:
    module: str
    names: list[str]
    cached: bool
    seconds: float


def _describe(exports: list[loader.Export]) -> str:
    return ", ".join(f"{e.name} ({e.kind})" if e.kind in ("async", "stream") else e.name for e in exports)


@magics_class
class RustAsyncMagics(Magics):
    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.binder = loader.Binder()
        self.loaded: list[LoadedCell] = []
        #: the notebook cell being run (ipykernel and nbclient give cell ids), so a
        #: rebuilt cell's dropped functions can be unbound
        self.cell_id: str | None = None
        shell.events.register("pre_run_cell", self._pre_run_cell)
        #: the ``warm_on_load`` background build, if the setting started one
        self.background_warm: cells.BackgroundWarm | None = None
        #: ``%rust_async --lock``: "auto" (the notebook's sidecar), "off", or a path
        self.lock_choice = "auto"

    def _pre_run_cell(self, info: object) -> None:
        self.cell_id = getattr(info, "cell_id", None)

    @magic_arguments()
    @argument("--release", action="store_true", help="cell: build optimized (default from the `release` setting)")
    @argument("--debug", action="store_true", help="cell: build unoptimized even if `release` is set")
    @argument("--force", action="store_true", help="cell: rebuild even if a cached module exists")
    @argument(
        "--dep",
        action="append",
        default=[],
        metavar="NAME[FEATURES]@VERSION",
        help="cell: an extra crate, e.g. itoa@1 or serde[derive]@1 (repeatable)",
    )
    @argument("--export", metavar="DIR", help="cell: also write the cell to DIR as a standalone maturin project")
    @argument(
        "--lock",
        metavar="PATH",
        help="line: the lock file pinning extra crates: auto (next to the notebook), off, a .ipynb or a file",
    )
    @argument(
        "--offline-crates", metavar="DIR", help="line: build from this vendored crate directory, offline (remembered)"
    )
    @argument("--online", action="store_true", help="line: go back to crates.io (remembered)")
    @argument(
        "--nest",
        action="store_true",
        help="line: let asyncio.run() nest inside this kernel's running loop (nest-asyncio2; this kernel only)",
    )
    @argument("--no-nest", action="store_true", help="line: turn off the saved `nest` default for future kernels")
    @argument("--warm", action="store_true", help="line: build the shared dependencies now (quick if already built)")
    @argument(
        "--clear-cache",
        action="store_true",
        help="line: delete built modules and generated crates (keeps the dependency build)",
    )
    @line_cell_magic
    def rust_async(self, line: str, cell: str | None = None) -> None:
        """Compile a cell of async Rust and bind its ``pub fn``s here.

        As a cell magic (``%%rust_async``) the cell's Rust source is built into an
        extension module; each ``pub async fn`` becomes a function returning an
        awaitable, each ``pub fn`` a plain function. As a line magic it shows or
        changes the settings.
        """
        args = parse_argstring(self.rust_async, line)
        if cell is None:
            self._line(args)
        else:
            self._cell(args, cell)

    # --- %%rust_async ------------------------------------------------------------

    def _cell(self, args: argparse.Namespace, source: str) -> None:
        if (
            getattr(args, "offline_crates", None)
            or getattr(args, "online", False)
            or getattr(args, "clear_cache", False)
            or getattr(args, "nest", False)
            or getattr(args, "no_nest", False)
            or getattr(args, "warm", False)
            or getattr(args, "lock", None)
        ):
            raise UsageError(
                "--offline-crates, --online, --nest, --no-nest, --warm, --lock and --clear-cache are line-magic options: use them as `%rust_async ...` on a line of their own"
            )
        start = time.perf_counter()
        progress = Progress(in_kernel=self._in_kernel())
        try:
            compiled = cells.compile_cell(
                source,
                release=False if args.debug else (True if args.release else None),
                deps=args.dep,
                force=args.force,
                watcher=progress,
                lock=self._lock(),
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
        binding = self.binder.bind(compiled.module, self.shell.user_ns, self.cell_id)
        exports, result = compiled.exports, compiled.build
        elapsed = time.perf_counter() - start
        self.loaded.append(LoadedCell(result.module, [e.name for e in exports], result.cached, elapsed))
        how = "cached" if result.cached else f"built in {elapsed:.2f} s"
        if result.warnings:
            how += f", {len(result.warnings)} warning{'s' * (len(result.warnings) != 1)}"
        progress.finish(f"rust_async: {how}: {_describe(exports)}{binding.summary()}")
        self._show_warnings(result.warnings)
        if args.export:
            project = export.export(Path(args.export), [export.Source(source, args.dep, lock=self._lock())])
            print(f"rust_async: {project.summary()}")

    def _show_warnings(self, warnings: list[diagnostics.Diagnostic]) -> None:
        """Folded: in a notebook one collapsed block with the count (rustc's full text
        inside); in a terminal one line per warning."""
        if not warnings:
            return
        if self._in_kernel():
            from IPython.display import display

            plain = "\n\n".join(w.rendered for w in warnings)
            count = f"{len(warnings)} warning{'s' * (len(warnings) != 1)}"
            folded = f"<details><summary>rust_async: {count}</summary>{''.join(w.html() for w in warnings)}</details>"
            display({"text/html": folded, "text/plain": plain}, raw=True)
            return
        for w in warnings:
            where = f" (cell line {w.line})" if w.line else ""
            print(f"rust_async: warning: {w.message}{where}")

    def _in_kernel(self) -> bool:
        return "ipykernel" in type(self.shell).__module__

    # --- %rust_async ---------------------------------------------------------------

    def _line(self, args: argparse.Namespace) -> None:
        for flag in ("release", "debug", "force"):
            if getattr(args, flag):
                raise UsageError(
                    f"--{flag} applies to a %%rust_async cell; for the default use `ipy-rustasync config release true`"
                )
        if args.dep or args.export:
            raise UsageError("--dep and --export apply to a %%rust_async cell")
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
            if config.Settings.load().nest:
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
                result = cells.warm(watcher=progress)
            except BaseException:
                progress.clear()
                raise
            how = "already built" if result.cached else f"built in {result.seconds:.1f} s"
            progress.finish(f"rust_async: dependencies {how}")
            return
        elif args.clear_cache:
            settings = config.Settings.load()
            Cache.open(settings.cache_dir).clear(keep_target=True)
            print(f"rust_async: cleared built modules and crates in {settings.cache_dir}")
        elif args.lock:
            self.lock_choice = (
                args.lock if args.lock in ("auto", "off") else str(Path(args.lock).expanduser().resolve())
            )
        self._show()

    def _lock(self) -> Path | None:
        """The lock sidecar cells pin their extra crates with (lockfile.choose)."""
        assert self.shell is not None
        return lockfile.choose(self.lock_choice, self.shell.user_ns)

    def _show(self) -> None:
        settings = config.Settings.load()
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
                print(f"  {cell.module}: {', '.join(cell.names)}")
