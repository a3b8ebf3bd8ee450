"""Building a cell: crate -> ``cargo rustc`` -> extension module in the cache.

A built module is looked up by its content hash first, so an unchanged cell never
starts cargo. Builds hold one file lock (``filelock``, with a timeout and a message
naming the holder) because every cell shares one cargo target directory; the module
is written under a temporary name and renamed, so a build killed halfway never
leaves a file that could be loaded.

Cargo is driven the way maturin drives it (the same ``cargo rustc --lib`` with the
same PyO3 environment: ``maturin_env``), so a maturin build of a cell crate and ours
share every artifact. We skip maturin itself on the hot path because it spends
0.4-0.6 s per build (two ``cargo metadata`` runs, three interpreter queries, a wheel)
before and after a 0.5 s cell compile, and because we want cargo's JSON messages,
which maturin consumes. ``tests/test_build.py`` checks the equivalence.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from ipy_rustasync import crate, diagnostics, sources, toolchain
from ipy_rustasync.cache import Cache
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
    those are derived from the interpreter, not inherited (PYO3_PYTHON by
    ``maturin_env``)."""
    env = dict(os.environ)
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYO3_CONFIG_FILE", "PYO3_NO_PYTHON", "PYO3_CROSS"):
        env.pop(name, None)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    elif (Path(sys.prefix) / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = sys.prefix
    env["CARGO_TERM_COLOR"] = "never"
    env.setdefault("CARGO_TERM_PROGRESS_WHEN", "never")
    env.update(maturin_env())
    env.pop("CARGO", None)  # maturin unsets it too: it would point build scripts at another cargo
    return env


def maturin_env() -> dict[str, str]:
    """What ``maturin build`` adds to cargo's environment for a PyO3 extension module.

    pyo3-build-config reruns (and PyO3 recompiles) when any of these change, so they
    must match maturin's byte for byte for the two to share a target directory."""
    threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    signature = (
        f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}{threaded}"
        f"-{struct.calcsize('P') * 8}bit"
    )
    return {
        "PYO3_BUILD_EXTENSION_MODULE": "1",
        "PYO3_ENVIRONMENT_SIGNATURE": signature,
        "PYO3_PYTHON": toolchain.interpreter(),
        "PYTHON_SYS_EXECUTABLE": toolchain.interpreter(),
    }


def cargo_command(manifest: Path, target_dir: Path, *, release: bool, extra: list[str]) -> list[str]:
    """The ``cargo rustc`` maturin would run for a cdylib crate."""
    return [
        toolchain.cargo(), "rustc",
        "--lib",
        "--manifest-path", str(manifest),
        "--target-dir", str(target_dir),
        "--message-format", "json-render-diagnostics",
        "--color", "never",
        *(["--release"] if release else []),
        *extra,
    ]  # fmt: skip


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
        stderr = _run_cargo(spec, cache, root, settings, on_line)
        path = cache.module_path(spec.module)
        warnings = [d for d in diagnostics.parse(stderr, spec.source) if d.level == "warning"]
        return BuildResult(spec.module, path, cached=False, seconds=time.perf_counter() - start, warnings=warnings)
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _run_cargo(
    spec: crate.CellSpec,
    cache: Cache,
    root: Path,
    settings: Settings,
    on_line: Callable[[str], None] | None,
) -> str:
    """Compiles the crate and moves its cdylib into the cache; returns cargo's text output."""
    cmd = cargo_command(
        root / "Cargo.toml",
        cache.target_for(settings.offline_crates),
        release=spec.release,
        extra=sources.configure(root, settings.offline_crates),
    )
    ok, output, messages = _stream(cmd, root, on_line)
    artifact = _cdylib(messages, spec.module)
    if not ok or artifact is None:
        raise _failure(spec, settings, output)
    cache.modules.mkdir(exist_ok=True)
    _install(artifact, cache.module_path(spec.module))
    return output


def _cdylib(messages: list[dict[str, object]], module: str) -> Path | None:
    """The shared library cargo reported for the cell's own crate, if it built one."""
    for message in messages:
        target = message.get("target")
        if message.get("reason") != "compiler-artifact" or not isinstance(target, dict):
            continue
        if target.get("name") != module or "cdylib" not in (target.get("kind") or []):
            continue
        for filename in message.get("filenames") or []:  # type: ignore[attr-defined]
            if str(filename).endswith((".so", ".dylib", ".dll")):
                return Path(str(filename))
    return None


def _stream(
    cmd: list[str], cwd: Path, on_line: Callable[[str], None] | None
) -> tuple[bool, str, list[dict[str, object]]]:
    """Runs cargo, passing each text line (status, rendered diagnostics) to ``on_line``
    as it comes; returns (succeeded, the text output, cargo's JSON messages)."""
    lines: list[str] = []
    messages: list[dict[str, object]] = []
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
                if line.startswith('{"reason":'):
                    messages.append(json.loads(line))
                    continue
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
    return code == 0, "".join(lines), messages


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
    return BuildError(f"the build failed without a compiler message; cargo said:\n{tail}")


def _install(artifact: Path, dest: Path) -> None:
    """Copies the built library into the cache under a temporary name, then renames it:
    a reader sees the old file or the whole new one, never a partial one."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(artifact, tmp)
    os.chmod(tmp, 0o700)
    os.replace(tmp, dest)
