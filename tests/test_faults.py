"""Faults outside the cell: a missing or old toolchain, a build killed halfway, a
damaged cache, a full disk, an unusable cache directory. Each gets one clear
message; nothing half-written is ever loaded; the next run recovers by itself."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import cells
from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.cache import EXT_SUFFIX, Cache
from ipy_rustasync._sources import crate

from .conftest import CACHE_DIR, ROOT
from .helpers import run_python
from .kernels import Kernel


def fresh_source(name: str = "fault") -> str:
    """A cell no earlier run has built (so cargo really runs)."""
    return f"pub fn {name}() -> u64 {{ {uuid.uuid4().int % 10**12} }}\n"


BUILD = """
    import sys
    from ipy_rustasync._pipeline.cells import compile_cell
    try:
        compile_cell(sys.argv[1] if len(sys.argv) > 1 else {source!r})
    except Exception as err:
        print(type(err).__name__ + ": " + str(err))
    else:
        print("BUILT")
"""


# --- the toolchain ---------------------------------------------------------------------------


def test_no_cargo_on_path_is_one_sentence_naming_what_to_install(tmp_path: Path) -> None:
    python_dir = str(Path(sys.executable).parent)
    # Neither on PATH nor in rustup's default place (~/.cargo/bin, which we also try).
    env = {"PATH": f"{python_dir}:/usr/bin:/bin", "CARGO_HOME": str(tmp_path / "no-cargo-home")}
    out = run_python(BUILD.format(source=fresh_source()), env=env)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    # rustc is asked first (its version is part of the cell's hash).
    assert re.match(r"ToolchainError: `(rustc|cargo)` was not found on PATH; install a Rust toolchain", line), line
    assert "rustup" in line


def test_too_old_rustc_is_named_with_the_fix(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    rustc = fake / "rustc"
    rustc.write_text("#!/bin/sh\nprintf 'rustc 1.70.0 (90c541806 2023-05-31)\\nrelease: 1.70.0\\n'\n")
    rustc.chmod(0o755)
    os.symlink(shutil.which("cargo") or "cargo", fake / "cargo")
    out = run_python(BUILD.format(source=fresh_source()), env={"PATH": f"{fake}:{os.environ['PATH']}"})
    line = out.stdout.strip().splitlines()[-1]
    assert line == (
        "ToolchainError: rustc 1.70.0 is too old (the pinned tokio and PyO3 need 1.85 or newer); run `rustup update`"
    ), out.stdout + out.stderr


# --- builds killed halfway ---------------------------------------------------------------------


def test_build_killed_halfway_leaves_nothing_loadable_and_rebuilds(tmp_path: Path) -> None:
    source = (
        fresh_source("killed") + "pub fn pad() -> u64 {\n    let mut x = 0u64;\n" + "    x += 1;\n" * 3000 + "x }\n"
    )
    script = tmp_path / "build.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from ipy_rustasync._pipeline.cells import compile_cell
            class Say:
                def expect(self, units): pass
                def message(self, message): pass
                def line(self, text):
                    print(text, flush=True)
            compile_cell(open(sys.argv[1]).read(), watcher=Say())
            """
        )
    )
    (tmp_path / "cell.rs").write_text(source)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "cell.rs")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: cargo and rustc die with it
    )
    assert proc.stdout is not None
    module = None
    for line in proc.stdout:
        if "Compiling ira_" in line:
            module = line.split()[1]
            break
    assert module is not None
    # Killed while rustc compiles the cell (through cargo, or replayed without it).
    deadline = time.monotonic() + 60
    while not compiling(module) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache.open(CACHE_DIR)
    assert cache.trusted_module(module) is None
    assert not cache.module_path(module).exists()
    # The next run rebuilds cleanly and the module works.
    compiled = cells.compile_cell(source)
    assert compiled.build.module == module and not compiled.build.cached
    assert compiled.module.pad() == 3000


def compiling(module: str) -> bool:
    """Whether a rustc compiling the crate ``module`` is running."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--crate-name" in cmdline and module.encode() in cmdline:
            return True
    return False


def test_interrupting_a_build_in_the_kernel_stops_cargo_and_the_rerun_builds(tmp_path: Path) -> None:
    kernel = Kernel(load_ext=True)
    try:
        code = "%%rust_async\n" + fresh_source("interrupted") + "pub fn pad() -> u64 {\n    let mut x = 0u64;\n"
        code += "    x += 1;\n" * 3000 + "x }\n"
        msg_id = kernel.kc.execute(code)
        # Wait for the progress display: cargo is running.
        while True:
            msg = kernel.kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "display_data":
                break
        kernel.km.interrupt_kernel()
        reply = kernel.kc.get_shell_msg(timeout=120)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kernel.kc.get_shell_msg(timeout=120)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # cargo and rustc went with it.
        time.sleep(0.5)
        crate_dir = CACHE_DIR / "crates"
        running = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            cell_rustc = "rustc" in cmdline and "--crate-name ira_" in cmdline  # a replayed one names no crate dir
            if (str(crate_dir) in cmdline and ("cargo" in cmdline or "rustc" in cmdline)) or cell_rustc:
                running.append(cmdline[:200])
        assert not running, running
        assert "built in" in kernel.ok(code)  # the rerun builds
        assert kernel.ok("pad()") == "3000\n"
    finally:
        kernel.km.shutdown_kernel(now=True)


# --- a damaged or foreign cache ---------------------------------------------------------------


def test_truncated_module_is_detected_before_loading_and_rebuilt() -> None:
    source = fresh_source("truncated")
    first = cells.compile_cell(source)
    path = first.build.path
    size = path.stat().st_size
    # A new file in its place (this process has the original mapped: changing it in
    # place would crash us with SIGBUS, which is why the cache only ever renames).
    damaged = path.with_name("damaged.tmp")
    damaged.write_bytes(path.read_bytes()[: size // 2])
    os.replace(damaged, path)
    out = run_python(BUILD.format(source=source))
    assert out.stdout.strip().endswith("BUILT"), out.stdout + out.stderr
    assert "does not match its checksum (damaged or truncated); rebuilding it" in out.stderr
    assert path.stat().st_size == size


def test_a_module_swapped_in_under_another_cells_name_is_never_loaded() -> None:
    mine = fresh_source("mine")
    other = fresh_source("other")
    a = cells.compile_cell(mine)
    b = cells.compile_cell(other)
    swapped = a.build.path.with_name("swapped.tmp")
    shutil.copyfile(b.build.path, swapped)
    swapped.chmod(0o700)  # same owner and mode: only the content differs
    os.replace(swapped, a.build.path)
    out = run_python(
        """
        import sys
        from ipy_rustasync._pipeline.cells import compile_cell
        mod = compile_cell(sys.argv[1]).module
        print(sorted(n for n in dir(mod) if not n.startswith("_")))
        """.replace("sys.argv[1]", repr(mine))
    )
    assert "['mine']" in out.stdout, out.stdout + out.stderr
    assert "does not match its checksum" in out.stderr


def test_a_group_writable_modules_directory_is_not_trusted(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "cache")
    cache.modules.mkdir()
    module = "ira_" + "0" * 16
    cache.module_path(module).write_bytes(b"\x7fELF not really")
    cache.checksum_path(module).write_text("0 0\n")
    cache.modules.chmod(0o777)
    assert cache.trusted_module(module) is None
    cache.modules.chmod(0o700)
    cache.module_path(module).chmod(cache.module_path(module).stat().st_mode | stat.S_IWOTH)
    assert cache.trusted_module(module) is None


# --- the disk -----------------------------------------------------------------------------------


def test_a_full_disk_is_one_sentence_and_the_next_build_works() -> None:
    source = fresh_source("diskfull")
    # The file size limit makes every large write fail the way a full disk does.
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))\n"
        + textwrap.dedent(BUILD.format(source=source))
    )
    out = run_python(code)
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("BuildError: the build could not write its files ("), out.stdout + out.stderr
    assert "free some disk space" in line
    assert cells.compile_cell(source).module.diskfull() > 0


def test_an_unusable_cache_directory_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = run_python(BUILD.format(source=fresh_source()), env={"IPY_RUSTASYNC_CACHE_DIR": str(blocker / "cache")})
    line = out.stdout.strip().splitlines()[-1]
    assert line == (
        f"RustAsyncUsageError: cannot use {blocker / 'cache'} as the cache directory (Not a directory); "
        "set IPY_RUSTASYNC_CACHE_DIR to a writable directory"
    ), out.stdout + out.stderr


def test_a_module_that_cannot_be_written_is_one_sentence(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = Cache.open(root)
    # Share the warm dependency builds, but make modules/ impossible to create.
    for target in ("target", "target-dylib"):
        os.symlink(CACHE_DIR / target, root / target)
    (root / "modules").write_text("in the way")
    out = run_python(BUILD.format(source=fresh_source()), env={"IPY_RUSTASYNC_CACHE_DIR": str(root)})
    line = out.stdout.strip().splitlines()[-1]
    # The first file to go there: the module, or on the shared runtime the libraries it links.
    written = "the built module" if not toolchain.shared_runtime() else "libstd-"
    assert line.startswith(f"RustAsyncUsageError: could not write {written}"), line
    assert f" to {cache.modules} (" in line, line
    assert "free some disk space or set IPY_RUSTASYNC_CACHE_DIR" in line


@pytest.mark.parametrize("suffix", [EXT_SUFFIX])
def test_module_names_come_only_from_content_hashes(suffix: str) -> None:
    """Nothing a user types becomes a file name: the module is ``ira_`` + 16 hex digits
    of the hash of everything that built it."""
    spec = crate.CellSpec(source='pub fn x() {} // ../../etc/passwd "; rm -rf /\n')
    assert len(spec.module) == 20 and spec.module.startswith("ira_")
    assert all(c in "0123456789abcdef" for c in spec.module[4:])
    assert Cache.open(CACHE_DIR).module_path(spec.module).name == spec.module + suffix


#: Each way into a shell (or to a program looked up on PATH), and the rule that flags it.
SHELL_FORMS = {
    "subprocess.run(cmd, shell=True)": "S602",
    "subprocess.Popen(cmd, shell=True)": "S602",
    "os.system(cmd)": "S605",
    "os.popen(cmd)": "S605",
    "subprocess.getoutput(cmd)": "S605",
    "asyncio.create_subprocess_shell(cmd)": "TID251",
    'subprocess.run(["cargo", "build"])': "S607",
}


def test_nothing_runs_through_a_shell() -> None:
    """Every subprocess gets an argument list, so nothing from a cell or a flag is ever
    interpreted by a shell: ruff's rules see to it (``make lint``; pyproject.toml says
    which). This pins that they stay on for the package: each way into a shell, in a
    module of the package, is flagged."""
    header = "import asyncio\nimport os\nimport subprocess\n\ncmd = input()\n"
    first = header.count("\n") + 1  # the line of the first form
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise"]
    out = subprocess.run(
        [*ruff, "--stdin-filename", "ipy_rustasync/shell_probe.py", "-"],
        input=header + "\n".join(SHELL_FORMS) + "\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = {
        (int(m["line"]), m["rule"])
        for m in re.finditer(r"^ipy_rustasync/shell_probe\.py:(?P<line>\d+):\d+: (?P<rule>[A-Z]+\d+)", out.stdout, re.M)
    }
    missed = [form for line, (form, rule) in enumerate(SHELL_FORMS.items(), first) if (line, rule) not in found]
    assert not missed, out.stdout + out.stderr


def test_a_build_waiting_on_another_gives_up_naming_the_holder() -> None:
    import filelock

    cache = Cache.open(CACHE_DIR)
    owner = cache.root / "build.lock.owner"
    with filelock.FileLock(str(cache.lock), timeout=60):
        owner.write_text(f"pid {os.getpid()} (a test holding the lock)\n")
        try:
            out = run_python(BUILD.format(source=fresh_source()), env={"IPY_RUSTASYNC_LOCK_TIMEOUT": "1"})
        finally:
            owner.unlink(missing_ok=True)
    line = out.stdout.strip().splitlines()[-1]
    assert line == (
        f"BuildError: gave up after 1 s waiting for the build lock {cache.lock}, held by pid {os.getpid()} "
        "(a test holding the lock); wait for that build or stop it"
    ), out.stdout + out.stderr


def test_clearing_the_cache_waits_for_a_build_and_names_it(tmp_path: Path) -> None:
    """``cache clear`` during another kernel's build would remove files that build is
    writing: it takes the build lock, and says who holds it when it cannot."""
    import filelock

    cache = Cache.open(tmp_path / "cache")
    cache.modules.mkdir(parents=True, exist_ok=True)
    cache.module_path("ira_0000000000000000").write_bytes(b"module")
    with filelock.FileLock(str(cache.lock), timeout=60):
        cache.lock_owner.write_text("pid 1 (a build)\n")
        with pytest.raises(
            RustAsyncUsageError, match=r"gave up after 0 s waiting for the build lock .*held by pid 1 \(a build\)"
        ):
            cache.clear(timeout=0.1)
    assert cache.module_path("ira_0000000000000000").exists()  # nothing removed meanwhile
    cache.clear()
    assert not cache.modules.exists() or not any(cache.modules.iterdir())
    assert not cache.lock_owner.exists()


@pytest.mark.timeout(120)  # it used to hang: the awaitable never finished
def test_a_panic_while_converting_a_result_is_rust_panic() -> None:
    """The result is converted to a Python object after the future finished, on the loop
    thread: a panic there is caught like one in the future itself."""
    import asyncio

    import ipy_rustasync
    from ipy_rustasync import RustPanic, rust_module

    mod = rust_module(
        """
        pub struct Boom;
        impl<'py> pyo3::IntoPyObject<'py> for Boom {
            type Target = pyo3::PyAny;
            type Output = pyo3::Bound<'py, pyo3::PyAny>;
            type Error = pyo3::PyErr;
            fn into_pyobject(self, _py: pyo3::Python<'py>) -> Result<Self::Output, Self::Error> {
                panic!("converting boom")
            }
        }
        pub async fn boom_async() -> Boom { Boom }
        #[rust_async(inline)]
        pub async fn boom_inline() -> Boom { Boom }
        pub fn boom_sync() -> Boom { Boom }
        pub async fn fine() -> u8 { 1 }
        """
    )
    with pytest.raises(RustPanic, match="converting boom"):
        asyncio.run(mod.boom_async())
    with pytest.raises(RustPanic, match="converting boom"):
        asyncio.run(mod.boom_inline())
    with pytest.raises(RustPanic, match="converting boom"):
        ipy_rustasync.run(mod.boom_async())
    with pytest.raises(RustPanic, match="converting boom"):
        mod.boom_sync()
    assert asyncio.run(mod.fine()) == 1  # the runtime and the loop's channel carry on


DEEP = r"""
#[inline(never)]
fn dive(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 8192]);
    if depth == 0 { return frame[100] as u64; }
    dive(depth - 1) + std::hint::black_box(frame[depth as usize % 8192]) as u64
}
/// Recursion `depth` deep, 8 KB a frame.
pub fn deep(depth: u32) -> u64 { dive(depth) }
pub async fn deep_async(depth: u32) -> u64 { dive(depth) }
pub async fn deep_blocking(depth: u32) -> u64 {
    tokio::task::spawn_blocking(move || dive(depth)).await.unwrap_or(0)
}
"""


def test_deep_recursion_fits_in_a_future_as_in_a_plain_fn() -> None:
    """The runtime's threads get the main thread's stack size (8 MiB here, tokio's
    default is 2): recursion 400 deep with 8 KB frames, which a plain fn survives on
    the main thread, no longer kills the process in a future or in spawn_blocking."""
    out = run_python(
        f"""
        import asyncio
        from ipy_rustasync import rust_module
        rs = rust_module({DEEP!r})
        print(rs.deep(400), asyncio.run(rs.deep_async(400)), asyncio.run(rs.deep_blocking(400)))
        """
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.split() == ["43080"] * 3
