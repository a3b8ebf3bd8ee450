"""What a process under load reads of itself: memory, threads, open file descriptors.

Shared by ``benchmarks/soak.py`` (run as a script: ``benchmarks/`` is on its path, so
``import probes``) and ``tests/test_load.py`` (run from the checkout: ``import
benchmarks.probes``). Linux only (``/proc/self``); the malloc figures need glibc.

Memory is read three ways, "settled" after ``gc.collect()`` and glibc's
``malloc_trim(0)`` (which hands free heap pages back to the kernel, so RSS shows what
is still in use): RSS (``/proc/self/statm``), the bytes malloc has handed out and not
had back (``mallinfo2``: Rust's allocations, CPython's large objects; glibc counts its
per-thread caches as in use) and the CPython allocator blocks in use
(``sys.getallocatedblocks``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from dataclasses import dataclass

MB = 1 << 20

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2


def rss() -> int:
    """Bytes resident, as they are (``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap() -> int | None:
    """Bytes malloc has handed out and not had back (glibc only, else ``None``)."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def threads() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes resident (/proc/self/statm)
    heap: int | None  # bytes malloc has handed out and not had back (glibc only)
    blocks: int  # CPython allocator blocks in use

    def __str__(self) -> str:
        heap = "?" if self.heap is None else f"{self.heap / MB:.2f} MB"
        return f"RSS {self.rss / MB:.1f} MB, malloc in use {heap}, Python blocks {self.blocks:,}"


def settled_memory() -> Memory:
    """What the process holds once garbage is collected and free heap pages are returned."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
    return Memory(rss=rss(), heap=heap(), blocks=sys.getallocatedblocks())
