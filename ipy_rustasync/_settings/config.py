"""Settings: where the cache lives, where crates come from, the default profile.

Each setting is read from, in order: an environment variable, the per-user config
file (``%rust_async --set`` and ``ipy-rustasync config`` write it), a default.
platformdirs picks the per-user directories the way each platform expects.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from ipy_rustasync._base import atomic
from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._settings import platforms

APP = "ipy-rustasync"

#: setting name -> (environment variable, kind)
SETTINGS: dict[str, tuple[str, type]] = {
    "cache_dir": ("IPY_RUSTASYNC_CACHE_DIR", str),
    "offline_crates": ("IPY_RUSTASYNC_OFFLINE_CRATES", str),
    "release": ("IPY_RUSTASYNC_RELEASE", bool),
    "nest": ("IPY_RUSTASYNC_NEST", bool),
    "warm_on_load": ("IPY_RUSTASYNC_WARM_ON_LOAD", bool),
}


def config_path() -> Path:
    """The per-user config file (``IPY_RUSTASYNC_CONFIG`` overrides it)."""
    override = os.environ.get("IPY_RUSTASYNC_CONFIG")
    if override:
        return Path(override)
    return _user_dir("config", os.environ.get("XDG_CONFIG_HOME"), os.environ.get("HOME")) / "config.toml"


@functools.lru_cache(maxsize=8)
def _user_dir(kind: str, xdg: str | None, home: str | None) -> Path:
    """platformdirs' answer, remembered for the environment it reads (every cell run
    reads the settings: the unchanged re-run's budget is a millisecond)."""
    return Path(platformdirs.user_config_dir(APP) if kind == "config" else platformdirs.user_cache_dir(APP))


def read_file() -> dict[str, Any]:
    path = config_path()
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError:
        return _parse(path)  # which says what is wrong with it
    changed = max(info.st_mtime_ns, info.st_ctime_ns)
    if time.time_ns() - changed < SETTLED_NS:  # a write within the clock's tick could keep the stat
        return _parse(path)
    return dict(_parse_settled(path, (info.st_ino, info.st_size, changed)))


#: How old a config file's last change must be for its parse to be remembered.
SETTLED_NS = 1_000_000_000


@functools.lru_cache(maxsize=8)
def _parse_settled(path: Path, stat_key: tuple[int, ...]) -> dict[str, Any]:
    """The file's settings, parsed once while its stat (``stat_key``) holds: every cell
    run reads the settings, and the unchanged re-run's budget is a millisecond."""
    return _parse(path)


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise RustAsyncUsageError(f"the config file {path} is not valid TOML ({err}); fix or delete it") from None


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise RustAsyncUsageError(f"{name} must be true or false, not {text!r}")


def write_setting(name: str, value: str | None) -> None:
    """Sets (or with ``None`` removes) one setting in the config file."""
    if name not in SETTINGS:
        raise RustAsyncUsageError(f"unknown setting {name!r}; known settings: {', '.join(SETTINGS)}")
    data = read_file()
    if value is None:
        data.pop(name, None)
    elif SETTINGS[name][1] is bool:
        data[name] = _parse_bool(name, value)
    else:
        data[name] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Flat str/bool values only, so a JSON string literal is a valid TOML basic string.
    lines = [f"{key} = {json.dumps(val)}" for key, val in sorted(data.items())]
    atomic.write(path, "".join(line + "\n" for line in lines), fsync=True)


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    offline_crates: Path | None
    release: bool
    #: apply nest-asyncio2 at %load_ext, so asyncio.run works inside kernel cells
    nest: bool = False
    #: build the shared dependencies in the background at %load_ext
    warm_on_load: bool = False

    @classmethod
    def load(cls) -> Settings:
        data = read_file()

        def get(name: str) -> Any:
            env, kind = SETTINGS[name]
            if env in os.environ:
                raw = os.environ[env]
                return _parse_bool(env, raw) if kind is bool else raw
            return data.get(name)

        cache = get("cache_dir") or _user_dir("cache", os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))
        offline = get("offline_crates")
        return cls(
            cache_dir=Path(cache).expanduser(),
            offline_crates=Path(offline).expanduser().resolve() if offline else None,
            release=bool(get("release")),
            nest=bool(get("nest")),
            warm_on_load=bool(get("warm_on_load")),
        )


def private_dir(path: Path) -> Path:
    """Creates ``path`` (mode 0700) if needed and checks it is safe to load code from:
    owned by this user and not writable by group or others."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not platforms.posix_permissions():
        return path
    info = path.stat()
    if info.st_uid != os.getuid():
        raise RustAsyncUsageError(
            f"the cache directory {path} belongs to another user; set IPY_RUSTASYNC_CACHE_DIR to a directory of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RustAsyncUsageError(
            f"the cache directory {path} is writable by other users; run `chmod 700 {path}` or choose another with IPY_RUSTASYNC_CACHE_DIR"
        )
    return path
