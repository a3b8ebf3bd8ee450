"""Finding cargo, rustc and maturin, and saying what to install when one is missing.

Checked lazily (at the first build, or by ``ipy-rustasync doctor``) rather than at
``%load_ext`` so that loading the extension stays instant; every failure is one
``ToolchainError`` sentence naming what to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ipy_rustasync.errors import ToolchainError

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


def maturin() -> str:
    """The maturin installed next to this Python (it is a dependency of the package)."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "maturin", Path(sys.executable).parent / "maturin"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("maturin")
    if found:
        return found
    raise ToolchainError(
        f"maturin is not installed for {sys.executable}; run `{sys.executable} -m pip install maturin`"
    )


@functools.cache
def rustc_version() -> str:
    """``rustc -vV``: part of every cell's build hash (another compiler, another module).

    Memoized per process: a toolchain switched under a running kernel is picked up
    after a restart."""
    rustc = _which("rustc", "RUSTC")
    try:
        out = subprocess.run([rustc, "-vV"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        raise ToolchainError(f"could not run `{rustc}` ({err}); {RUSTUP_HINT}") from None
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no output"])[0]
        raise ToolchainError(f"`rustc -vV` failed ({first}); {RUSTUP_HINT}")
    return out.stdout.strip()


MIN_RUSTC = (1, 85)  # tokio 1.54 (PyO3 0.28 needs 1.83)


def check() -> str:
    """Everything a build needs, or a ToolchainError; returns the rustc release line."""
    cargo()
    maturin()
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
