"""``ipy-rustasync``: the housekeeping verbs (vendor crates, warm the build, the cache,
the settings). stdlib argparse: a handful of subcommands does not need more."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from ipy_rustasync._base.errors import RustAsyncUsageError, RustCompileError
from ipy_rustasync._base.version import __version__
from ipy_rustasync._pipeline import cells
from ipy_rustasync._presentation.progress import Progress
from ipy_rustasync._settings import config, toolchain
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import crate, registry
from ipy_rustasync._sources.deps import Dep


def _human(n: object) -> str:
    size = float(n)  # type: ignore[arg-type]
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def cmd_vendor(args: argparse.Namespace) -> int:
    deps = [Dep.parse(text) for text in args.dep]
    seed = None
    if args.lock:
        from ipy_rustasync._sources import cargolock, lockfile

        path = lockfile.choose(str(args.lock), {})
        assert path is not None
        pinned = lockfile.read(path)
        if not pinned.packages:
            raise RustAsyncUsageError(f"the lock file {path} pins no crates (it is missing or empty)")
        deps += cargolock.as_deps(pinned)
        seed = cargolock.render(cargolock.seed(lockfile.base(), pinned))
    registry.vendor(Path(args.directory), deps, seed_lock=seed)
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    context = Context.load()
    profiles = [False, True] if args.both else [context.release(args.release or None)]
    for release in profiles:
        progress = Progress(in_kernel=False)
        result = cells.warm(release, watcher=progress, context=context)
        name = "release" if release else "debug"
        how = "already built" if result.cached else f"built in {result.seconds:.1f} s"
        progress.finish(f"ipy-rustasync warm ({name}): dependencies {how} in {context.target}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    cache = Context.load().cache
    if args.action == "clear":
        cache.clear(keep_target=not args.all)
        print(
            f"cleared {'everything' if args.all else 'modules and crates (kept the dependency build)'} in {cache.root}"
        )
        return 0
    info = cache.info()
    print(f"cache:   {info['root']}")
    print(f"modules: {info['modules']} ({_human(info['modules_bytes'])})")
    print(f"crates:  {_human(info['crates_bytes'])}")
    print(f"target:  {_human(info['target_bytes'])} (the shared dependency build)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Every FILE's cells (a .rs file is one cell) as one standalone maturin project."""
    from ipy_rustasync._pipeline import export
    from ipy_rustasync._sources import lockfile

    chosen = None if args.lock in (None, "off") else Path(args.lock).expanduser().resolve()
    sources: list[export.Source] = []
    for text in args.files:
        path = Path(text).expanduser().resolve()
        if path.suffix == ".ipynb":
            # like running the notebook in Jupyter: its own sidecar pins the crates (and learns new ones)
            lock = chosen if args.lock else lockfile.sidecar_for(path)
            sources += [dataclasses.replace(s, lock=lock) for s in export.notebook_cells(path)]
        elif path.suffix == ".rs" and path.is_file():
            sources.append(export.Source(path.read_text(encoding="utf-8"), origin=path.name, lock=chosen))
        else:
            raise RustAsyncUsageError(f"{text}: give a .rs file or a notebook (.ipynb)")
    print(f"building {len(sources)} cell{'s' * (len(sources) != 1)} (cached ones load at once)...", file=sys.stderr)
    project = export.export(Path(args.directory), sources, name=args.name)
    print(project.summary())
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    from ipy_rustasync._front import kernelspec

    prefix = sys.prefix if args.sys_prefix else args.prefix
    where = kernelspec.install(user=args.user, prefix=prefix, name=args.name)
    print(f'installed the kernel {args.name!r} ("{kernelspec.spec()["display_name"]}") in {where}')
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.name is not None and args.value is not None:
        config.write_setting(args.name, None if args.value == "" else args.value)
    settings = Context.load().settings
    print(f"config file:    {config.config_path()}")
    print(f"cache_dir:      {settings.cache_dir}")
    print(f"offline_crates: {settings.offline_crates or '(none: crates.io)'}")
    print(f"release:        {str(settings.release).lower()}")
    print(f"nest:           {str(settings.nest).lower()}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    release = toolchain.check()
    print(f"rustc {release}; cargo {toolchain.cargo()}")
    print(f"rust crates: {crate.rust_dir()}")
    return cmd_config(argparse.Namespace(name=None, value=None))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ipy-rustasync", description="Housekeeping for the %%rust_async IPython magic.")
    p.add_argument("--version", action="version", version=f"ipy-rustasync {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser(
        "vendor", help="fill DIR with the crates cells need, for offline use (run where crates.io is reachable)"
    )
    v.add_argument("directory", metavar="DIR")
    v.add_argument(
        "--dep",
        action="append",
        default=[],
        metavar="NAME[FEATURES]@VERSION",
        help="an extra crate to include (repeatable)",
    )
    v.add_argument(
        "--lock",
        metavar="PATH",
        help="also the versions a notebook's lock file pins (the file, or the notebook .ipynb)",
    )
    v.set_defaults(func=cmd_vendor)

    w = sub.add_parser("warm", help="compile the shared dependencies now, so the first cell is fast")
    w.add_argument("--release", action="store_true", help="warm the release profile")
    w.add_argument("--both", action="store_true", help="warm debug and release (one dependency build serves both)")
    w.set_defaults(func=cmd_warm)

    c = sub.add_parser("cache", help="show or clear the build cache")
    c.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    c.add_argument("--all", action="store_true", help="with clear: also delete the dependency build")
    c.set_defaults(func=cmd_cache)

    e = sub.add_parser(
        "export", help="write .rs files or notebooks' %%%%rust_async cells to DIR as a standalone maturin project"
    )
    e.add_argument("directory", metavar="DIR")
    e.add_argument("files", metavar="FILE", nargs="+", help="a .rs file (one cell) or a notebook (all its cells)")
    e.add_argument("--name", help="the Python module's name (default: DIR's name)")
    e.add_argument(
        "--lock",
        metavar="PATH",
        help="a lock file pinning the extra crates, or off (default: each notebook's own; none for .rs files)",
    )
    e.set_defaults(func=cmd_export)

    k = sub.add_parser("kernel", help="install the 'Python 3 (Rust async)' kernelspec (the extension preloaded)")
    k.add_argument("action", choices=["install"])
    where = k.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help="into this environment (sys.prefix)")
    where.add_argument("--prefix", metavar="DIR", help="under DIR/share/jupyter")
    k.add_argument("--name", default="python3-rust-async", help="the kernel's name (default: %(default)s)")
    k.set_defaults(func=cmd_kernel)

    g = sub.add_parser("config", help="show settings, or set one: config NAME VALUE ('' removes it)")
    g.add_argument("name", nargs="?", choices=sorted(config.SETTINGS))
    g.add_argument("value", nargs="?")
    g.set_defaults(func=cmd_config)

    d = sub.add_parser("doctor", help="check the toolchain and show where things are")
    d.set_defaults(func=cmd_doctor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RustCompileError as err:
        print(err, file=sys.stderr)
        return 1
    except RustAsyncUsageError as err:
        print(f"ipy-rustasync: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
