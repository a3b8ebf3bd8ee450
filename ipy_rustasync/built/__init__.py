"""Built cell modules, importable by name in any process that has the cache.

A cell's module is named by its content hash (``ira_<hash>``), which no other
process can import: ``pickle`` stores a function by its module's name, so a
``ProcessPoolExecutor`` worker started by ``spawn`` or ``forkserver`` (the default
from Python 3.14) would fail to unpickle one. So each loaded module is also
``ipy_rustasync.built.ira_<hash>``, and its functions' ``__module__`` says so
(``loader.load``); importing that name in a fresh process imports this package,
whose finder loads the same file from the cache (checksum checked, as for any
load). A process without the module in its cache gets one sentence saying why.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Sequence
from types import ModuleType

#: A module name the build gives (crate.py: ``ira_`` and 16 hex digits of the hash).
MODULE_NAME = re.compile(r"ira_[0-9a-f]{16}")


class _Loader(importlib.machinery.ExtensionFileLoader):
    """Loads a cached cell module and registers it as the in-process load does."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        from ipy_rustasync._pipeline import loader

        loader.register(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or not MODULE_NAME.fullmatch(name):
            return None
        from ipy_rustasync._settings.context import Context

        cache = Context.load().cache
        found = cache.trusted_module(name)
        if found is None:
            raise ModuleNotFoundError(
                f"the Rust cell module {name} is not in this process's cache ({cache.modules}): "
                "run the cell (or rust_module) here once, or point IPY_RUSTASYNC_CACHE_DIR at the cache it was built in",
                name=fullname,
            )
        return importlib.util.spec_from_file_location(fullname, found, loader=_Loader(fullname, str(found)))


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.append(_Finder())
