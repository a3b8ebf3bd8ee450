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
