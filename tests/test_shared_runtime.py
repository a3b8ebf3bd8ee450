"""One copy of the runtime crates and one tokio runtime per process (issue 14, its
first building block): cells link the shared runtime library (a Rust ``dylib`` of the
bridge, PyO3, tokio and futures, ``crate.runtime_manifest``) instead of each carrying
its own copy, and find it (and libstd) beside them through a ``RUNPATH`` of
``$ORIGIN``; an exported project stays a plain extension module."""

from __future__ import annotations

import json
import os

import pytest

from ipy_rustasync._pipeline import build
from ipy_rustasync._settings import platforms, toolchain
from ipy_rustasync._sources import crate

from .helpers import run_python

pytestmark = pytest.mark.skipif(not toolchain.shared_runtime(), reason="cells link their own runtime here")

CELLS = 20

#: Builds (or loads from the cache) CELLS cells, awaits each once, reports threads,
#: the runtime each cell sees, the bridge's coroutine type, sizes and what is mapped.
PROBE = """
import asyncio, json, os, sys
from ipy_rustasync import run
from ipy_rustasync._pipeline.cells import compile_cell

def threads():
    return len(os.listdir("/proc/self/task"))

n, tag = int(sys.argv[1]), sys.argv[2]
cell = (
    "pub async fn once() -> u64 {{ tokio::time::sleep(std::time::Duration::from_millis(1)).await; {k} }}\\n"
    "pub fn runtime_at() -> usize {{ std::sync::Arc::as_ptr(&ipy_rustasync::runtime().unwrap()) as usize }}\\n"
    "// {tag}\\n"
)
before = threads()
built = [compile_cell(cell.format(k=i, tag=tag)) for i in range(n)]
loaded = threads()
for i, c in enumerate(built):
    assert run(c.module.once()) == i
after = threads()
coroutines = [c.module.once() for c in built[:2]]
same_type = type(coroutines[0]) is type(coroutines[1])
for c in coroutines:
    c.close()
maps = open("/proc/self/maps").read().splitlines()
print(json.dumps({
    "before": before, "loaded": loaded, "after": after,
    "runtimes": len({c.module.runtime_at() for c in built}),
    "same_coroutine_type": same_type,
    "cached": [c.build.cached for c in built],
    "sizes": [c.build.path.stat().st_size for c in built],
    "mapped": sorted({line.split()[-1].rsplit("/", 1)[-1] for line in maps if "libira_rt_" in line or "libstd-" in line}),
}))
"""


def probe(tag: str) -> dict[str, object]:
    out = run_python(PROBE, str(CELLS), tag, timeout=1800, env={"IPY_RUSTASYNC_IDLE_SECONDS": "60"})
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_twenty_cells_share_one_runtime_and_its_threads() -> None:
    """20 cells awaited once leave at most cores + 2 runtime threads (the workers,
    the idle watcher): one tokio runtime, one bridge (one coroutine type), each
    module small; after a restart the cached modules load with no help (RUNPATH)."""
    tag = os.urandom(6).hex()
    first = probe(tag)
    cores = os.cpu_count() or 1
    assert first["runtimes"] == 1, first
    assert first["same_coroutine_type"] is True, first
    extra = int(first["after"]) - int(first["before"])  # type: ignore[call-overload]
    assert extra <= cores + 2, first
    sizes = first["sizes"]
    assert isinstance(sizes, list) and max(sizes) < 400_000, sizes  # each cell ~0.09 MB (2.06 MB with a copy)
    mapped = first["mapped"]
    assert isinstance(mapped, list)
    assert sum(m.startswith("libira_rt_") for m in mapped) == 1, mapped
    assert sum(m.startswith("libstd-") for m in mapped) == 1, mapped

    again = probe(tag)  # a kernel restart: every module from the cache
    assert again["cached"] == [True] * CELLS, again
    assert again["runtimes"] == 1 and int(again["after"]) - int(again["before"]) <= cores + 2, again  # type: ignore[call-overload]


def test_the_runtime_library_and_libstd_sit_beside_the_modules() -> None:
    from ipy_rustasync._pipeline.cells import compile_cell
    from ipy_rustasync._settings.context import Context

    compiled = compile_cell("pub fn beside() -> u8 { 1 }\n")
    spec = compiled.spec
    assert spec.runtime is not None and spec.runtime.startswith(crate.RUNTIME_PREFIX)
    cache = Context.load().cache
    filename = build.runtime_filename(spec.runtime)
    assert cache.trusted_library(filename)
    needs = (cache.modules / f"{filename}.needs").read_text().split()
    assert len(needs) == 1 and needs[0].startswith("libstd-"), needs
    assert compiled.build.path.parent == cache.library_path(filename).parent


def test_a_damaged_runtime_library_is_rebuilt_not_loaded() -> None:
    """Checked like a module: a cached module whose runtime library no longer matches
    its checksum is built again (in a fresh process: a loaded library is what runs)."""
    code = """
    import sys, warnings
    from ipy_rustasync._pipeline import build
    from ipy_rustasync._pipeline.cells import compile_cell
    from ipy_rustasync._settings.context import Context
    source = "pub fn damaged_runtime() -> u8 { 7 }\\n// " + sys.argv[1] + "\\n"
    first = compile_cell(source)
    lib = Context.load().cache.library_path(build.runtime_filename(first.spec.runtime))
    data = lib.read_bytes()
    build._RUNTIMES_READY.clear()
    damaged = lib.with_name("damaged.tmp")  # replaced, not written over: this process has it mapped
    damaged.write_bytes(data[: len(data) // 2])
    damaged.replace(lib)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = compile_cell(source)
    print(again.build.cached, lib.stat().st_size == len(data), again.module.damaged_runtime())
    """
    out = run_python(code, os.urandom(6).hex(), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "True", "7"], out.stdout


def test_an_exported_project_links_its_own_copy() -> None:
    """``--export`` writes a plain extension module: no runtime crate, no extern crate."""
    spec = crate.CellSpec(source="pub fn f() -> u8 { 1 }\n")
    assert spec.runtime is not None
    assert crate.RUNTIME_PREFIX not in crate.manifest(spec, name="exported", bridge="rust/bridge")
    assert "extern crate" not in crate.lib_rs(spec, module="exported")
    assert f"extern crate {spec.runtime};" in crate.lib_rs(spec, runtime=spec.runtime)


def test_turned_off_a_cell_links_its_own_copy() -> None:
    assert not platforms.shared_runtime(environ={"IPY_RUSTASYNC_SHARED_RUNTIME": "0"})
    assert not platforms.shared_runtime("darwin", environ={})
    assert platforms.shared_runtime("linux", environ={})
    spec = crate.CellSpec(source="pub fn f() -> u8 { 1 }\n", shared_runtime=False)
    assert spec.runtime is None
    assert spec.module != crate.CellSpec(source=spec.source, shared_runtime=True).module


#: A cell built as if the toolchain had no libstd shared library (Debian's packaged
#: rustc ships only the .rlib): it must build and run with its own copy, not fail.
NO_LIBSTD = """
import json, uuid
from ipy_rustasync._settings import toolchain
toolchain.shared_libstd = lambda: []
from ipy_rustasync._pipeline.cells import compile_cell
c = compile_cell(f"pub fn own_copy() -> u8 {{ 9 }}\\n// {uuid.uuid4().hex}\\n")
needed = open(c.build.path, "rb").read().count(b"libira_rt_")
try:
    compile_cell("pub fn f() {}\\n", name="no_libstd")
    said = ""
except Exception as err:
    said = str(err)
print(json.dumps({"value": c.module.own_copy(), "runtime": c.spec.runtime, "needed": needed, "said": said}))
"""


def test_a_toolchain_without_a_libstd_shared_library_builds_a_copy_per_cell() -> None:
    done = run_python(NO_LIBSTD)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["value"] == 9 and report["runtime"] is None and report["needed"] == 0
    assert "a Rust toolchain that ships libstd as a shared library" in report["said"]
