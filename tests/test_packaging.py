"""What the wheel is made of: the JupyterLab extension ships under the Python
package's version, which npm's files repeat by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import ipy_rustasync

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "labextension"


def load_hook_module() -> object:
    spec = importlib.util.spec_from_file_location("hatch_build", EXT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labextension_version_is_the_packages() -> None:
    hook = load_hook_module()
    hook.check_versions(EXT, ipy_rustasync.__version__)  # type: ignore[attr-defined]


def test_a_mismatched_labextension_version_stops_the_build(tmp_path: Path) -> None:
    hook = load_hook_module()
    for name in ("package.json", "package-lock.json"):
        (tmp_path / name).write_text((EXT / name).read_text(encoding="utf-8"), encoding="utf-8")
    package = json.loads((tmp_path / "package.json").read_text(encoding="utf-8"))
    package["version"] = "9.9.9"
    (tmp_path / "package.json").write_text(json.dumps(package), encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"say version .*9\.9\.9.* but the Python package is"):
        hook.check_versions(tmp_path, ipy_rustasync.__version__)  # type: ignore[attr-defined]
