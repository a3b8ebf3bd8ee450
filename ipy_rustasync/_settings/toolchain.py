"""Finding cargo and rustc, and saying what to install when one is missing.

Checked lazily (at the first build, or by ``ipy-rustasync doctor``) rather than at
``%load_ext`` so that loading the extension stays instant; every failure is one
``ToolchainError`` sentence naming what to install.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ipy_rustasync._base import atomic
from ipy_rustasync._base.errors import ToolchainError
from ipy_rustasync._settings import platforms

RUSTUP_HINT = (
    "install a Rust toolchain with rustup (https://rustup.rs) or your package manager, then restart the kernel"
)


def _which(name: str, env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        return override
    found = shutil.which(name)
    if found:
        return found
    # rustup's default location, for kernels started without ~/.cargo/bin on PATH
    # (a desktop launcher, a service).
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    candidate = home / "bin" / name
    if candidate.exists():
        return str(candidate)
    raise ToolchainError(f"`{name}` was not found on PATH; {RUSTUP_HINT}")


def cargo() -> str:
    """Path of the cargo that builds cells (``CARGO`` overrides)."""
    return _which("cargo", "CARGO")


def rustc_version() -> str:
    """``rustc -vV``: part of every cell's build hash (another compiler, another module).

    Running it costs ~25 ms (most of a cached cell's load after a restart), so the
    answer is remembered in the cache next to a fingerprint of every file that could
    change it (``_fingerprint``) and reused while that is unchanged. Memoized per
    process too (``_rustc_facts``): a toolchain switched under a running kernel counts
    after a restart."""
    return _rustc_facts()["version"]


@functools.cache
def _rustc_facts() -> dict[str, str]:
    """``rustc -vV`` and ``rustc --print target-libdir``, asked together and remembered
    together (``rustc_version``): whether the toolchain ships libstd as a shared library
    decides how every cell links (``shared_runtime``), so it must not cost a process
    start on every kernel's first cell either."""
    rustc = _which("rustc", "RUSTC")
    memo = _memo_file()
    key = _fingerprint(rustc)
    if memo is not None and key is not None:
        try:
            saved = json.loads(memo.read_text(encoding="utf-8"))
            remembered = saved.get("fingerprint") == key and isinstance(saved.get("version"), str)
            if remembered and isinstance(saved.get("libdir"), str):  # (older memos lack libdir: asked again)
                return {"version": saved["version"], "libdir": saved["libdir"]}
        except (OSError, ValueError, AttributeError):
            pass
    # Asked from the cache directory, where builds run: a rust-toolchain.toml next to
    # the notebook must not make the hash name a compiler the build does not use.
    cwd = memo.parent if memo is not None and memo.parent.is_dir() else None
    facts = {"version": _ask_rustc(rustc, cwd), "libdir": _ask_libdir(rustc, cwd)}
    if memo is not None and key is not None and memo.parent.is_dir():
        with contextlib.suppress(OSError):  # a memo only: asked again next time
            atomic.write(memo, json.dumps({"fingerprint": key, **facts}))
    return facts


def _ask_libdir(rustc: str, cwd: Path | None) -> str:
    """The sysroot's library directory for the host, or "" if rustc does not say."""
    try:
        out = subprocess.run(
            [rustc, "--print", "target-libdir"], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
        )
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _ask_rustc(rustc: str, cwd: Path | None) -> str:
    try:
        out = subprocess.run([rustc, "-vV"], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)
    except OSError as err:
        raise ToolchainError(f"could not run `{rustc}` ({err}); {RUSTUP_HINT}") from None
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no output"])[0]
        raise ToolchainError(f"`rustc -vV` failed ({first}); {RUSTUP_HINT}")
    return out.stdout.strip()


def _memo_file() -> Path | None:
    from ipy_rustasync._settings.config import Settings  # late: config is not needed to find tools

    try:
        return Settings.load().cache_dir / "rustc-vV.json"
    except Exception:  # noqa: BLE001 - a bad config is reported by the build itself
        return None


def _fingerprint(rustc: str) -> str | None:
    """Changes whenever ``rustc -vV`` could answer differently: the rustc on PATH and,
    behind a rustup proxy, rustup's settings (``rustup default``) and every installed
    toolchain's compiler (``rustup update`` replaces it). None if any is unreadable."""
    paths = [Path(rustc)]
    if Path(rustc).resolve().name.startswith("rustup"):
        home = Path(os.environ.get("RUSTUP_HOME", Path.home() / ".rustup"))
        paths += [home / "settings.toml", *sorted(home.glob("toolchains/*/bin/rustc"))]
    parts = [f"{name}={os.environ.get(name, '')}" for name in ("RUSTC", "RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "PATH")]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        parts.append(f"{path}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


MIN_RUSTC = (1, 85)  # tokio 1.54 and PyO3 0.30 both need 1.85


def check() -> str:
    """Everything a build needs, or a ToolchainError; returns the rustc release line."""
    cargo()
    version = rustc_version()
    release = next((line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("release:")), "")
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        raise ToolchainError(f"could not read the rustc version from {version.splitlines()[0]!r}") from None
    if (major, minor) < MIN_RUSTC:
        need = ".".join(map(str, MIN_RUSTC))
        raise ToolchainError(
            f"rustc {release} is too old (the pinned tokio and PyO3 need {need} or newer); run `rustup update`"
        )
    return release


@functools.cache
def interpreter() -> str:
    """This Python, spelled the same however it was started.

    ``.venv/bin/python`` and ``.venv/bin/python3`` are one interpreter, but PyO3's build
    script reruns (and recompiles PyO3 and everything above it) when PYO3_PYTHON's
    spelling changes, and Jupyter launches kernels by whichever name its own script's
    shebang used. So: the environment's ``bin/python`` if it is this interpreter, else
    the resolved executable."""
    exe = Path(sys.executable)
    bindir = "Scripts" if os.name == "nt" else "bin"
    for name in ("python", "python3"):
        candidate = Path(sys.prefix) / bindir / name
        try:
            if candidate.exists() and os.path.samefile(candidate, exe):
                return str(candidate)
        except OSError:
            continue
    return str(exe.resolve())


@functools.cache
def shared_libstd() -> list[Path]:
    """The toolchain's libstd as a shared library (``libstd-<hash>.so`` in the
    sysroot's library directory for the host), which every crate built with
    ``-C prefer-dynamic`` needs at load time. Empty if rustc does not say, or if the
    toolchain has none (Debian's packaged rustc links libstd into its driver and ships
    only the ``.rlib``; rustup's toolchains ship both)."""
    try:
        libdir = _rustc_facts()["libdir"]
    except ToolchainError:
        return []
    if not libdir or not Path(libdir).is_dir():
        return []
    return sorted(p for p in Path(libdir).glob("libstd-*") if p.suffix in {".so", ".dylib", ".dll"})


def shared_runtime() -> bool:
    """Whether cells link the shared runtime library: where the platform allows it
    (``platforms.shared_runtime``: Linux, not turned off) and the toolchain has libstd as
    a shared library to link it with. Otherwise each cell links its own copy of the
    bridge, PyO3 and tokio, as on other platforms."""
    return platforms.shared_runtime() and bool(shared_libstd())
