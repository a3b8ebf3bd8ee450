"""The per-user cache: its layout, and the checks that make it safe to load code from.

<cache>/crates/<module>/   generated crates (content-addressed)
<cache>/target/            the one cargo target directory every cell shares
<cache>/modules/<module><EXT_SUFFIX>   built extension modules, by content hash
<cache>/build.lock         held while a build writes crates/, target/, modules/
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ipy_rustasync.config import private_dir
from ipy_rustasync.errors import RustAsyncUsageError

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


@dataclass(frozen=True)
class Cache:
    root: Path

    @classmethod
    def open(cls, root: Path) -> Cache:
        """Creates the cache (mode 0700) and checks it is this user's alone."""
        try:
            private_dir(root)
        except PermissionError:
            raise RustAsyncUsageError(
                f"cannot create the cache directory {root}; set IPY_RUSTASYNC_CACHE_DIR to a writable directory"
            ) from None
        return cls(root)

    @property
    def crates(self) -> Path:
        return self.root / "crates"

    @property
    def target(self) -> Path:
        return self.root / "target"

    def target_for(self, offline: Path | None) -> Path:
        """The shared target directory for one crate source. Vendored crates sit at
        other paths than cargo's registry copies, so mixing the two in one target
        directory would make each build recompile every dependency for the other."""
        if offline is None:
            return self.target
        tag = hashlib.sha256(str(offline).encode()).hexdigest()[:12]
        return self.root / f"target-offline-{tag}"

    @property
    def modules(self) -> Path:
        return self.root / "modules"

    @property
    def lock(self) -> Path:
        return self.root / "build.lock"

    def module_path(self, module: str) -> Path:
        return self.modules / f"{module}{EXT_SUFFIX}"

    def trusted_module(self, module: str) -> Path | None:
        """The cached module file if it exists and only this user could have written it."""
        path = self.module_path(module)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return None
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        dir_info = self.modules.stat()
        if (hasattr(os, "getuid") and dir_info.st_uid != os.getuid()) or dir_info.st_mode & (
            stat.S_IWGRP | stat.S_IWOTH
        ):
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

    def clear(self, *, keep_target: bool = False) -> None:
        """Removes built modules and crates (and the shared target unless ``keep_target``)."""
        targets = () if keep_target else tuple(self.root.glob("target*"))
        for path in (self.modules, self.crates, *targets):
            shutil.rmtree(path, ignore_errors=True)
