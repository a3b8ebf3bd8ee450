"""Hatch build hook (wheel and editable installs): builds the JupyterLab extension in
labextension/ and ships it as share/jupyter/labextensions/ipy-rustasync.

The build runs only when the sources are newer than labextension/dist: `npm ci` from the
committed package-lock.json (only when node_modules is older than the lock), then
`npm run build` (tsc, then @jupyter/builder's rspack build against
@jupyterlab/core-meta, both from node_modules). Nothing is fetched when JupyterLab runs.
Set IPY_RUSTASYNC_SKIP_LABEXTENSION=1 to build a wheel without it (no Node.js needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NAME = "ipy-rustasync"
SOURCES = ("src", "package.json", "package-lock.json", "tsconfig.json")


def newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def run(cmd: list[str], cwd: Path) -> None:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise RuntimeError(
            f"building the JupyterLab extension needs `{cmd[0]}` (Node.js 20+ and npm) on PATH; "
            "set IPY_RUSTASYNC_SKIP_LABEXTENSION=1 to build without it"
        )
    try:
        subprocess.run([exe, *cmd[1:]], cwd=cwd, check=True)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"`{' '.join(cmd)}` failed in {cwd} (exit {err.returncode})") from err


def check_versions(ext: Path, version: str) -> None:
    """The extension ships under the Python package's version; npm's files carry their
    own copy of it, kept in step by hand, so a release that bumps one and not the other
    stops here rather than shipping a mismatched pair."""
    package = json.loads((ext / "package.json").read_text(encoding="utf-8"))["version"]
    lock = json.loads((ext / "package-lock.json").read_text(encoding="utf-8"))
    found = {package, lock["version"], lock["packages"][""]["version"]}
    if found != {version}:
        raise RuntimeError(
            f"labextension/package.json and package-lock.json say version {', '.join(sorted(found))} "
            f"but the Python package is {version}: set them all to {version}"
        )


class LabextensionBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("IPY_RUSTASYNC_SKIP_LABEXTENSION") == "1":
            return
        ext = Path(self.root) / "labextension"
        check_versions(ext, self.metadata.version)
        dist = ext / "dist"
        built = dist / "package.json"
        if not built.exists() or built.stat().st_mtime < newest_mtime([ext / s for s in SOURCES]):
            installed = ext / "node_modules" / ".package-lock.json"
            if not installed.exists() or installed.stat().st_mtime < (ext / "package-lock.json").stat().st_mtime:
                run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], ext)
            shutil.rmtree(dist, ignore_errors=True)
            run(["npm", "run", "--silent", "build"], ext)
        build_data["shared_data"][str(dist)] = f"share/jupyter/labextensions/{NAME}"
        build_data["shared_data"][str(ext / "install.json")] = f"share/jupyter/labextensions/{NAME}/install.json"
