"""What differs between operating systems, one function per difference, each taking
the platform as an argument (defaulting to this one) so its logic is unit-tested for
every platform here (``tests/test_platforms.py``), though only Linux runs the whole
suite. The bridge's own differences (the loop's wake-up socket pair, the main
thread's stack size, the clock) live in ``rust/bridge/src/platform.rs``.
"""

from __future__ import annotations

import os
import sys


def posix_permissions(name: str = os.name) -> bool:
    """Whether file owners and mode bits mean what the cache's safety checks assume
    (a directory of this user's, not writable by group or others). On Windows
    ``st_mode`` reports every writable file as writable by all and ``st_uid`` is 0, so
    the checks would refuse every cache: there access is governed by ACLs, which a
    per-user profile directory (the default cache's place) already keeps private."""
    return name == "posix"


def extension_link_args(platform: str = sys.platform) -> list[str]:
    """Linker arguments an extension module needs beyond cargo's defaults, for
    ``cargo rustc -- ...``. On macOS the module must leave Python's symbols
    undefined, to be found in the interpreter that loads it (what maturin and PyO3's
    build config pass); Linux and Windows need nothing."""
    if platform == "darwin":
        return ["-C", "link-arg=-undefined", "-C", "link-arg=dynamic_lookup"]
    return []


#: What cargo names a ``cdylib``: ``libname.so`` on Linux and the BSDs,
#: ``libname.dylib`` on macOS, ``name.dll`` on Windows. Installed in the cache under
#: the module's name with Python's extension suffix (``.pyd`` on Windows).
SHARED_LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")


def shared_runtime(platform: str = sys.platform, environ: dict[str, str] | None = None) -> bool:
    """Whether cells link one shared runtime library (the bridge, PyO3, tokio and
    futures as a Rust ``dylib``, one copy and one tokio runtime per process) instead of
    each carrying its own copy. Linux only so far (the module finds the runtime
    through a ``RUNPATH`` of ``$ORIGIN``; macOS would need ``@loader_path``, Windows
    a DLL search path); ``IPY_RUSTASYNC_SHARED_RUNTIME=0`` turns it off (each cell
    then links its own copy, as before)."""
    env = os.environ if environ is None else environ
    return platform.startswith("linux") and env.get("IPY_RUSTASYNC_SHARED_RUNTIME", "1").strip() not in {"0", ""}


def shared_runtime_link_args() -> list[str]:
    """What a cell module linking the shared runtime needs beyond
    :func:`extension_link_args`: libstd as a shared library (``-C prefer-dynamic``,
    on every crate, or a crate using two Rust dylibs does not link), and a
    ``RUNPATH`` of ``$ORIGIN``: the runtime library and libstd are installed next to
    the modules, so any process that imports a module from the cache finds them
    there (a kernel after a restart, a process pool's worker) without being told."""
    return ["-C", "prefer-dynamic", "-C", "link-arg=-Wl,-rpath,$ORIGIN"]
