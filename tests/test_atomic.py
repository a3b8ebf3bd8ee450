"""The one atomic write (ipy_rustasync/_base/atomic.py): whole files or none, a temporary
name no other writer shares, nothing left behind, a disk flush where asked."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ipy_rustasync._base import atomic
from ipy_rustasync._settings import config


def test_write_replaces_the_whole_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    target.write_text("old", encoding="utf-8")
    atomic.write(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    atomic.write(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "module.so"
    target.write_text("the old module", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic.replacing(target) as tmp:
        tmp.write_text("half of the new", encoding="utf-8")
        raise RuntimeError("killed halfway")
    assert target.read_text(encoding="utf-8") == "the old module"
    assert [p.name for p in tmp_path.iterdir()] == ["module.so"]


def test_temporary_names_carry_the_pid_and_differ_per_call(tmp_path: Path) -> None:
    names = {atomic.temporary_name(tmp_path / "f").name for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith(f".f.{os.getpid()}.") and name.endswith(".tmp") for name in names)


def test_threads_of_one_process_replacing_one_file_never_collide(tmp_path: Path) -> None:
    """With the process id alone in the temporary name, two threads would write the
    same temporary file and one rename would find it gone."""
    target = tmp_path / "memo.json"
    errors: list[BaseException] = []
    texts = [str(n) * 20_000 for n in range(8)]

    def writer(text: str) -> None:
        try:
            for _ in range(40):
                atomic.write(target, text)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text(encoding="utf-8") in texts
    assert [p.name for p in tmp_path.iterdir()] == ["memo.json"]


def test_fsync_flushes_the_file_and_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real(fd))[1])
    atomic.write(tmp_path / "quick", "cache data")
    assert flushed == []
    atomic.write(tmp_path / "kept", "user data", fsync=True)
    assert len(flushed) == 2  # the file's data, then the directory entry


def test_the_config_file_is_written_atomically_and_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("IPY_RUSTASYNC_CONFIG", str(path))
    flushed: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real(fd))[1])
    config.write_setting("release", "true")
    config.write_setting("nest", "false")
    assert path.read_text(encoding="utf-8") == "nest = false\nrelease = true\n"
    assert flushed, "the user's settings are flushed to disk"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
