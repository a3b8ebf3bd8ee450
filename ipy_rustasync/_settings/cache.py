"""The per-user cache: its layout, and the checks that make it safe to load code from.

<cache>/crates/<module>/   generated crates (content-addressed)
<cache>/crates/<module>/Cargo.lock     what the cell's build resolved (lock files, export)
<cache>/target/            the one cargo target directory every cell shares
<cache>/target-offline-<tag>/          the same for a vendored crate directory
<cache>/target-dylib/, target-dylib-offline-<tag>/  the same for cells on the shared runtime
                           (``-C prefer-dynamic`` on every crate changes every fingerprint)
<cache>/crates/ira_rt_<hash>/          a generated shared runtime crate (crate.runtime_manifest)
<cache>/modules/libira_rt_<hash>.so    the shared runtime library, next to the modules that
                                       find it through their RUNPATH ``$ORIGIN``
<cache>/modules/libstd-<hash>.so       the toolchain's libstd as a shared library, copied (the
                                       runtime and the modules need it; rustup may remove it)
<cache>/modules/<library>.sha256       their checksums; <library>.needs: what else it needs
<cache>/target*/ipy-rustasync-units.json  how many units each dependency set builds (progress)
<cache>/target*/ipy-rustasync-recipes/   the rustc command line of each build, replayed by
                           rustc_direct.py; <cache>/rustc-recorder.sh records them
<cache>/target*/<profile>/...ira_*         a cell crate's own files there (its library, dep-info,
                           fingerprint, incremental session): removed once its module is installed
                           (``remove_cell_build``), so the shared target holds the dependencies only
<cache>/modules/<module><EXT_SUFFIX>   built extension modules, by content hash
<cache>/modules/<module>.sha256         the module's checksum, checked before loading
<cache>/modules/lib<module>.so         a named cell's module under its library name (a symlink to
                                       the module: one file, so one copy in a process), which the
                                       cells using it link and find through RUNPATH ``$ORIGIN``
<cache>/modules/<module>.warnings.json  the warnings its build printed, shown again on re-runs
<cache>/build.lock         held while a build writes crates/, target/, modules/
<cache>/build.lock.owner   who holds it (pid and program), named when a build gives up waiting
<cache>/rustc-vV.json      ``rustc -vV`` remembered with the compiler's fingerprint (named by toolchain.py)
<cache>/resolve-*/         lockfile.resolve's scratch crates, removed when it is done (named there)

This class is the one place that knows these names: other modules ask it for paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import sys
import sysconfig
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

from ipy_rustasync._base import atomic
from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import platforms
from ipy_rustasync._settings.config import private_dir

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX") or ".so"

#: How long ``Cache.clear`` waits for a build holding the lock before saying so.
CLEAR_TIMEOUT = 60.0

#: Every cell crate's name (crate.py: ``ira_`` and 16 hex digits), as a pattern.
CELL_CRATES = "ira_[0-9a-f]{16}"

#: Where cargo puts a crate's files in a profile directory of a target (``debug/``,
#: ``release/``): folder -> what a name there starts with, for crate ``{name}``: the
#: library and its dep-info, uplifted and in ``deps/`` (``lib<name>.so``, ``<name>.dll``,
#: ``<name>.d``, ``<name>.pdb``), and the unit's folders (fingerprint, incremental
#: session, build script), ``<name>-<hash>``.
_CRATE_FILES = {
    ".": r"(lib)?{name}[.-]",
    "deps": r"(lib)?{name}[.-]",
    ".fingerprint": r"{name}-",
    "incremental": r"{name}-",
    "build": r"{name}-",
}


@dataclass(frozen=True)
class Cache:
    root: Path

    @classmethod
    def open(cls, root: Path) -> Cache:
        """Creates the cache (mode 0700) and checks it is this user's alone."""
        try:
            private_dir(root)
        except OSError as err:
            raise RustAsyncUsageError(
                f"cannot use {root} as the cache directory ({err.strerror or err}); "
                "set IPY_RUSTASYNC_CACHE_DIR to a writable directory"
            ) from None
        return cls(root)

    @property
    def crates(self) -> Path:
        return self.root / "crates"

    def crate_dir(self, module: str) -> Path:
        """The generated crate of ``module`` (crate.write puts it at ``crates/<module>``)."""
        return self.crates / module

    def crate_lock(self, module: str) -> Path:
        """The Cargo.lock the build of ``module`` resolved."""
        return self.crate_dir(module) / "Cargo.lock"

    @property
    def target(self) -> Path:
        return self.root / "target"

    def target_for(self, offline: Path | None, *, shared_runtime: bool = False) -> Path:
        """The shared target directory for one crate source. Vendored crates sit at
        other paths than cargo's registry copies, so mixing the two in one target
        directory would make each build recompile every dependency for the other.
        Cells on the shared runtime build every crate with ``-C prefer-dynamic``, which
        changes every fingerprint: they get target directories of their own, so an
        exported project (a plain extension module) still shares the other."""
        base = "target-dylib" if shared_runtime else "target"
        if offline is None:
            return self.root / base
        tag = hashlib.sha256(str(offline).encode()).hexdigest()[:12]
        return self.root / f"{base}-offline-{tag}"

    @property
    def modules(self) -> Path:
        return self.root / "modules"

    def recipe(self, target: Path, key: str) -> Path:
        """Where a target directory keeps the rustc invocation of a build (rustc_direct.py)."""
        return target / "ipy-rustasync-recipes" / f"{key}.json"

    def units_memo(self, target: Path) -> Path:
        """Where a target directory remembers its builds' unit counts (cargo.py)."""
        return target / "ipy-rustasync-units.json"

    @property
    def lock(self) -> Path:
        return self.root / "build.lock"

    @property
    def lock_owner(self) -> Path:
        return self.root / "build.lock.owner"

    @contextlib.contextmanager
    def holding_lock(self, timeout: float, error: type[RustAsyncUsageError] = RustAsyncUsageError) -> Iterator[None]:
        """Holds the build lock (``filelock``: one per cache, across processes) while
        crates/, target/ or modules/ change, naming this process in ``lock_owner``; after
        ``timeout`` seconds of waiting raises ``error`` naming the holder."""
        lock = filelock.FileLock(str(self.lock), timeout=timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            owner = self.lock_owner
            holder = owner.read_text(encoding="utf-8").strip() if owner.exists() else "another process"
            raise error(
                f"gave up after {timeout:.0f} s waiting for the build lock {self.lock}, held by {holder}; "
                "wait for that build or stop it"
            ) from None
        try:
            self.lock_owner.write_text(f"pid {os.getpid()} ({sys.argv[0] or sys.executable})\n", encoding="utf-8")
            yield
        finally:
            self.lock_owner.unlink(missing_ok=True)
            lock.release()

    def module_path(self, module: str) -> Path:
        return self.modules / f"{module}{EXT_SUFFIX}"

    def checksum_path(self, module: str) -> Path:
        return self.modules / f"{module}.sha256"

    def warnings_path(self, module: str) -> Path:
        return self.modules / f"{module}.warnings.json"

    def save_warnings(self, module: str, text: str) -> None:
        """Keeps the build's warnings beside the module (best effort: they are
        informational, so a failed write only means a re-run shows none)."""
        with contextlib.suppress(OSError):
            atomic.write(self.warnings_path(module), text)

    def load_warnings(self, module: str) -> str | None:
        try:
            return self.warnings_path(module).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def install(self, artifact: Path, module: str) -> Path:
        """Copies a built library into the cache with its checksum. Written under
        temporary names and renamed, so a reader sees the old files or the whole new
        ones, never a partial module (a build killed halfway leaves only a temp file)."""
        dest = self.module_path(module)
        try:
            self._place(artifact, dest, self.checksum_path(module))
        except OSError as err:
            raise _unwritable("the built module", self.modules, err) from None
        return dest

    def _place(self, artifact: Path, dest: Path, checksum: Path) -> None:
        """Copies ``artifact`` to ``dest`` under a temporary name with its checksum, then
        renames it into place (the checksum first: a file renamed into place always has
        its checksum)."""
        self.modules.mkdir(mode=0o700, exist_ok=True)
        with atomic.replacing(dest) as tmp:
            shutil.copyfile(artifact, tmp)
            os.chmod(tmp, 0o700)
            atomic.write(checksum, f"{_sha256(tmp)} {tmp.stat().st_size}\n")

    def remove_cell_build(self, target: Path, module: str = CELL_CRATES) -> int:
        """Removes what cargo left in ``target`` for the cell crate ``module`` (a name, or
        a pattern: by default every cell's) and returns how many files and folders went. Called under the build
        lock once the module is installed (or its build failed): a cell crate is built
        once, under a name no other build uses, so nothing of it is ever reused (it is not
        incremental: crate.py), and keeping it would grow the shared target by a module's
        size with every edit. The dependencies' files are left alone. Best effort: what
        cannot be removed stays."""
        removed = 0
        for fingerprints in target.glob("*/.fingerprint"):
            profile = fingerprints.parent
            for folder, pattern in _CRATE_FILES.items():
                ours = re.compile(pattern.format(name=module)).match
                try:
                    with os.scandir(profile / folder) as listing:
                        entries = [e for e in listing if ours(e.name)]
                except OSError:  # no such folder
                    continue
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path)
                        else:
                            os.unlink(entry.path)
                        removed += 1
        return removed

    def library_path(self, filename: str) -> Path:
        """A shared library the modules link (the runtime, libstd), beside them."""
        return self.modules / filename

    def install_library(self, artifact: Path, filename: str, needs: list[str] | None = None) -> Path:
        """Copies a shared library the modules link into ``modules/`` with its
        checksum (as :meth:`install`), unless that very file is there already;
        ``needs`` lists the other libraries it needs there (checked with it)."""
        dest = self.library_path(filename)
        checksum = self.modules / f"{filename}.sha256"
        try:
            # Every build of a cell on the shared runtime comes here with the same
            # libraries: their hashes are remembered while their stat holds, so a warm
            # edit hashes none of them again.
            recorded = self._recorded_digest(dest, checksum)
            if recorded is None or _verified_digest(artifact, artifact.lstat()) != recorded:
                self._place(artifact, dest, checksum)  # (never in place: a process may have it loaded)
            if needs is not None:
                atomic.write(self.modules / f"{filename}.needs", "\n".join(needs) + "\n")
        except OSError as err:
            raise _unwritable(filename, self.modules, err) from None
        return dest

    def named_library(self, module: str) -> Path:
        """A named cell's module under the name the cells that use it link
        (``lib<module>.so``, its SONAME): a symlink to the module itself."""
        return self.modules / f"lib{module}.so"

    def link_named(self, module: str) -> Path:
        """Makes (or repairs) :meth:`named_library` for an installed module. A symlink, not
        a copy: the dynamic linker tells loaded objects apart by device and inode, so the
        module imported by Python and the library a later cell needs stay one object
        (one copy of every static, one type object per ``#[pyclass]``), whichever loads first."""
        link = self.named_library(module)
        target = self.module_path(module).name
        try:
            if os.readlink(link) == target:
                return link
        except OSError:
            pass
        try:
            tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        except OSError as err:
            raise _unwritable(link.name, self.modules, err) from None
        return link

    def link_upstream(self, folder: Path, modules: list[str]) -> Path:
        """``folder`` (in a cell's crate) holding exactly the named cells' libraries
        ``modules``, as symlinks to the modules: where rustc looks them up."""
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {self.named_library(m).name: self.module_path(m) for m in modules}
        for old in folder.iterdir():
            if old.name not in wanted:
                old.unlink()
        for name, target in wanted.items():
            link = folder / name
            with contextlib.suppress(OSError):
                if os.readlink(link) == str(target):
                    continue
            link.unlink(missing_ok=True)
            os.symlink(target, link)
        return folder

    def trusted_library(self, filename: str) -> bool:
        """Whether the library ``filename`` and every library its ``.needs`` lists are
        in ``modules/``, this user's, and byte for byte what was installed (a damaged
        one is removed, with a warning, so the caller rebuilds it)."""
        try:
            needs = (self.modules / f"{filename}.needs").read_text(encoding="utf-8").split()
        except OSError:
            needs = []
        for name in (filename, *needs):
            if self._trusted(self.library_path(name), self.modules / f"{name}.sha256") is None:
                return False
        return True

    def trusted_module(self, module: str) -> Path | None:
        """The cached module file if it exists, only this user could have written it,
        and it is byte for byte what the build wrote (a truncated or damaged file is
        removed, with a warning, so the caller rebuilds it). The file is hashed once per
        process while it stays the same file, unchanged (``_verified_digest``); the
        checksum beside it is read every time."""
        return self._trusted(self.module_path(module), self.checksum_path(module))

    def _recorded_digest(self, path: Path, checksum: Path) -> str | None:
        """The digest ``checksum`` records for ``path`` if the file is there and matches
        it (hashed once per process while its stat holds: ``_verified_digest``)."""
        try:
            digest, size = checksum.read_text(encoding="utf-8").split()
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and int(size) == info.st_size and _verified_digest(path, info) == digest:
                return digest
        except (OSError, ValueError):
            pass
        return None

    def _trusted(self, path: Path, checksum: Path) -> Path | None:
        try:
            info = path.lstat()
            dir_info = self.modules.stat()
        except OSError:  # not there (or ``modules`` is not a directory: the build says so)
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if platforms.posix_permissions() and not (_own_and_private(info) and _own_and_private(dir_info)):
            return None
        try:
            digest, size = checksum.read_text(encoding="utf-8").split()
            intact = int(size) == info.st_size and _verified_digest(path, info) == digest
        except (OSError, ValueError):
            intact = False
        if not intact:
            _VERIFIED.pop(path, None)
            warnings.warn(
                f"the cached module {path.name} does not match its checksum (damaged or truncated); rebuilding it",
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            checksum.unlink(missing_ok=True)
            return None
        return path

    def info(self) -> dict[str, object]:
        def size(path: Path) -> int:
            if not path.exists():
                return 0
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())

        modules = sorted(self.modules.glob(f"ira_*{EXT_SUFFIX}")) if self.modules.exists() else []
        return {
            "root": str(self.root),
            "modules": len(modules),
            "modules_bytes": size(self.modules),
            "crates_bytes": size(self.crates),
            "target_bytes": sum(size(p) for p in self.root.glob("target*")),
        }

    def clear(self, *, keep_target: bool = False, timeout: float = CLEAR_TIMEOUT) -> None:
        """Removes built modules and crates, and the shared target unless ``keep_target``,
        in which case only the cells' own files go from it (what builds before
        ``remove_cell_build`` left there), and the dependency build stays. Under the build
        lock: another kernel's build writing those files meanwhile would lose them halfway
        (a module installed without its runtime library, a crate without its lock)."""
        with self.holding_lock(timeout):
            targets = tuple(path for path in self.root.glob("target*") if path.is_dir())
            for path in (self.modules, self.crates, *(() if keep_target else targets)):
                shutil.rmtree(path, ignore_errors=True)
            if keep_target:
                for target in targets:
                    self.remove_cell_build(target)


def _unwritable(what: str, where: Path, err: OSError) -> RustAsyncUsageError:
    """The one sentence for a file the cache could not write."""
    return RustAsyncUsageError(
        f"could not write {what} to {where} ({err.strerror or err}); "
        "free some disk space or set IPY_RUSTASYNC_CACHE_DIR to another directory"
    )


def _own_and_private(info: os.stat_result) -> bool:
    """This user's, and not writable by group or others (POSIX only: see platforms)."""
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: What this process hashed: module path -> (its stat as ``_identity`` gives it, sha256).
_VERIFIED: dict[Path, tuple[tuple[int, ...], str]] = {}

#: A file last changed less than this long (ns) before it is hashed is hashed again on its
#: next check (see ``_verified_digest``).
SETTLED_NS = 1_000_000_000


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _verified_digest(path: Path, info: os.stat_result) -> str:
    """The sha256 of the module at ``path``, whose ``lstat`` is ``info``: from memory if
    this process already hashed this file and its stat is unchanged, hashed otherwise.

    The checksum is there to catch a module that is not what its build wrote: truncated by
    a build killed halfway or a full disk, damaged, or another file swapped in under its
    name. Within one process the stat says whether that happened since the file was
    hashed: the cache only ever renames a new file into place (a new inode), and writing,
    truncating or renaming a file, or changing its times, sets its ctime to the present,
    which no program can set back; so the same device, inode, size, mtime and ctime are
    the same bytes. Two guards keep that true: the file hashed must be the one stat saw
    (``fstat`` of the open file equals ``info``), and it is remembered only if its last
    change is at least ``SETTLED_NS`` old, because file times tick coarsely (a few
    milliseconds on Linux, seconds on some file systems): a same-size rewrite in the same
    tick as the hashing could keep every field ("racy git"). The memory is per process:
    another process, or this one after a restart, hashes the file again. (On Windows,
    where ``st_ctime`` is the creation time, the mtime and file index stand for it; a
    loaded module cannot be replaced there anyway.)"""
    key = _identity(info)
    known = _VERIFIED.get(path)
    if known is not None and known[0] == key:
        return known[1]
    started = time.time_ns()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        opened = _identity(os.fstat(fh.fileno()))
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if opened == key and started - max(info.st_mtime_ns, info.st_ctime_ns) >= SETTLED_NS:
        _VERIFIED[path] = (key, hexdigest)
    return hexdigest
