"""The logic of every platform difference (ipy_rustasync/_settings/platforms.py), for each
platform, run here on Linux: only Linux runs the whole suite (README, "Platforms")."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ipy_rustasync._pipeline import cargo
from ipy_rustasync._settings import cache, config, platforms


def test_permission_checks_only_where_posix_permissions_exist() -> None:
    assert platforms.posix_permissions("posix") is True
    assert platforms.posix_permissions("nt") is False


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("darwin", ["-C", "link-arg=-undefined", "-C", "link-arg=dynamic_lookup"]),
        ("linux", []),
        ("win32", []),
    ],
)
def test_extension_link_args(platform: str, expected: list[str]) -> None:
    assert platforms.extension_link_args(platform) == expected


def test_cargo_command_passes_the_link_args_after_a_separator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platforms, "extension_link_args", lambda: ["-C", "link-arg=-undefined"])
    cmd = cargo.cargo_command(Path("Cargo.toml"), Path("target"), release=False, extra=["--offline"])
    assert cmd[-4:] == ["--offline", "--", "-C", "link-arg=-undefined"]
    monkeypatch.setattr(platforms, "extension_link_args", list)
    assert "--" not in cargo.cargo_command(Path("Cargo.toml"), Path("target"), release=False, extra=[])


@pytest.mark.parametrize(
    "filename",
    [
        "target/debug/libira_0123456789abcdef.so",
        "target/debug/libira_0123456789abcdef.dylib",
        "target/debug/ira_0123456789abcdef.dll",
    ],
)
def test_the_cdylib_of_each_platform_is_found(filename: str) -> None:
    name = "ira_0123456789abcdef"
    artifact = {
        "reason": "compiler-artifact",
        "target": {"name": name, "kind": ["cdylib"]},
        "filenames": ["target/debug/libira.rlib", filename],
    }
    assert cargo.Outcome(True, "", [artifact]).cdylib(name) == Path(filename)


def test_cache_checks_are_skipped_without_posix_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache whose mode bits say writable by all (as Windows reports every file) is
    refused on POSIX, used where permissions are ACLs."""
    root = tmp_path / "cache"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(Exception, match="writable by other users"):
        config.private_dir(root)
    monkeypatch.setattr(platforms, "posix_permissions", lambda: False)
    assert config.private_dir(root) == root
    modules = cache.Cache(root).modules
    modules.mkdir()
    os.chmod(modules, 0o777)
    module = modules / f"ira_0123456789abcdef{cache.EXT_SUFFIX}"
    module.write_bytes(b"built")
    os.chmod(module, stat.S_IRUSR | stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    digest = cache._sha256(module)
    (modules / "ira_0123456789abcdef.sha256").write_text(f"{digest} {len(b'built')}\n")
    assert cache.Cache(root).trusted_module("ira_0123456789abcdef") == module
    monkeypatch.setattr(platforms, "posix_permissions", lambda: True)
    assert cache.Cache(root).trusted_module("ira_0123456789abcdef") is None
