"""Building a cell: crate -> maturin -> wheel -> extension module in the cache.

A built module is looked up by its content hash first, so an unchanged cell never
starts cargo. Builds hold one file lock (``filelock``, with a timeout and a message
naming the holder) because every cell shares one cargo target directory; the module
is written under a temporary name and renamed, so a build killed halfway never
leaves a file that could be loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from ipy_rustasync import crate, diagnostics, sources, toolchain
from ipy_rustasync.cache import EXT_SUFFIX, Cache
from ipy_rustasync.config import Settings
from ipy_rustasync.errors import RustAsyncUsageError, RustCompileError

#: How long a build waits for another kernel's build before giving up.
LOCK_TIMEOUT = float(os.environ.get("IPY_RUSTASYNC_LOCK_TIMEOUT", "900"))


@dataclass
class BuildResult:
    module: str
    path: Path
    cached: bool
    seconds: float
    warnings: list[diagnostics.Diagnostic] = field(default_factory=list)


class BuildError(RustAsyncUsageError):
    """The build failed for a reason other than the cell's code."""


def build_env() -> dict[str, str]:
    """The environment cargo sees: the same for every build from this interpreter,
    whatever shell or kernel started it, so PyO3's build script never reruns.

    pyo3-build-config reruns when PYO3_PYTHON, VIRTUAL_ENV or CONDA_PREFIX change;
    those are derived from the interpreter, not inherited."""
    env = dict(os.environ)
    env["PYO3_PYTHON"] = toolchain.interpreter()
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYO3_CONFIG_FILE", "PYO3_NO_PYTHON", "PYO3_CROSS"):
        env.pop(name, None)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    elif (Path(sys.prefix) / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = sys.prefix
    env["CARGO_TERM_COLOR"] = "never"
    env.setdefault("CARGO_TERM_PROGRESS_WHEN", "never")
    return env


def lookup(spec: crate.CellSpec, settings: Settings) -> Path | None:
    """The cached module for ``spec``, if one was built (no cargo involved)."""
    return Cache.open(settings.cache_dir).trusted_module(spec.module)


def build(
    spec: crate.CellSpec,
    settings: Settings,
    *,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> BuildResult:
    """Returns the module for ``spec``, building it unless it is cached."""
    start = time.perf_counter()
    cache = Cache.open(settings.cache_dir)
    if not force and (path := cache.trusted_module(spec.module)):
        return BuildResult(spec.module, path, cached=True, seconds=time.perf_counter() - start)
    toolchain.check()
    owner = cache.root / "build.lock.owner"
    lock = filelock.FileLock(str(cache.lock), timeout=LOCK_TIMEOUT)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = owner.read_text(encoding="utf-8").strip() if owner.exists() else "another process"
        raise BuildError(
            f"gave up after {LOCK_TIMEOUT:.0f} s waiting for the build lock {cache.lock}, held by {holder}; "
            "wait for that build or stop it"
        ) from None
    try:
        owner.write_text(f"pid {os.getpid()} ({sys.argv[0] or sys.executable})\n", encoding="utf-8")
        if not force and (path := cache.trusted_module(spec.module)):  # another kernel built it meanwhile
            return BuildResult(spec.module, path, cached=True, seconds=time.perf_counter() - start)
        root = crate.write(spec, cache.crates)
        stderr = _run_maturin(spec, cache, root, settings, on_line)
        path = cache.module_path(spec.module)
        warnings = [d for d in diagnostics.parse(stderr, spec.source) if d.level == "warning"]
        return BuildResult(spec.module, path, cached=False, seconds=time.perf_counter() - start, warnings=warnings)
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _run_maturin(
    spec: crate.CellSpec,
    cache: Cache,
    root: Path,
    settings: Settings,
    on_line: Callable[[str], None] | None,
) -> str:
    cache.modules.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheel-", dir=cache.root) as out_dir:
        cmd = [
            toolchain.maturin(), "build",
            "--manifest-path", str(root / "Cargo.toml"),
            "--interpreter", toolchain.interpreter(),
            "--target-dir", str(cache.target_for(settings.offline_crates)),
            "--out", out_dir,
            "--auditwheel", "skip",
            "--compression-method", "stored",
            "--color", "never",
            *(["--release"] if spec.release else []),
            *sources.configure(root, settings.offline_crates),
        ]  # fmt: skip
        ok, output = _stream(cmd, root, on_line)
        wheels = list(Path(out_dir).glob("*.whl"))
        if not ok or not wheels:
            raise _failure(spec, settings, output)
        _extract(wheels[0], spec.module, cache.module_path(spec.module))
        return output


def _stream(cmd: list[str], cwd: Path, on_line: Callable[[str], None] | None) -> tuple[bool, str]:
    """Runs a build command, passing each output line to ``on_line`` as it comes;
    returns (succeeded, all output)."""
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=build_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
        except BaseException:
            # KeyboardInterrupt (a kernel interrupt): stop cargo; nothing half-written
            # is ever loaded because the module is only renamed into place at the end.
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
    return code == 0, "".join(lines)


def _failure(spec: crate.CellSpec, settings: Settings, output: str) -> Exception:
    sentence = (
        sources.explain_resolution_failure(output, settings.offline_crates, spec.deps)
        if "error[" not in output
        else None
    )
    if sentence:
        return BuildError(sentence)
    found = diagnostics.parse(output, spec.source)
    errors = [d for d in found if d.level == "error"]
    if errors:
        first = errors[0]
        where = f" (cell line {first.line})" if first.line else ""
        headline = f"the cell did not compile: {diagnostics.summary(found)}; first: {first.message}{where}"
        body = "\n\n".join(d.rendered for d in found)
        return RustCompileError(f"{headline}\n\n{body}", diagnostics=found)
    tail = "\n".join(output.strip().splitlines()[-20:])
    return BuildError(f"the build failed without a compiler message; cargo/maturin said:\n{tail}")


def _extract(wheel: Path, module: str, dest: Path) -> None:
    """Copies the extension module out of the wheel, atomically."""
    with zipfile.ZipFile(wheel) as zf:
        members = [
            n for n in zf.namelist() if n.startswith(f"{module}/{module}") and n.endswith(EXT_SUFFIX.rsplit(".", 1)[-1])
        ]
        if len(members) != 1:
            raise BuildError(f"the wheel {wheel.name} does not hold exactly one module {module}: {zf.namelist()}")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with zf.open(members[0]) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(tmp, 0o700)
        os.replace(tmp, dest)
