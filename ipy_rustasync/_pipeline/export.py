"""A cell, or a notebook's cells, as a standalone maturin project.

``%%rust_async --export DIR`` and ``ipy-rustasync export DIR FILE...`` write::

    DIR/pyproject.toml         build-backend maturin, [tool.maturin] module-name
    DIR/Cargo.toml             the cell crate's manifest: the same dependencies (--dep and
                               ```cargo ones included) and the same profiles
    DIR/Cargo.lock             the versions the cells were built with (their crates' locks)
    DIR/src/lib.rs             the cell wrapped as the magic wraps it; several cells as one module
                               (``src/rust_module.rs`` for one .rs file's source: crate.CELL_FILES)
    DIR/crates/<cell>/         each named cell (``--name``): a crate of the project's workspace
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

A named cell (``--name orders``) is a crate of its own, ``crates/orders``: an ``rlib``
whose crate name is the cell's name, holding the cell as the kernel built it (its items
re-exported at the crate root), so ``use orders::X``, ``orders::f()`` and its own
``crate::`` paths compile unchanged. The root crate (the extension module) and the named
cells that use it depend on it by path, in one Cargo workspace and one Cargo.lock (where
it is a path package). It is statically linked into the one extension module: its
statics and ``#[pyclass]`` types exist once. In Python it is the submodule
``<module>.orders`` (also in ``sys.modules``), registered once, and its exports are
copied onto ``<module>`` itself in notebook order, the same objects, so ``<module>``
holds the notebook's namespace and an object one cell makes is accepted by another.

Running a ``--name`` again replaced the cell in the kernel; the project keeps only the
last definition of each name, at its own place among the cells (so its exports replace
those of the cells before it, as in the notebook). The cells are first built in notebook
order, each against the named cells run before it, as the kernel built them (so cached
builds are found, and a cell fails where it failed there); then every cell that was
built against an earlier definition is built again against the last one (and whatever
uses a cell rebuilt so), since the project builds everything against the last one.
Named cells whose last versions use each other cannot be crates and are refused.
"""

from __future__ import annotations

import argparse
import inspect
import json
import keyword
import re
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
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
#: Where the named cells' crates go inside the project.
CRATES = "crates"
#: The crates the root crate always depends on (with the bridge).
SHARED = frozenset({*deps.SHARED_DEPS, "ipy-rustasync"})


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
    #: ``--name``: a named cell, its own crate in the project and its own submodule
    name: str | None = None


@dataclass
class Built:
    """A source as built for the export, and what its build resolved."""

    source: Source
    compiled: cells.Compiled
    lock: cargolock.Lock
    #: its place among the sources (notebook order)
    position: int


@dataclass
class Project:
    name: str
    directory: Path
    exports: list[tuple[str, str]] = field(default_factory=list)
    cells: int = 1
    #: the named cells, each a crate under ``crates/`` and the submodule ``name.<cell>``
    named: list[str] = field(default_factory=list)

    def summary(self) -> str:
        what = f"{self.cells} cells" if self.cells != 1 else "1 cell"
        subs = ", ".join(f"{self.name}.{n}" for n in self.named)
        named = f"; its named cells are the submodules {subs}" if self.named else ""
        return (
            f"exported {what} as the module {self.name} ({len(self.exports)} exports) to {self.directory}{named}; "
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
    """The ``%%rust_async`` cells of a notebook, with the ``--dep`` and ``--name``
    flags of their first lines (the other flags do not change what is exported)."""
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
        flags, name = _flags(first[len("%%rust_async") :], path, number)
        found.append(Source(body, flags, f"{path.name} cell {number}", first_line=2, name=name))
    if not found:
        raise RustAsyncUsageError(f"the notebook {path} has no %%rust_async cells")
    return found


def _flags(line: str, path: Path, number: int) -> tuple[list[str], str | None]:
    """A magic line's ``--dep`` flags and ``--name`` (the last one, as argparse takes it
    in the kernel)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--dep", action="append", default=[])
    parser.add_argument("--name")
    try:
        known, _ = parser.parse_known_args(shlex.split(line))
    except (ValueError, argparse.ArgumentError) as err:
        raise RustAsyncUsageError(f"{path.name} cell {number}: cannot read the %%rust_async flags ({err})") from None
    return list(known.dep), known.name


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
    # As the kernel ran them: each cell against the named cells run before it, so these
    # are the kernel's builds (found in the cache) and a cell fails here where it failed there.
    built: list[Built] = []
    known: dict[str, crate.Upstream] = {}
    for position, source in enumerate(sources):
        built.append(_build(source, position, context, known))
        if source.name is not None:
            known[source.name] = built[-1].compiled.spec.as_upstream()
    first_run: dict[str, int] = {}
    for b in built:
        if b.source.name is not None:
            first_run.setdefault(b.source.name, b.position)
    kept = _against_final(_last_definitions(built), first_run, context)
    named = [b for b in kept if b.source.name is not None]
    unnamed = [b for b in kept if b.source.name is None]
    wanted = deps.combine(*((b.source.origin, b.compiled.spec.deps) for b in unnamed))
    everything = deps.combine(*((b.source.origin, b.compiled.spec.deps) for b in kept))
    crates = [deps.Dep(n) for n in (b.source.name for b in named) if n is not None]
    name = module_name(name, directory, [*everything, *crates])

    exports: dict[str, tuple[str, bool]] = {}  # name -> (kind, awaitable without arguments)
    owners: dict[str, str] = {}  # export -> the named cell whose object the module holds
    for b in kept:
        for e in b.compiled.exports:
            exports.pop(e.name, None)  # a later cell's name replaces an earlier one
            exports[e.name] = (e.kind, e.kind == "async" and _takes_no_arguments(getattr(b.compiled.module, e.name)))
            owners.pop(e.name, None)
            if b.source.name is not None:
                owners[e.name] = b.source.name
    submodules = {b.source.name: [(e.name, e.kind) for e in b.compiled.exports] for b in named if b.source.name}
    lock = _project_lock(name, kept)
    _check_named(submodules, exports, lock)

    spec = crate.CellSpec(source="", deps=wanted)
    lib_path, lib_text = _lib_rs(name, kept)
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
            paths={n: f"{CRATES}/{n}" for n in submodules},
        ),
        "Cargo.lock": cargolock.render(lock),
        lib_path: lib_text,
        f"tests/test_{name}.py": templates.generated_test(name, exports, submodules, owners),
        "README.md": templates.readme(name, _origins(sources), exports, list(submodules)),
        ".gitignore": "/target\n*.so\n*.pyd\n__pycache__/\n",
    }
    for b in named:
        files.update(_named_crate(name, b.compiled.spec))
    for sub in ("bridge", "macros"):
        root = crate.rust_dir() / sub
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if rel.parts[0] != "target" and path.is_file() and path.suffix in {".rs", ".toml"}:
                files[f"{RUST}/{sub}/{rel.as_posix()}"] = path.read_text(encoding="utf-8")
    for relative, text in files.items():
        _write(directory / relative, text)
    _remove_stale_crates(directory, submodules)
    return Project(name, directory, [(n, kind) for n, (kind, _) in exports.items()], len(kept), list(submodules))


def _build(source: Source, position: int, context: Context, known: Mapping[str, crate.Upstream]) -> Built:
    """Builds one source (or finds it in the cache) with what its build resolved; an
    error names the cell it came from."""
    try:
        compiled = _compile(source, context, known)
        lock = _crate_lock(compiled, context.cache)
        if lock is None:  # built long ago, its crate since removed: build again for the lock
            compiled = _compile(source, context, known, force=True)
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
    return Built(source, compiled, lock, position)


def _compile(
    source: Source, context: Context, known: Mapping[str, crate.Upstream], *, force: bool = False
) -> cells.Compiled:
    return cells.compile_cell(
        source.text,
        deps=source.flags,
        lock=source.lock,
        force=force,
        context=context,
        first_line=source.first_line,
        name=source.name,
        known=known,
    )


def _last_definitions(built: Sequence[Built]) -> list[Built]:
    """The cells the project holds: every unnamed cell, and of the cells run under one
    ``--name`` only the last (running the name again replaced the cell in the kernel),
    at its own place, so its exports replace those of the cells before it as they did."""
    last = {b.source.name: b.position for b in built if b.source.name is not None}
    return [b for b in built if b.source.name is None or last[b.source.name] == b.position]


def _against_final(kept: Sequence[Built], first_run: Mapping[str, int], context: Context) -> list[Built]:
    """The kept cells, each built against the last definition of every named cell it
    uses, as the project builds them (a named cell is one crate there).

    In the notebook a cell was built against the named cells as they were when it ran;
    a cell that ran before a named cell it uses was re-run with an edit is built again
    here against the edited one (so the project only holds code that compiles), and
    so is whatever uses a cell rebuilt so. A cell sees the names first run before it,
    as in the kernel (``first_run``: where each name was first run). Named cells that use each other (possible only through a re-run)
    cannot be two crates: that is refused."""
    final: dict[str, crate.Upstream] = {}
    done: dict[int, Built] = {}
    pending = list(kept)
    while pending:
        ready = []
        for b in pending:
            visible = [n for n, at in first_run.items() if at < b.position and n != b.source.name]
            used = crate.uses(b.source.text, visible)
            if all(n in final for n in used):
                ready.append((b, used))
        if not ready:
            cells_named = ", ".join(sorted({f"`{b.source.name}`" for b in pending if b.source.name}))
            raise RustAsyncUsageError(
                f"the last versions of the cells named {cells_named} use each other: an export makes each "
                "named cell a crate, and crates cannot depend on each other in a circle"
            )
        for b, used in ready:
            pending.remove(b)
            if tuple(final[n] for n in used) != b.compiled.spec.upstream:
                b = _build(b.source, b.position, context, {n: final[n] for n in used})
            if b.source.name is not None:
                final[b.source.name] = b.compiled.spec.as_upstream()
            done[b.position] = b
    return [done[b.position] for b in kept]


def _check_named(
    submodules: Mapping[str, Sequence[tuple[str, str]]],
    exports: Mapping[str, tuple[str, bool]],
    lock: cargolock.Lock,
) -> None:
    """A named cell's name is a crate of the project and an attribute of the module:
    it may be neither another crate's nor an export's."""
    packages = Counter(deps.normalize(p.name) for p in lock.packages)
    for cell in submodules:
        if cell in exports:
            raise RustAsyncUsageError(
                f"the cell named `{cell}` is the submodule `{cell}` of the exported module, and an export "
                f"is also named `{cell}`: rename one"
            )
        if packages[deps.normalize(cell)] > 1:
            raise RustAsyncUsageError(
                f"the cell named `{cell}` becomes the crate `{cell}`, and the project already depends on "
                f"a crate of that name: rename the cell"
            )


#: How a named crate's generated manifest starts (``_named_crate``): what a re-export may remove.
NAMED_HEADER = "# Generated by ipy-rustasync export: the cell named"


def _remove_stale_crates(directory: Path, keep: Collection[str]) -> None:
    """Removes the crates an earlier export wrote for named cells this one no longer
    has (a renamed cell): nothing else is there, and a leftover would look like part of
    the project. Only directories whose manifest this module wrote are touched."""
    root = directory / CRATES
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        manifest = path / "Cargo.toml"
        if path.name in keep or not manifest.is_file():
            continue
        if manifest.read_text(encoding="utf-8").startswith(NAMED_HEADER):
            shutil.rmtree(path)


def _named_crate(name: str, spec: crate.CellSpec) -> dict[str, str]:
    """A named cell's crate, ``crates/<cell>``: the cell as the kernel built it (its
    ``lib_rs``: the items re-exported at the crate root, the named cells it uses as
    ``extern crate``s), plus the public registration the root crate calls."""
    assert spec.name is not None
    where = f"{CRATES}/{spec.name}"
    manifest = crate.member_manifest(
        spec,
        bridge=f"../../{RUST}/bridge",
        paths={u.name: f"../{u.name}" for u in spec.upstream},
        header=f"{NAMED_HEADER} {spec.name}, a crate of the project.",
    )
    # Dotted: its classes' __module__ is the submodule (pickle finds them); its #[pymodule]
    # takes the name with `_` (rust/macros/src/lib.rs).
    lib = crate.lib_rs(spec, module=f"{name}.{spec.name}") + cell_macro.named_crate_tail()
    return {f"{where}/Cargo.toml": manifest, f"{where}/{crate.CELL_FILES[spec.line_offset]}": lib}


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


def _project_lock(name: str, built: Sequence[Built]) -> cargolock.Lock:
    """The cells' resolved locks as one (one version per compatible range, the newest,
    as cargo would resolve them together). The unnamed cells' root packages become the
    project's, ``name``; each named cell's its crate's (a path package named as the
    cell), depending on the named cells it uses, as the root depends on every one."""
    roots = {b.compiled.spec.module for b in built}
    # The project links its own copy of the bridge: no cell's shared runtime crate.
    runtime = crate.RUNTIME_PREFIX
    merged = cargolock.Lock(version=built[0].lock.version)
    root_deps: dict[str, str] = {}
    named: list[cargolock.Package] = []
    for b in built:
        spec = b.compiled.spec
        own = {}
        for package in b.lock.packages:
            if package.name == spec.module:
                own.update({ref.split(" ")[0]: ref for ref in package.dependencies if not ref.startswith(runtime)})
        if spec.name is None:
            root_deps.update(own)
        else:  # the root crate still has the bridge and the shared crates, and registers the cell
            root_deps.update({crate_name: ref for crate_name, ref in own.items() if crate_name in SHARED})
            root_deps[spec.name] = f"{spec.name} 0.1.0"
            own.update({u.name: f"{u.name} 0.1.0" for u in spec.upstream})
            named.append(cargolock.Package(spec.name, "0.1.0", dependencies=tuple(sorted(own.values()))))
        merged = cargolock.merge(
            merged, [p for p in b.lock.packages if p.name not in roots and not p.name.startswith(runtime)]
        )
    root = cargolock.Package(name, "0.1.0", dependencies=tuple(sorted(root_deps.values())))
    return cargolock.Lock([*merged.packages, *named, root], merged.version)


def _takes_no_arguments(func: object) -> bool:
    try:
        return not inspect.signature(func).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _lib_rs(name: str, built: Sequence[Built]) -> tuple[str, str]:
    """The root crate's file and its text: one unnamed cell as the magic wraps it (its
    module named ``name``, in the file whose name tells the bridge its line offset:
    crate.CELL_FILES), or several cells, or any named one, as one module in
    ``src/lib.rs``, composed the way the exporter macro allows (cell_macro.py): unnamed
    cells as its modules, named ones (crates of their own) as its submodules."""
    if len(built) == 1 and built[0].source.name is None:
        spec = built[0].compiled.spec
        return crate.CELL_FILES[spec.line_offset], crate.lib_rs(spec, module=name)
    parts = [cell_macro.Part(b.source.origin, b.source.text, b.source.name) for b in built]
    return "src/lib.rs", cell_macro.notebook_lib_rs(name, parts)


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
