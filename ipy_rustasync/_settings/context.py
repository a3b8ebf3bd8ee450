"""The settings and the cache one build (or one command) works with, read once.

A magic call, a CLI command or a ``rust_module`` call makes one ``Context`` and
passes it down (cells -> build -> cargo, export), instead of every step reading the
config file and opening the cache again: one reading per call means one answer per
call, even if the config file changes meanwhile, and one place to see where settings
come from. ``Context.load()`` is the only caller of ``Settings.load()`` in the front
end and build pipeline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ipy_rustasync._settings import toolchain
from ipy_rustasync._settings.cache import Cache
from ipy_rustasync._settings.config import Settings


@dataclass(frozen=True)
class Context:
    settings: Settings

    @classmethod
    def load(cls) -> Context:
        """The settings as they are now (environment, config file, defaults)."""
        return cls(Settings.load())

    @functools.cached_property
    def cache(self) -> Cache:
        """The cache, created and checked at first use: showing or changing the
        settings must work even when the configured cache directory is unusable."""
        return Cache.open(self.settings.cache_dir)

    @property
    def target(self) -> Path:
        """The cargo target directory cell builds with these settings share."""
        return self.target_for(shared_runtime=toolchain.shared_runtime())

    def target_for(self, *, shared_runtime: bool) -> Path:
        """The target directory of cells on the shared runtime, or of those linking
        their own copy (and of exported projects)."""
        return self.cache.target_for(self.settings.offline_crates, shared_runtime=shared_runtime)

    def release(self, asked: bool | None) -> bool:
        """The profile to build: what the cell or command asked for, else the setting."""
        return self.settings.release if asked is None else asked
