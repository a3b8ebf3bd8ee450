"""A cell, or a notebook's cells, as a standalone maturin project.

``%%rust_async --export DIR`` and ``ipy-rustasync export DIR FILE...`` write::

    DIR/pyproject.toml         build-backend maturin, [tool.maturin] module-name
    DIR/Cargo.toml             the cell crate's manifest: the same dependencies (--dep and
                               ```cargo ones included) and the same profiles
    DIR/Cargo.lock             the versions the cells were built with (their crates' locks)
    DIR/src/lib.rs             the cell wrapped as the magic wraps it; several cells as one module
                               (``src/rust_module.rs`` for one .rs file's source: crate.CELL_FILES)
    DIR/rust/bridge, rust/macros   the ipy-rustasync crates, copied: path dependencies
    DIR/tests/test_<name>.py   imports the module, checks every export, awaits each
                               async function that takes no arguments
    DIR/README.md, .gitignore

The project never points back into site-packages or a checkout: it builds with plain
``maturin build`` (or ``pip install DIR``) anywhere with a Rust toolchain. Its
manifest comes from ``crate.manifest``, so it differs from a cell crate only in the
package name, the bridge path, a workspace exclusion and its own crate's incremental
compilation (cargo's default here; a cell crate turns it off for itself alone): with the
same ``CARGO_TARGET_DIR``, maturin reuses what cells linking their own copy of the
runtime crates and earlier exports compiled (cells on the shared runtime build with
``-C prefer-dynamic`` in ``target-dylib/``, whose artifacts a plain extension cannot use,
so a first export builds PyO3, tokio and the bridge once).

Every cell is built (or found in the cache) first, exactly as the magic builds it: an
export is only written for code that compiles, its Cargo.lock is what those builds
resolved, and the list of exports its test checks is the one the built module reports.

Several cells become one module in which each cell keeps its own Rust module
(``cell_1``, ``cell_2``, ...), as each had its own in the kernel, so two cells may both
``use`` the same names. Each is expanded by the exporter as usual; one ``#[pymodule]``
calls every cell's registration in notebook order, so a later cell's function replaces an
earlier one of the same name, as rebinding it in the notebook did (``cell_macro.py``
writes that module: it is where the exporter macro's names are known).
"""

from __future__ import annotations

import argparse
import inspect
import json
import keyword
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ipy_rustasync._base import atomic
from ipy_rustasync._base.errors import RustAsyncUsageError, RustCompileError
from ipy_rustasync._pipeline import cells
from ipy_rustasync._pipeline import export_templates as templates
from ipy_rustasync._settings.cache import Cache
from ipy_rustasync._settings.context import Context
from ipy_rustasync._sources import cargolock, cell_macro, crate, deps

#: Where the ipy-rustasync crates go inside the project.
RUST = "rust"


@dataclass
class Source:
    """One cell to export: its Rust text and its ``--dep`` flags."""

    text: str
    flags: Sequence[str] = ()
    #: where it came from, for messages ("analysis.ipynb cell 3")
    origin: str = "the cell"
    #: the lock sidecar its build pins crates with (lockfile.py), if any
    lock: Path | None = None
    #: the editor's line of ``text``'s first line: 2 for a ``%%rust_async`` cell's
    #: body, 1 for a .rs file (cells.compile_cell)
    first_line: int = 1


@dataclass
class Project:
    name: str
    directory: Path
    exports: list[tuple[str, str]] = field(default_factory=list)
    cells: int = 1

    def summary(self) -> str:
        what = f"{self.cells} cells" if self.cells != 1 else "1 cell"
        return (
            f"exported {what} as the module {self.name} ({len(self.exports)} exports) to {self.directory}; "
            f"build it there with `maturin build` or `pip install {self.directory}`"
        )


def module_name(name: str | None, directory: Path, taken: Sequence[deps.Dep] = ()) -> str:
    """The Python module's (and crate's) name: ``name``, else the directory's, with
    ``-``, ``.`` and spaces made ``_``. It must be importable and clash with nothing
    the project depends on."""
    text = name if name is not None else re.sub(r"[-. ]", "_", directory.name)
    hint = "" if name is not None else " (choose one with --name)"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", text) or keyword.iskeyword(text):
        raise RustAsyncUsageError(f"{text!r} cannot be a Python module name{hint}")
    clashes = {deps.normalize(n) for n in deps.RESERVED} | {deps.normalize(d.name) for d in taken}
    if deps.normalize(text) in clashes or text in sys.stdlib_module_names:
        raise RustAsyncUsageError(f"the module name {text!r} is taken by a crate or a Python module it needs{hint}")
    return text


def notebook_cells(path: Path) -> list[Source]:
    """The ``%%rust_async`` cells of a notebook, with the ``--dep`` flags of their
    first lines (the other flags do not change what is exported)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RustAsyncUsageError(f"cannot read the notebook {path}: {err}") from None
    found = []
    for number, cell in enumerate(data.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        first, _, body = text.partition("\n")
        if first.split(maxsplit=1)[:1] != ["%%rust_async"]:
            continue
        if body and not body.endswith("\n"):
            body += "\n"  # IPython hands a cell magic its body with the newline, so the hash matches
        flags = _dep_flags(first[len("%%rust_async") :], path, number)
        found.append(Source(body, flags, f"{path.name} cell {number}", first_line=2))
    if not found:
        raise RustAsyncUsageError(f"the notebook {path} has no %%rust_async cells")
    return found


def _dep_flags(line: str, path: Path, number: int) -> list[str]:
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--dep", action="append", default=[])
    try:
        known, _ = parser.parse_known_args(shlex.split(line))
    except (ValueError, argparse.ArgumentError) as err:
        raise RustAsyncUsageError(f"{path.name} cell {number}: cannot read the %%rust_async flags ({err})") from None
    return list(known.dep)


def export(
    directory: Path, sources: Sequence[Source], *, name: str | None = None, context: Context | None = None
) -> Project:
    """Builds every source as a cell (cached ones load at once) and writes the project.
    ``context`` is the caller's settings and cache (read now if not given)."""
    if not sources:
        raise RustAsyncUsageError("nothing to export: give a .rs file or a notebook with %%rust_async cells")
    directory = directory.expanduser().resolve()
    _check_directory(directory)
    context = context or Context.load()
    built: list[tuple[Source, cells.Compiled, cargolock.Lock]] = []
    for source in sources:
        try:
            compiled = cells.compile_cell(
                source.text, deps=source.flags, lock=source.lock, context=context, first_line=source.first_line
            )
            lock = _crate_lock(compiled, context.cache)
            if lock is None:  # built long ago, its crate since removed: build again for the lock
                compiled = cells.compile_cell(
                    source.text,
                    deps=source.flags,
                    lock=source.lock,
                    force=True,
                    context=context,
                    first_line=source.first_line,
                )
                lock = _crate_lock(compiled, context.cache)
        except RustCompileError as err:
            if source.origin == Source.origin:
                raise
            raise RustCompileError(
                f"{source.origin}: {err.headline}", err.diagnostics, texts=err.texts, htmls=err.htmls
            ) from None
        except RustAsyncUsageError as err:
            if source.origin == Source.origin:
                raise
            raise RustAsyncUsageError(f"{source.origin}: {err}") from None
        assert lock is not None
        built.append((source, compiled, lock))
    wanted = deps.combine(*((src.origin, c.spec.deps) for src, c, _ in built))
    name = module_name(name, directory, wanted)

    exports: dict[str, tuple[str, bool]] = {}  # name -> (kind, awaitable without arguments)
    for _, compiled, _ in built:
        for e in compiled.exports:
            exports.pop(e.name, None)  # a later cell's name replaces an earlier one
            exports[e.name] = (e.kind, e.kind == "async" and _takes_no_arguments(getattr(compiled.module, e.name)))

    spec = crate.CellSpec(source="", deps=wanted)
    lib_path, lib_text = _lib_rs(name, [(src, c) for src, c, _ in built])
    files: dict[str, str] = {
        "pyproject.toml": templates.pyproject(name, _origins(sources)),
        "Cargo.toml": crate.manifest(
            spec,
            name=name,
            bridge=f"{RUST}/bridge",
            exclude=[RUST],
            header=f"# Generated by ipy-rustasync export. Profiles as in the notebook's cell crates (see {RUST}/).",
            incremental=True,  # a normal crate, rebuilt in place: cargo's default (a cell crate turns it off)
            lib_path=lib_path,
        ),
        "Cargo.lock": cargolock.render(_project_lock(name, built)),
        lib_path: lib_text,
        f"tests/test_{name}.py": templates.generated_test(name, exports),
        "README.md": templates.readme(name, _origins(sources), exports),
        ".gitignore": "/target\n*.so\n*.pyd\n__pycache__/\n",
    }
    for sub in ("bridge", "macros"):
        root = crate.rust_dir() / sub
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if rel.parts[0] != "target" and path.is_file() and path.suffix in {".rs", ".toml"}:
                files[f"{RUST}/{sub}/{rel.as_posix()}"] = path.read_text(encoding="utf-8")
    for relative, text in files.items():
        _write(directory / relative, text)
    return Project(name, directory, [(n, kind) for n, (kind, _) in exports.items()], len(built))


def _check_directory(directory: Path) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise RustAsyncUsageError(f"{directory} is a file; export into a new or empty directory")
    pyproject = directory / "pyproject.toml"
    earlier = pyproject.is_file() and pyproject.read_text(encoding="utf-8").startswith(templates.MARKER)
    if any(directory.iterdir()) and not earlier:
        raise RustAsyncUsageError(
            f"{directory} is not empty and holds no earlier export; export into a new or empty directory"
        )


def _crate_lock(compiled: cells.Compiled, cache: Cache) -> cargolock.Lock | None:
    """What the cell's own build resolved (its crate's Cargo.lock, with its root package)."""
    path = cache.crate_lock(compiled.spec.module)
    if not path.is_file():
        return None
    lock = cargolock.parse(path.read_text(encoding="utf-8"), str(path))
    return lock if any(p.name == compiled.spec.module for p in lock.packages) else None


def _project_lock(name: str, built: Sequence[tuple[Source, cells.Compiled, cargolock.Lock]]) -> cargolock.Lock:
    """The cells' resolved locks as one (one version per compatible range, the newest,
    as cargo would resolve them together), its root package renamed to the project."""
    roots = {c.spec.module for _, c, _ in built}
    # The project links its own copy of the bridge: no cell's shared runtime crate.
    runtime = crate.RUNTIME_PREFIX
    merged = cargolock.Lock(version=built[0][2].version)
    root_deps: dict[str, str] = {}
    for _, _, lock in built:
        for package in lock.packages:
            if package.name in roots:
                root_deps.update(
                    {ref.split(" ")[0]: ref for ref in package.dependencies if not ref.startswith(runtime)}
                )
        merged = cargolock.merge(
            merged, [p for p in lock.packages if p.name not in roots and not p.name.startswith(runtime)]
        )
    root = cargolock.Package(name, "0.1.0", dependencies=tuple(sorted(root_deps.values())))
    return cargolock.Lock([*merged.packages, root], merged.version)


def _takes_no_arguments(func: object) -> bool:
    try:
        return not inspect.signature(func).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _lib_rs(name: str, built: Sequence[tuple[Source, cells.Compiled]]) -> tuple[str, str]:
    """The crate's root file and its text: one cell as the magic wraps it (its module
    named ``name``, in the file whose name tells the bridge its line offset:
    crate.CELL_FILES), or several as one module in ``src/lib.rs``, composed the way the
    exporter macro allows (cell_macro.py)."""
    if len(built) == 1:
        spec = built[0][1].spec
        return crate.CELL_FILES[spec.line_offset], crate.lib_rs(spec, module=name)
    return "src/lib.rs", cell_macro.notebook_lib_rs(name, [(source.origin, source.text) for source, _ in built])


def _origins(sources: Sequence[Source]) -> str:
    names = list(dict.fromkeys(s.origin.split(" cell ")[0] for s in sources))
    return ", ".join(names)


def _write(path: Path, text: str) -> None:
    """Writes ``path`` unless it already holds ``text``: untouched files keep their
    mtimes, so cargo (which fingerprints path crates by mtime) rebuilds nothing."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write(path, text)
