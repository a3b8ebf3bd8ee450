"""Issue 14's dylib route, prototyped outside the package: named cells as Rust
``dylib``s over one shared runtime ``dylib``, against today's one-cdylib-per-cell.

    python benchmarks/cross_cell_probe.py [--cells N] [--repeat N] [--dir DIR] [--out FILE]

It writes a cargo workspace in a temporary directory (removed at exit; ``--dir DIR``
uses and keeps DIR instead, so a second run reuses its build), builds it with cargo (the package's cargo environment: ``build_env``),
loads the results into fresh Python processes and reports:

- ``shared_rt`` (used as ``rt``; not ``librt.so``, glibc's realtime library): a
  ``dylib`` holding pyo3 and tokio and one tokio ``Runtime`` in a ``OnceLock`` (a
  stand-in for the bridge: ``rt::run`` spawns a future on that runtime and waits for it
  with the GIL released);
- ``orders``: a named upstream cell as a ``dylib``: ``pub struct Order``, ``pub fn
  total``, ``pub static COUNTER: AtomicU64``, ``pub static LABEL: OnceLock<String>``,
  ``#[pyclass] Counter``, ``pub async fn fetch`` and a ``pub fn`` that panics;
- ``cell_00`` .. ``cell_NN`` (``--cells``, default 20): downstream cells as ``cdylib``
  extension modules that ``use orders::{Order, total, COUNTER, Counter}``, each adding
  ``Counter`` to its module and exporting functions that bump COUNTER, take a
  ``PyRef<Counter>``, await on the shared runtime, and call the panicking function.

Every crate is compiled with ``-C prefer-dynamic`` (``RUSTFLAGS``), as evcxr does:
without it each ``dylib`` links its own libstd and a crate using two of them does not
link ("cannot satisfy dependencies so `std` only shows up once"); and every crate
above ``rt`` says ``extern crate rt;``, or rustc would link pyo3 and tokio into it
statically again (an unused ``--extern`` is never loaded).

Checked in a fresh process: how the dynamic linker finds ``libstd-*.so``,
``libshared_rt.so`` and ``liborders.so`` (the modules' ``DT_NEEDED``/``RUNPATH``;
plain import, with the libraries preloaded by ``ctypes.CDLL`` with ``RTLD_LOCAL`` and
with ``RTLD_GLOBAL``, with ``LD_LIBRARY_PATH``, with a ``RUNPATH`` linked into the cell); whether COUNTER and
LABEL are one object across modules; whether a ``Counter`` made by one module is
accepted by another's function (same Python type); a panic raised in ``orders`` and
caught at a downstream module's boundary; threads after every cell module used the
runtime once. Measured: file sizes; a warm edit of a downstream cell (a constant
changed, ``cargo build`` of that cell, median of ``--repeat``) and the same rustc
command run directly (and its ``-Z time-passes`` split); an edit of the upstream
``orders`` (its rebuild, then every downstream cell's), and what an old downstream
module does against the rebuilt upstream.

Today's design is measured beside it through the package itself
(``IPY_RUSTASYNC_CACHE_DIR``, default ``.test-cache/bench-cache``): ``--cells``
one-off cells built and each awaited once in one fresh process (threads, module
sizes), and a warm edit of edit_compare.py's cell (``compile_cell``, as
edit_loop.py), next to the rustc command cargo ran for it, run directly.

Last, on two-crate examples without PyO3 (rustc directly): ``-C prefer-dynamic``
(libstd as a shared library) on neither, one or both crates, what the modules then
need at load time and where ``libstd-*.so`` is; and two builds of one named dylib
loaded into one process, as after an edit, with the same crate name (one SONAME) and
with a crate name per build.

Absolute times vary run to run on a shared machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edit_compare import CELL_CACHE, OURS_CELL
from edit_phases import grouped, rustc_line, without_incremental
from report import machine, publish, rustc_passes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PYO3 = '{ version = "=0.30.1", features = ["extension-module"] }'
TOKIO = '{ version = "=1.54.1", features = ["rt-multi-thread", "time", "sync", "macros"] }'

RT_LIB = """\
//! The shared runtime: pyo3 and tokio linked once, one tokio runtime per process.
pub use pyo3;
pub use tokio;
use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("rt-worker")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Stand-in for the bridge's await: runs `fut` on the shared runtime and waits for
/// it with the GIL released.
pub fn run<F>(py: pyo3::Python<'_>, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = runtime().spawn(fut);
    py.detach(|| runtime().block_on(handle)).expect("the task panicked")
}

pub fn runtime_addr() -> usize {
    runtime() as *const _ as usize
}
"""

ORDERS_LIB = """\
//! A named cell, `%%rust_async --name orders`.
extern crate rt; // pyo3 and tokio from the shared dylib, not linked in again
use pyo3::prelude::*;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

#[derive(Clone, Debug)]
pub struct Order {
    pub id: u64,
    pub cents: u64,
}

pub fn total(orders: &[Order]) -> u64 {
    orders.iter().map(|o| o.cents).sum::<u64>() + BONUS
}

pub const BONUS: u64 = __BONUS__;

pub static COUNTER: AtomicU64 = AtomicU64::new(0);
pub static LABEL: OnceLock<String> = OnceLock::new();

#[pyclass(module = "orders")]
pub struct Counter {
    #[pyo3(get)]
    pub n: u64,
}

#[pymethods]
impl Counter {
    #[new]
    pub fn new(n: u64) -> Self {
        Counter { n }
    }
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

pub async fn fetch(id: u64) -> Order {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    Order { id, cents: id * 100 }
}

pub fn explode() -> u64 {
    panic!("boom in orders")
}
"""

CELL_LIB = """\
//! A downstream cell using `orders` (an ordinary path, as issue 14 asks).
use orders::{total, Counter, Order, COUNTER, LABEL};
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

const K: u64 = __K__;

#[pyfunction]
fn k() -> u64 {
    K
}

#[pyfunction]
fn bump() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst) + 1
}

#[pyfunction]
fn counter_addr() -> usize {
    &COUNTER as *const _ as usize
}

#[pyfunction]
fn label(default: String) -> String {
    LABEL.get_or_init(|| default).clone()
}

#[pyfunction]
fn sum_orders(n: u64) -> u64 {
    total(&(1..=n).map(|i| Order { id: i, cents: 10 * i }).collect::<Vec<_>>())
}

#[pyfunction]
fn make_counter(n: u64) -> Counter {
    Counter::new(n)
}

#[pyfunction]
fn read_counter(c: PyRef<'_, Counter>) -> u64 {
    c.n
}

/// Awaits on the shared runtime: a tokio timer here and one in `orders`.
#[pyfunction]
fn await_once(py: Python<'_>) -> u64 {
    rt::run(py, async {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        orders::fetch(7).await.cents + K
    })
}

#[pyfunction]
fn runtime_addr() -> usize {
    rt::runtime_addr()
}

#[pyfunction]
fn upstream_panic() -> u64 {
    orders::explode()
}

#[pymodule]
fn __NAME__(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Counter>()?;
    m.add_function(wrap_pyfunction!(k, m)?)?;
    m.add_function(wrap_pyfunction!(bump, m)?)?;
    m.add_function(wrap_pyfunction!(counter_addr, m)?)?;
    m.add_function(wrap_pyfunction!(label, m)?)?;
    m.add_function(wrap_pyfunction!(sum_orders, m)?)?;
    m.add_function(wrap_pyfunction!(make_counter, m)?)?;
    m.add_function(wrap_pyfunction!(read_counter, m)?)?;
    m.add_function(wrap_pyfunction!(await_once, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_addr, m)?)?;
    m.add_function(wrap_pyfunction!(upstream_panic, m)?)?;
    Ok(())
}
"""

#: What a load check found (see CHECK).
Check = dict[str, Any]

#: Loads the downstream modules in a fresh process and reports what it sees (JSON).
CHECK = textwrap.dedent(
    """
    import ctypes, importlib.util, json, os, sys
    out, names, preload = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",") if sys.argv[3] else []
    scope = os.RTLD_GLOBAL if sys.argv[4] == "global" else os.RTLD_LOCAL
    report = {"threads_before": len(os.listdir("/proc/self/task"))}
    for lib in preload:
        ctypes.CDLL(lib, mode=os.RTLD_NOW | scope)
    mods = []
    try:
        for entry in names:  # a cell's name (in the target's debug/) or a path
            path = entry if "/" in entry else f"{out}/lib{entry}.so"
            name = path.rsplit("/lib", 1)[-1].removesuffix(".so")
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            mods.append(mod)
    except ImportError as err:
        report["import_error"] = str(err)
        print(json.dumps(report))
        sys.exit(0)
    a, b = mods[0], mods[1]
    def attempt(key, make):
        try:
            report[key] = make()
        except BaseException as err:
            report[key] = f"{type(err).__name__}: {err}"
    attempt("counter_addrs", lambda: sorted({m.counter_addr() for m in mods}))
    attempt("bumps", lambda: [a.bump(), b.bump(), a.bump()])
    attempt("label", lambda: [a.label("set by a"), b.label("set by b")])
    attempt("same_type", lambda: a.Counter is b.Counter)
    attempt("b_reads_a_counter", lambda: b.read_counter(a.make_counter(41)))
    attempt("a_reads_b_class_instance", lambda: a.read_counter(b.Counter(5)))
    attempt("sum_orders", lambda: a.sum_orders(4))
    attempt("panic", lambda: a.upstream_panic())
    report["threads_loaded"] = len(os.listdir("/proc/self/task"))
    report["awaited"] = [m.await_once() for m in mods]
    report["runtime_addrs"] = len({m.runtime_addr() for m in mods})
    report["threads_after"] = len(os.listdir("/proc/self/task"))
    report["thread_names"] = sorted(
        {open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")}
    )
    maps = open("/proc/self/maps").read()
    report["mapped"] = sorted({line.split()[-1] for line in maps.splitlines() if "/lib" in line and ".so" in line and out in line})
    print(json.dumps(report))
    """
)

#: Loads an old downstream module against a rebuilt upstream.
OLD_AGAINST_NEW = textwrap.dedent(
    """
    import importlib.util, json, sys
    path, name = sys.argv[1], sys.argv[2]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(json.dumps({"loaded": True, "k": mod.k(), "sum_orders": mod.sum_orders(4)}))
    except ImportError as err:
        print(json.dumps({"loaded": False, "error": str(err)}))
    """
)

#: Today's design: N one-off cells through the package, each awaited once.
TODAY_THREADS = textwrap.dedent(
    """
    import json, os, sys, uuid
    from ipy_rustasync import run
    from ipy_rustasync._pipeline.cells import compile_cell
    n = int(sys.argv[1])
    cell = "pub async fn once() -> u64 {{ tokio::time::sleep(std::time::Duration::from_millis(1)).await; {k} }}\\n"
    before = len(os.listdir("/proc/self/task"))
    built = [compile_cell(cell.format(k=i)) for i in range(n)]
    loaded = len(os.listdir("/proc/self/task"))
    for i, c in enumerate(built):
        assert run(c.module.once()) == i
    after = len(os.listdir("/proc/self/task"))
    sizes = [c.build.path.stat().st_size for c in built]
    print(json.dumps({"before": before, "loaded": loaded, "after": after, "sizes": sizes}))
    """
)


@dataclass
class Workspace:
    root: Path
    target: Path
    cells: list[str]
    env: dict[str, str]

    @property
    def out(self) -> Path:
        return self.target / "debug"

    def cargo(self, *args: str) -> float:
        start = time.perf_counter()
        done = subprocess.run(
            ["cargo", *args, "--target-dir", str(self.target), "--message-format", "short"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"cargo {' '.join(args)} failed:\n{done.stderr[-6000:]}")
        return elapsed

    def verbose_build(self, package: str) -> str:
        done = subprocess.run(
            ["cargo", "build", "--offline", "-p", package, "-v", "--target-dir", str(self.target)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stderr

    def check(
        self, names: list[str], preload: list[Path], extra_env: dict[str, str] | None = None, scope: str = "local"
    ) -> Check:
        """Loads the modules ``names`` (or paths) in a fresh process after ``preload``."""
        done = subprocess.run(
            [sys.executable, "-c", CHECK, str(self.out), ",".join(names), ",".join(map(str, preload)), scope],
            capture_output=True,
            text=True,
            env={**os.environ, **(extra_env or {})},
            check=False,
        )
        if done.returncode:
            return {"crashed": done.returncode, "stderr": done.stderr[-2000:]}
        result: Check = json.loads(done.stdout.strip().splitlines()[-1])
        return result


@dataclass
class Route:
    """What one shape of the workspace measured."""

    cold: float
    check: Check
    cell_size: int
    edits: list[float]
    noop: list[float]
    direct: list[float]
    direct_noinc: list[float]
    split: dict[str, float]
    edited: Check


def measure_route(ws: Workspace, preload: list[Path], repeat: int) -> Route:
    """Cold build, the checks, and warm edits of the first cell (a constant changed):
    ``cargo build -p``, cargo no-op, the rustc command run directly (with and without
    ``-C incremental``) and its ``-Z time-passes`` split."""
    cold = ws.cargo("build", "--offline")
    check = ws.check(ws.cells, preload)
    lib_a = ws.root / ws.cells[0] / "src" / "lib.rs"
    edits = []
    for i in range(repeat):
        set_constant(lib_a, "K", 1000 + i)
        edits.append(ws.cargo("build", "--offline", "-p", ws.cells[0]))
    noop = [ws.cargo("build", "--offline", "-p", ws.cells[0]) for _ in range(3)]
    lib_a.touch()
    line = rustc_line(ws.verbose_build(ws.cells[0]), ws.cells[0])
    direct: list[float] = []
    direct_noinc: list[float] = []
    for i in range(repeat):
        for into, words in ((direct, line), (direct_noinc, without_incremental(line))):
            set_constant(lib_a, "K", 2000 + len(into) + 10 * i)
            into.append(run_timed(words, ws.root, ws.env))
    set_constant(lib_a, "K", 3000)
    passed = subprocess.run(
        [*without_incremental(line), "-Z", "time-passes"],
        cwd=ws.root,
        env={**ws.env, "RUSTC_BOOTSTRAP": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    split = grouped(rustc_passes(passed.stderr + passed.stdout))
    edited = ws.check(ws.cells[:2], preload)
    size = (ws.out / f"lib{ws.cells[0]}.so").stat().st_size
    return Route(cold, check, size, edits, noop, direct, direct_noinc, split, edited)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def manifest(name: str, kind: str, deps: str) -> str:
    return f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[lib]\ncrate-type = ["{kind}"]\n\n[dependencies]\n{deps}'


def make_workspace(root: Path, n_cells: int, env: dict[str, str], kind: str) -> Workspace:
    """The crates, with ``shared_rt`` and ``orders`` as ``kind`` ("dylib", or "rlib":
    the same code linked into every cell statically, today's shape)."""
    cells = [f"cell_{i:02d}" for i in range(n_cells)]
    members = ["shared_rt", "orders", *cells, *(["notebook"] if kind == "rlib" else [])]
    write(
        root / "Cargo.toml",
        '[workspace]\nresolver = "2"\nmembers = [' + ", ".join(f'"{m}"' for m in members) + "]\n\n"
        # as the package's cells: dependencies optimized, the cells' own code not
        '[profile.dev]\ndebug = false\n\n[profile.dev.package."*"]\nopt-level = 3\n\n'
        # the runtime crate stands for the bridge, which today's cells get optimized
        "[profile.dev.package.shared_rt]\nopt-level = 3\n",
    )
    write(root / "shared_rt" / "Cargo.toml", manifest("shared_rt", kind, f"pyo3 = {PYO3}\ntokio = {TOKIO}\n"))
    write(root / "shared_rt" / "src" / "lib.rs", RT_LIB)
    up = f'rt = {{ path = "../shared_rt", package = "shared_rt" }}\npyo3 = {PYO3}\ntokio = {TOKIO}\n'
    write(root / "orders" / "Cargo.toml", manifest("orders", kind, up))
    write(root / "orders" / "src" / "lib.rs", ORDERS_LIB.replace("__BONUS__", "0"))
    down = up + 'orders = { path = "../orders" }\n'
    for i, name in enumerate(cells):
        write(root / name / "Cargo.toml", manifest(name, "cdylib", down))
        write(root / name / "src" / "lib.rs", CELL_LIB.replace("__NAME__", name).replace("__K__", str(i)))
    if kind == "rlib":
        write(root / "notebook" / "Cargo.toml", manifest("notebook", "cdylib", up))
        write(root / "notebook" / "src" / "lib.rs", notebook_lib(cells))
    # The package's own lock file for its cells, as a seed: the same pyo3 and tokio.
    seeds = sorted(Path(os.environ["IPY_RUSTASYNC_CACHE_DIR"]).glob("crates/*/Cargo.lock"))
    if seeds:
        shutil.copy(seeds[0], root / "Cargo.lock")
    return Workspace(root, root / "target", cells, env)


def notebook_lib(cells: list[str]) -> str:
    """The other route: one crate for the whole notebook, each cell a module of it
    (``orders`` too), one extension module with a submodule per cell."""
    parts = ["//! One crate per notebook, a module per cell.\nuse pyo3::prelude::*;\n"]
    parts.append("pub mod orders {\n" + ORDERS_LIB.replace("__BONUS__", "0").replace("//!", "//") + "}\n")
    for i, name in enumerate(cells):
        body = (
            CELL_LIB.replace("use orders::", "use crate::orders::")
            .replace("orders::fetch", "crate::orders::fetch")
            .replace("orders::explode", "crate::orders::explode")
            .replace("#[pymodule]\nfn __NAME__(", "pub fn register(")
            .replace("__K__", str(i))
            .replace("//!", "//")
        )
        parts.append(f"pub mod {name} {{\n{body}}}\n")
    subs = "".join(
        f'    let sub = PyModule::new(m.py(), "{name}")?;\n    {name}::register(&sub)?;\n    m.add_submodule(&sub)?;\n'
        for name in cells
    )
    parts.append(f"#[pymodule]\nfn notebook(m: &Bound<'_, PyModule>) -> PyResult<()> {{\n{subs}    Ok(())\n}}\n")
    return "".join(parts)


def measure_notebook(ws: Workspace, repeat: int) -> tuple[list[float], list[float], list[float], int]:
    """Warm edits of one cell's constant in the one-crate notebook: ``cargo build -p
    notebook``, its rustc command run directly with and without ``-C incremental``,
    and the module's size."""
    lib = ws.root / "notebook" / "src" / "lib.rs"
    edits = []
    for i in range(repeat):
        set_constant(lib, "K", 1000 + i)  # the first cell's constant
        edits.append(ws.cargo("build", "--offline", "-p", "notebook"))
    lib.touch()
    line = rustc_line(ws.verbose_build("notebook"), "notebook")
    direct: list[float] = []
    direct_noinc: list[float] = []
    for i in range(repeat):
        for into, words in ((direct, line), (direct_noinc, without_incremental(line))):
            set_constant(lib, "K", 2000 + len(into) + 10 * i)
            into.append(run_timed(words, ws.root, ws.env))
    return edits, direct, direct_noinc, (ws.out / "libnotebook.so").stat().st_size


def set_constant(path: Path, name: str, value: int) -> None:
    text = path.read_text()
    new = re.sub(rf"const {name}: u64 = \d+;", f"const {name}: u64 = {value};", text, count=1)
    assert new != text or f"= {value};" in text
    path.write_text(new)


def dynamic_section(path: Path) -> list[str]:
    """``NEEDED x``, ``SONAME y``, ``RUNPATH z`` from ``readelf -d``."""
    done = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=False)
    found = []
    for line in done.stdout.splitlines():
        m = re.search(r"\((NEEDED|SONAME|RUNPATH|RPATH)\).*\[(.*)\]", line)
        if m:
            found.append(f"{m[1]} {m[2]}")
    return found


def load_old(path: Path, name: str, libs: str) -> Check:
    """What a downstream module built against another build of ``orders`` does."""
    done = subprocess.run(
        [sys.executable, "-c", OLD_AGAINST_NEW, str(path), name],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_LIBRARY_PATH": libs},
        check=False,
    )
    if done.returncode:
        return {"crashed": done.returncode, "stderr": done.stderr.strip()[-300:]}
    result: Check = json.loads(done.stdout)
    return result


def run_timed(words: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds to run ``words`` (a compiler command) to success."""
    start = time.perf_counter()
    subprocess.run(words, cwd=cwd, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def rust_libdir() -> Path:
    """Where the toolchain keeps ``libstd-*.so`` for this host."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout
    host = re.search(r"host: (\S+)", subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout)
    return Path(sysroot.strip()) / "lib" / "rustlib" / (host[1] if host else "x86_64-unknown-linux-gnu") / "lib"


def with_runpath(ws: Workspace, env: dict[str, str], search: str, out: Path) -> Path:
    """The first cell compiled again by its rustc command with a RUNPATH, into ``out``."""
    cell = ws.root / ws.cells[0]
    (cell / "src" / "lib.rs").touch()
    line = without_incremental(rustc_line(ws.verbose_build(ws.cells[0]), ws.cells[0]))
    out.mkdir()
    i = line.index("--out-dir")
    line[i + 1] = str(out)
    subprocess.run(
        [*line, "-C", f"link-arg=-Wl,-rpath,{search}"], cwd=ws.root, env=env, capture_output=True, check=True
    )
    return out / f"lib{ws.cells[0]}.so"


def said(check: Check) -> str:
    if "crashed" in check:
        return f"failed ({check['crashed']}): {check['stderr'].strip().splitlines()[-1]}"
    return f"ImportError: {check['import_error']}" if "import_error" in check else "imported, all checks ran"


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def med(xs: list[float]) -> str:
    return f"{s(statistics.median(xs))} ({s(min(xs))}–{s(max(xs))})"


# --- today's design, through the package ------------------------------------------------


def today_warm_edits(repeat: int) -> tuple[list[float], list[float], list[float], dict[str, list[float]]]:
    """Warm edits of edit_compare.py's cell through the package (``compile_cell``, in
    this process), and per edit the rustc command cargo ran, run directly (with and
    without ``-C incremental``) plus its -Z time-passes split."""
    from ipy_rustasync._pipeline import cargo
    from ipy_rustasync._pipeline.cells import compile_cell
    from ipy_rustasync._settings.context import Context
    from ipy_rustasync._sources import registry

    base = random.SystemRandom().randrange(10**6, 10**9)
    compile_cell(OURS_CELL.format(k=base))  # the shell's first cell: not measured
    edits: list[float] = []
    direct: list[float] = []
    direct_noinc: list[float] = []
    split: dict[str, list[float]] = {}
    for i in range(1, repeat + 1):
        k = base + i
        start = time.perf_counter()
        compiled = compile_cell(OURS_CELL.format(k=k))
        edits.append(time.perf_counter() - start)
        assert not compiled.build.cached and compiled.module.add(2, 3) == 5 + k
        context = Context.load()
        root = context.cache.crate_dir(compiled.build.module)
        cmd = cargo.cargo_command(
            root / "Cargo.toml",
            context.target,
            release=False,
            extra=registry.configure(root, context.settings.offline_crates),
        )
        lib = root / "src" / "lib.rs"
        lib.touch()
        env = cargo.build_env()
        verbose = subprocess.run(
            [*cmd, "-v"],
            cwd=root,
            env={**env, "RUSTC_WORKSPACE_WRAPPER": str(HERE / "time_passes.sh")},
            capture_output=True,
            text=True,
            check=True,
        )
        for name, secs in grouped(rustc_passes(verbose.stderr + verbose.stdout)).items():
            split.setdefault(name, []).append(secs)
        line = rustc_line(verbose.stderr)
        source = lib.read_text()
        for into, words in ((direct, line), (direct_noinc, without_incremental(line))):
            k += 1_000_000
            lib.write_text(re.sub(r"\+ \d+ \}", f"+ {k} }}", source, count=1))
            into.append(run_timed(words, root, env))
        lib.write_text(source)
    return edits, direct, direct_noinc, split


def today_threads(n: int) -> Check:
    done = subprocess.run([sys.executable, "-c", TODAY_THREADS, str(n)], capture_output=True, text=True, check=True)
    result: Check = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- -C prefer-dynamic, without PyO3 ----------------------------------------------------


def prefer_dynamic(scratch: Path, libdir: Path) -> list[str]:
    """A dylib ``up`` and a cdylib ``down`` calling it, compiled with rustc directly,
    with ``-C prefer-dynamic`` on neither, on ``down`` only, on both: does ``down``
    link, what does it need at load time, does it load."""
    d = scratch / "prefer-dynamic"
    d.mkdir()
    (d / "up.rs").write_text('pub fn hello() -> String { format!("hello {}", 42) }\n')
    (d / "down.rs").write_text('#[no_mangle] pub extern "C" fn down_len() -> usize { up::hello().len() }\n')
    prefer = ["-C", "prefer-dynamic"]
    lines = []
    for label, up_flags, down_flags in (
        ("neither", [], []),
        ("`down` only", [], prefer),
        ("both (evcxr's way)", prefer, prefer),
    ):
        out = d / label.split()[0].strip("`()'")
        out.mkdir()
        subprocess.run(
            ["rustc", "--crate-type", "dylib", "--crate-name", "up", *up_flags, "-o", out / "libup.so", d / "up.rs"],
            check=True,
        )
        linked = subprocess.run(
            ["rustc", "--crate-type", "cdylib", "--crate-name", "down", *down_flags, "-L", out,
             "--extern", f"up={out / 'libup.so'}", "-o", out / "libdown.so", d / "down.rs"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if linked.returncode:
            first = next((x for x in linked.stderr.splitlines() if x.startswith("error")), linked.stderr[:200])
            notes = [x.strip(" =") for x in linked.stderr.splitlines() if "note:" in x][:1]
            lines.append(
                f"| {label} | {mb((out / 'libup.so').stat().st_size)} | does not link: `{first}` {' '.join(notes)} | | | |"
            )
            continue
        load = textwrap.dedent(
            f"""
            import ctypes
            try:
                print("loaded, down_len() =", ctypes.CDLL({str(out / "libdown.so")!r}).down_len())
            except OSError as err:
                print("OSError:", err)
            """
        )
        plain = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True).stdout.strip()
        with_path = subprocess.run(
            [sys.executable, "-c", load],
            capture_output=True,
            text=True,
            env={**os.environ, "LD_LIBRARY_PATH": f"{libdir}:{out}"},
        ).stdout.strip()
        lines.append(
            f"| {label} | {mb((out / 'libup.so').stat().st_size)} | {mb((out / 'libdown.so').stat().st_size)} "
            f"| {', '.join(x.split('[')[-1].rstrip(']') for x in dynamic_section(out / 'libdown.so') if 'NEEDED' in x)} "
            f"| {plain} | {with_path} |"
        )
    libstd = sorted(libdir.glob("libstd-*.so"))
    return [
        "| `-C prefer-dynamic` on | `libup.so` | `libdown.so` | `libdown.so` needs | plain `ctypes.CDLL` | with `LD_LIBRARY_PATH` = sysroot's lib + theirs |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
        f"libstd as a shared library: {', '.join(f'`{p}` ({mb(p.stat().st_size)}, its SONAME is its file name)' for p in libstd)}.",
    ]


def two_builds(scratch: Path, libdir: Path) -> list[str]:
    """Two builds of one named dylib, each with a cdylib built against it, all loaded
    into one process as a kernel would after an edit: which build does the second
    cdylib get? Once with the same crate name (so the same file name and SONAME) in two
    directories, once with a crate name per build (``up_v1``, ``up_v2``) that the
    cdylib still calls ``up`` (``--extern up=.../libup_v2.so``, as cargo renames)."""
    prefer = ["-C", "prefer-dynamic"]
    std = sorted(libdir.glob("libstd-*.so"))[0]
    rows = []
    for how in ("same crate name", "a crate name per build"):
        d = scratch / "two-builds" / how.replace(" ", "-")
        libs = []
        for version, text in (("v1", "one"), ("v2", "two, edited")):
            out = d / version
            out.mkdir(parents=True)
            crate = "up" if how == "same crate name" else f"up_{version}"
            lib = out / f"lib{crate}.so"
            (out / "up.rs").write_text(f'pub fn hello() -> &\'static str {{ "{text}" }}\n')
            (out / "down.rs").write_text('#[no_mangle] pub extern "C" fn down_len() -> usize { up::hello().len() }\n')
            subprocess.run(
                ["rustc", "--crate-type", "dylib", "--crate-name", crate, *prefer, "-o", lib, out / "up.rs"], check=True
            )
            subprocess.run(
                ["rustc", "--crate-type", "cdylib", "--crate-name", "down", *prefer, "-L", out,
                 "--extern", f"up={lib}", "-o", out / "libdown.so", out / "down.rs"],
                check=True,
            )  # fmt: skip
            libs.append((lib, out / "libdown.so"))
        load = textwrap.dedent(
            f"""
            import ctypes
            ctypes.CDLL({str(std)!r})
            got = []
            for up, down in {[(str(a), str(b)) for a, b in libs]!r}:
                ctypes.CDLL(up)
                got.append(ctypes.CDLL(down).down_len())
            print(got)
            """
        )
        said = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
        rows.append(f"| {how} | {(said.stdout + said.stderr).strip()} |")
    return [
        'Two builds of a named dylib `up` (returning `"one"`, then `"two, edited"`: `down_len()` should be 3, '
        "then 11), each with a cdylib built against it, loaded into one process in order (each build of `up` "
        "preloaded by its full path, then its cdylib):",
        "",
        "| builds of `up` | `down_len()` of the first and the second cdylib |",
        "|---|---|",
        *rows,
    ]


# --- the report -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20, help="downstream cell modules (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="warm edits per route (default 5)")
    parser.add_argument("--dir", type=Path, help="work in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    os.environ.setdefault("IPY_RUSTASYNC_CACHE_DIR", str(CELL_CACHE))
    from ipy_rustasync._pipeline.cargo import build_env

    load_before = os.getloadavg()[0]
    if args.dir:
        scratch = args.dir.resolve()
        for old in ("runpath", "prefer-dynamic"):
            shutil.rmtree(scratch / old, ignore_errors=True)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="cross-cell-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    jobs = os.environ.get("CARGO_BUILD_JOBS", "2")
    env = {**build_env(), "CARGO_BUILD_JOBS": jobs, "RUSTFLAGS": "-C prefer-dynamic"}
    libdir = rust_libdir()
    libstd = sorted(libdir.glob("libstd-*.so"))
    ws = make_workspace(scratch / "ws", args.cells, env, "dylib")
    rt_so, orders_so = ws.out / "libshared_rt.so", ws.out / "liborders.so"
    search = f"{libdir}:{ws.out}"  # LD_LIBRARY_PATH that finds all three
    cell_so = [ws.out / f"lib{c}.so" for c in ws.cells]

    print("dylib route: cold build (pyo3 + tokio into shared_rt, orders, the cells), checks, edits ...", flush=True)
    dyn = measure_route(ws, [*libstd, rt_so, orders_so], args.repeat)
    main_check = dyn.check
    linkage = {p.name: dynamic_section(p) for p in (rt_so, orders_so, cell_so[0])}
    print("dylib route: loading ...", flush=True)
    plain = ws.check(ws.cells[:2], [])
    preloaded_global = ws.check(ws.cells[:2], [*libstd, rt_so, orders_so], scope="global")
    without_std = ws.check(ws.cells[:2], [rt_so, orders_so])
    ld_path = ws.check(ws.cells[:2], [], {"LD_LIBRARY_PATH": search})
    runpath = with_runpath(ws, env, search, scratch / "runpath")
    runpath_check = ws.check([str(runpath), ws.cells[1]], [])

    print("static control: the same crates as rlibs, every cell linking its own copy ...", flush=True)
    static_ws = make_workspace(scratch / "static", args.cells, {**env, "RUSTFLAGS": ""}, "rlib")
    static = measure_route(static_ws, [], args.repeat)
    print("one crate per notebook, a module per cell ...", flush=True)
    nb_edits, nb_direct, nb_noinc, nb_size = measure_notebook(static_ws, args.repeat)

    print("an edit of the upstream named cell ...", flush=True)
    ws.cargo("build", "--offline")  # every cell fresh again after the direct rustc runs
    old_cell = scratch / f"old-lib{ws.cells[1]}.so"
    shutil.copy(ws.out / f"lib{ws.cells[1]}.so", old_cell)
    orders_lib = ws.root / "orders" / "src" / "lib.rs"
    orders_lib.write_text(ORDERS_LIB.replace("__BONUS__", "1000"))  # a body-and-constant change
    up_alone = ws.cargo("build", "--offline", "-p", "orders")
    old_vs_new = load_old(old_cell, ws.cells[1], search)
    up_all = ws.cargo("build", "--offline")
    orders_lib.write_text(
        ORDERS_LIB.replace("__BONUS__", "0")
        .replace("pub id: u64,", "pub id: u64,\n    pub note: u32,")
        .replace("Order { id, cents: id * 100 }", "Order { id, cents: id * 100, note: 0 }")
    )
    ws.cargo("build", "--offline", "-p", "orders")
    layout = load_old(ws.out / f"lib{ws.cells[1]}.so", ws.cells[1], search)
    orders_lib.write_text(ORDERS_LIB.replace("__BONUS__", "0"))
    ws.cargo("build", "--offline")
    orders_lib.write_text(
        ORDERS_LIB.replace("__BONUS__", "0")
        .replace("pub cents: u64,", "pub cents: u32,")
        .replace("o.cents).sum", "o.cents as u64).sum")
        .replace("cents: id * 100 }", "cents: (id * 100) as u32 }")
    )
    ws.cargo("build", "--offline", "-p", "orders")
    field_type = load_old(ws.out / f"lib{ws.cells[1]}.so", ws.cells[1], search)
    orders_lib.write_text(ORDERS_LIB.replace("__BONUS__", "0"))
    ws.cargo("build", "--offline")
    orders_lib.write_text(
        ORDERS_LIB.replace("__BONUS__", "0").replace(
            "pub id: u64,\n    pub cents: u64,", "pub cents: u64,\n    pub id: u64,"
        )
    )
    ws.cargo("build", "--offline", "-p", "orders")
    field_order = load_old(ws.out / f"lib{ws.cells[1]}.so", ws.cells[1], search)

    print("today's design, through the package ...", flush=True)
    today_edits, today_direct, today_noinc, today_split = today_warm_edits(args.repeat)
    threads_today = today_threads(args.cells)
    pd = prefer_dynamic(scratch, libdir)
    twice = two_builds(scratch, libdir)
    target_mb = sum(p.stat().st_size for t in (ws.target, static_ws.target) for p in t.rglob("*") if p.is_file()) / 1e6

    # --- report ---
    def yes(flag: bool) -> str:
        return "yes" if flag else "**no**"

    def one_world(c: Check, key: str) -> str:
        if "import_error" in c or "crashed" in c:
            return said(c)
        if key == "counter":
            n = len(c.get("counter_addrs", []))
            return f"{yes(n == 1)} ({n} address{'es' * (n != 1)}; bumps a, b, a → {c.get('bumps')})"
        if key == "label":
            return str(c.get("label"))
        if key == "type":
            return yes(bool(c.get("same_type")))
        if key == "cross":
            return f"{c.get('b_reads_a_counter')} / {c.get('a_reads_b_class_instance')}"
        if key == "panic":
            return str(c.get("panic"))
        if key == "runtimes":
            return str(c.get("runtime_addrs"))
        if key == "threads":
            return f"{c.get('threads_before')} / {c.get('threads_loaded')} / **{c.get('threads_after')}**"
        raise KeyError(key)

    checks = [
        (f"`COUNTER` one object in all {args.cells} modules", "counter"),
        ("`LABEL: OnceLock<String>` set by module a, then asked by b (each offers its own value)", "label"),
        ("`a.Counter is b.Counter` (one Python type)", "type"),
        ("`b.read_counter(a.make_counter(41))` / `a.read_counter(b.Counter(5))`", "cross"),
        ("a panic in `orders`, called from a cell's `#[pyfunction]`", "panic"),
        (f"distinct tokio runtimes among the {args.cells} modules", "runtimes"),
        ("threads: before loading / all loaded / after each module awaited on its runtime once", "threads"),
    ]
    dyn_total = sum(p.stat().st_size for p in cell_so) + orders_so.stat().st_size + rt_so.stat().st_size
    lines = [
        machine(),
        "",
        f"Two workspaces with the same crates (pyo3 0.30.1, tokio 1.54.1; `shared_rt` at opt-level 3 as the bridge is "
        f"today, `orders` and the cells at 0), {args.cells} downstream cells, {jobs} build jobs: the **dylib route** "
        f"(`shared_rt` and `orders` as `dylib`, everything `-C prefer-dynamic`; cold build {dyn.cold:.0f} s) and a "
        f"**static control** (the same two as `rlib`, linked into every cell as today; cold build {static.cold:.0f} s). "
        f"Target directories together: {target_mb:.0f} MB.",
        "",
        "### One world",
        "",
        "| check | dylib route | static control |",
        "|---|---|---|",
        *(f"| {label} | {one_world(dyn.check, key)} | {one_world(static.check, key)} |" for label, key in checks),
        f"| today: {args.cells} cells through the package, threads before / loaded / each awaited once "
        f"| | {threads_today['before']} / {threads_today['loaded']} / **{threads_today['after']}** |",
        f"| after an edit of `{ws.cells[0]}` (rebuilt alone): COUNTER one object, same type "
        f"| {one_world(dyn.edited, 'counter')}, {one_world(dyn.edited, 'type')} | |",
        "",
        "### Sizes",
        "",
        "| file | size |",
        "|---|---|",
        f"| today: a cell module through the package ({args.cells} cells: median, min–max) | "
        f"{mb(statistics.median(threads_today['sizes']))} ({mb(min(threads_today['sizes']))}–{mb(max(threads_today['sizes']))}) |",
        f"| static control: a downstream cell module | {mb(static.cell_size)} |",
        f"| dylib route: a downstream cell module (`{cell_so[0].name}`) | **{mb(dyn.cell_size)}** |",
        f"| dylib route: the named cell `liborders.so` | {mb(orders_so.stat().st_size)} |",
        f"| dylib route: the shared runtime `libshared_rt.so` (once per kernel) | {mb(rt_so.stat().st_size)} |",
        f"| dylib route: `{libstd[0].name}` from the toolchain (once per kernel, not copied) | {mb(libstd[0].stat().st_size)} |",
        f"| {args.cells} cells: today / dylib route (cells + orders + shared_rt, libstd not counted) "
        f"| {mb(sum(threads_today['sizes']))} / {mb(dyn_total)} |",
        "",
        f"### Warm edit of a small downstream cell (a constant changed; median of {args.repeat}, min–max)",
        "",
        "| what | dylib route | static control | today (package, edit_compare's cell) |",
        "|---|---|---|---|",
        f"| `cargo build -p <cell>` / `compile_cell` (cargo + install + load) | {med(dyn.edits)} | {med(static.edits)} | {med(today_edits)} |",
        f"| cargo no-op for that cell | {med(dyn.noop)} | {med(static.noop)} | |",
        f"| the rustc command cargo ran, run directly (same crate name: incremental cache reused) | {med(dyn.direct)} | {med(static.direct)} | {med(today_direct)} (crate name new each edit) |",
        f"| the same, without `-C incremental` | {med(dyn.direct_noinc)} | {med(static.direct_noinc)} | {med(today_noinc)} |",
        "",
        f"One crate per notebook instead (`notebook`: `orders` and the {args.cells} cells as modules of one cdylib, "
        f"a submodule each; one cell's constant changed; module {mb(nb_size)}): `cargo build -p notebook` {med(nb_edits)}; "
        f"its rustc command run directly {med(nb_direct)}, without `-C incremental` {med(nb_noinc)}.",
        "",
        "| rustc's passes (`-Z time-passes`, one compile without `-C incremental`) | dylib route | static control | today (with `-C incremental`, median) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {s(dyn.split[name])} | {s(static.split[name])} | {s(statistics.median(today_split[name]))} |"
            for name in today_split
        ),
        "",
        "### Loading the dylib route",
        "",
        "| file | dynamic section |",
        "|---|---|",
        *(f"| `{name}` | {', '.join(entries) or '–'} |" for name, entries in linkage.items()),
        "",
        "| how the cell modules were loaded | result |",
        "|---|---|",
        f"| plain import (no preload, no `LD_LIBRARY_PATH`) | {said(plain)} |",
        f"| `ctypes.CDLL(path, RTLD_LOCAL)` of libstd, libshared_rt, liborders first, then import | {said(main_check)} |",
        f"| the same with `RTLD_GLOBAL` | {said(preloaded_global)} |",
        f"| `ctypes.CDLL` of libshared_rt and liborders only (not libstd) | {said(without_std)} |",
        f"| `LD_LIBRARY_PATH` = sysroot's lib + the target's `debug/` (set before the process starts) | {said(ld_path)} |",
        f"| the cell linked with `-C link-arg=-Wl,-rpath,<sysroot lib>:<target/debug>`, plain import | {said(runpath_check)} |",
        "",
        "### An edit of the upstream named cell (dylib route)",
        "",
        "| what | result |",
        "|---|---|",
        f"| `cargo build -p orders` after a constant and a function body changed | {s(up_alone)} |",
        f"| then `cargo build` of the workspace: cargo rebuilds every downstream cell | {s(up_all)} ({args.cells} cells) |",
        f"| an old `{ws.cells[1]}` (built before that edit) loaded against the new `liborders.so` | {old_vs_new} |",
        f"| `Order` given a field, `orders` rebuilt, `{ws.cells[1]}` not | {layout} |",
        f"| `Order.cents` changed from u64 to u32, `orders` rebuilt, `{ws.cells[1]}` not | {field_type} |",
        f"| `Order`'s two fields swapped (`cents` first), `orders` rebuilt, `{ws.cells[1]}` not | {field_order} |",
        "",
        "(`sum_orders(4)` builds `Order { id: i, cents: 10 * i }` for i in 1..=4 and calls `orders::total`: "
        "100 plus `BONUS`, which the first edit sets to 1000.)",
        "",
        "### `-C prefer-dynamic` (a dylib and a cdylib using it, no PyO3)",
        "",
        *pd,
        "",
        *twice,
        "",
        f"Load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
