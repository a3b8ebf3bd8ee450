"""Replacing a file atomically: the one way the package writes a file another process
(or a later kernel) may read while it changes.

The new content goes to a temporary file beside the target, then ``os.replace``
renames it over the target: a reader sees the old file or the whole new one, never
half of it, and a writer killed halfway leaves only a temporary file (``.NAME.*.tmp``)
that nothing loads. The temporary name carries the process id and a random part, so
two kernels, or two threads of one, writing the same file never share one.

``fsync=True`` also flushes the data (and then the directory entry) to the disk
before returning, so a power cut cannot leave an empty file under the new name. It
costs a disk flush, so it is for what the user cannot get back: the config file,
the notebook's lock file. Cache files are checksummed or rebuilt on demand and skip it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A fresh temporary path in ``path``'s directory (same file system, so the
    rename is atomic), hidden and unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def replacing(path: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path to fill; when the block ends normally it is renamed over
    ``path``, and when it raises it is removed (the exception goes on). For content
    that is not a string in memory, e.g. a copied file: ``shutil.copyfile(src, tmp)``."""
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync:
            _flush(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _flush_directory(path.parent)


def write(path: Path, data: str | bytes, *, fsync: bool = False) -> None:
    """Replaces ``path`` with ``data`` (text is written as UTF-8). Raises ``OSError``
    and leaves ``path`` as it was if the write fails."""
    with replacing(path, fsync=fsync) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def _flush(path: Path) -> None:
    # Opened for writing: Windows flushes only a handle that may write.
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_directory(directory: Path) -> None:
    """Makes the rename itself durable (POSIX). Windows cannot open a directory, so
    there the error is ignored and the rename's durability is the file system's."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
