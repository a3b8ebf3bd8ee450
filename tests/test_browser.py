"""In a real browser: JupyterLab from this environment, driven in Debian's chromium by
playwright-core (tests/browser/quickstart.mjs). The quickstart notebook's %%rust_async
cell is highlighted as Rust (labextension/), Run All gives the documented outputs, and an
edited Rust cell rebuilds warm.

Needs node/npm (tests/browser's playwright-core is installed with `npm ci` from its lock,
never a browser download) and /usr/bin/chromium (`apt-get install chromium`); without
chromium the test is skipped, except in CI (the CI variable set), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: `apt-get install chromium` (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` to run the browser test")
    return CHROMIUM


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """playwright-core from tests/browser/package-lock.json (`npm ci` when the lock is newer)."""
    installed = BROWSER_DIR / "node_modules" / ".package-lock.json"
    lock = BROWSER_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        assert npm, "npm is needed for the browser test (tests/browser: playwright-core)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=BROWSER_DIR,
            env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
            check=True,
            timeout=300,
        )
    return BROWSER_DIR / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Lab:
    def __init__(self, url: str, token: str, log: Path) -> None:
        self.url, self.token, self.log = url, token, log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab from this environment on 127.0.0.1, a token, a fresh root with the
    quickstart and live-demo notebooks; its kernels inherit this process's environment (the test cache)."""
    root = tmp_path / "root"
    root.mkdir()
    for notebook in ("quickstart.ipynb", "live_demo.ipynb"):
        shutil.copy(ROOT / "notebooks" / notebook, root / notebook)
    port, token = free_port(), secrets.token_hex(16)
    jupyter = tmp_path / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
    }
    # No news or update checks (a request to a website, and a toast over the notebook).
    notification = jupyter / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.open_browser=False",
                "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, as JupyterLab's own UI tests use
                f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
                f"--LabApp.user_settings_dir={jupyter / 'settings'}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",  # no PyPI listing
                *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),  # CI runs as root
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"JupyterLab exited ({server.returncode}):\n{lab.log_tail()}"
            try:
                with urllib.request.urlopen(f"{lab.url}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"JupyterLab did not answer within 60 s:\n{lab.log_tail()}"
            time.sleep(0.2)
        yield lab
    finally:
        # Kernels run in their own sessions: stop them through the server first, so even a
        # server that has to be killed leaves none behind.
        try:
            with urllib.request.urlopen(f"{lab.url}/api/kernels?token={token}", timeout=5) as reply:
                kernels = json.load(reply)
            for kernel in kernels:
                request = urllib.request.Request(f"{lab.url}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
                urllib.request.urlopen(request, timeout=20).close()
        except OSError:
            pass
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def drive(
    lab: Lab, chromium: Path, shots: Path, nonce: str, notebook: str = "quickstart.ipynb", run_all_only: bool = False
) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed for the browser test"
    config = {
        "url": lab.url,
        "token": lab.token,
        "notebook": notebook,
        "chromium": str(chromium),
        "screenshotDir": str(shots),
        "nonce": nonce,
        "runAllOnly": run_all_only,
    }
    proc = subprocess.run(
        [node, str(BROWSER_DIR / "quickstart.mjs"), json.dumps(config)],
        cwd=BROWSER_DIR,
        env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, f"the browser driver failed:\n{proc.stderr[-4000:]}\n{lab.log_tail()}"
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def output_of(cells: list[dict[str, Any]], start: str) -> str:
    (found,) = [c["output"] for c in cells if c["source"].startswith(start)]
    return str(found)


def summaries(output: str, *how: str) -> list[str]:
    """The build summary lines: `rust_async: ` and how the module came (built or cached)."""
    return [line for line in output.splitlines() if line.startswith("rust_async:") and any(h in line for h in how)]


def test_quickstart_in_jupyterlab(
    lab: Lab,
    chromium: Path,
    node_modules: Path,  # playwright-core installed
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    nonce = secrets.token_hex(8)
    report = drive(lab, chromium, shots, nonce)
    (shots / "report.json").write_text(json.dumps(report, indent=1))
    with capsys.disabled():
        print(f"\nbrowser test: {report.get('seconds')} s in chromium; screenshots: {' '.join(report['screenshots'])}")
    record_property("screenshots", report["screenshots"])
    context = f"\n{json.dumps(report, indent=1)[-6000:]}\nJupyterLab log:\n{lab.log_tail()}"
    assert "error" not in report, context

    # The extension is loaded, and the Rust cell is drawn as Rust.
    assert report["plugin"] == {"registered": True, "activated": True}, context
    rust, python, call = (report["highlight"][k] for k in ("rust", "python", "pythonCall"))
    assert rust["marker"] == "rust", context
    assert python["marker"] is None, context
    keyword = python["found"]["import"]
    identifier = call["found"]["add"]
    for word in ("pub", "fn"):
        # In Python mode these are plain names, drawn like `add`; as Rust they are keywords.
        token = rust["found"][word]
        assert (token["color"], token["fontWeight"]) == (keyword["color"], keyword["fontWeight"]), context
        assert (token["color"], token["fontWeight"]) != (identifier["color"], identifier["fontWeight"]), context
    assert not [m for m in report["console"] if "ipy-rustasync" in m], context

    # Run All: the documented outputs.
    assert report["runAll"] is True, context
    cells = report["afterRunAll"]
    assert all(c["executionCount"] for c in cells), context
    assert "'Hello, Alice!'" in output_of(cells, 'await say_after(20, "Alice")'), context
    assert summaries(output_of(cells, "%%rust_async"), "built in", "cached"), context

    # The edited cell rebuilt (warm: the dependencies were built by the session fixture).
    rerun = report["rerun"]
    assert "error" not in rerun, context
    assert nonce in rerun["source"], context
    assert summaries(rerun["output"], "built in"), context
    assert report["highlightAfterEdit"]["marker"] == "rust", context
    assert report["highlightAfterEdit"]["found"]["fn"]["color"] == keyword["color"], context
    # While it rebuilt, the progress display showed cargo's count of units.
    assert any(re.match(r"rust_async: compiling \d+/\d+: ira_", s) for s in report["statuses"]), context
    # Broken on purpose: the error names the line as the editor numbers it (the magic line is line 1) ...
    broken = report["broken"]
    assert "error" not in broken, context
    line, text = next(
        (n, t) for n, t in enumerate(broken["source"].splitlines(), start=1) if t.startswith("pub fn broken_")
    )
    column = text.index('"text"') + 1
    assert f"--> cell line {line}, column {column}" in broken["output"], context
    assert f"first: mismatched types (cell line {line})" in broken["output"], context
    assert f"{line} | {text}" in broken["output"], context  # the quoted line's gutter
    assert "mismatched types" in broken["output"] and "src/lib.rs" not in broken["output"], context
    # ... which is the line JupyterLab's status bar shows with the cursor on the source the error marks.
    shown = re.fullmatch(r"Ln (\d+), Col (\d+)", (broken.get("statusBar") or {}).get("text") or "")
    assert shown, context
    assert int(shown[1]) == line, context
    assert column < int(shown[2]) < column + len('"text"'), context


def test_live_demo_in_jupyterlab(
    lab: Lab,
    chromium: Path,
    node_modules: Path,  # playwright-core installed
    tmp_path: Path,
) -> None:
    """The lecturer's first ten minutes (issue 13) in JupyterLab: Rust prints in the
    order things happened, an object's async methods called by 100 tasks, and a mistake
    whose error names the line the editor numbers."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    report = drive(lab, chromium, shots, secrets.token_hex(8), notebook="live_demo.ipynb", run_all_only=True)
    context = f"\n{json.dumps(report, indent=1)[-6000:]}\nJupyterLab log:\n{lab.log_tail()}"
    assert "error" not in report, context
    cells = report["afterRunAll"]
    printed = output_of(cells, 'print("before")')
    assert printed.split("\n")[:5] == [
        "before",
        "hello from a tokio worker 1",
        "after the sleep 1",
        "hello from a plain fn",
        "after",
    ], context
    assert "count: 100" in output_of(cells, "import asyncio"), context
    broken = next(c for c in cells if '"forty-two"' in c["source"])
    line = next(n for n, t in enumerate(broken["source"].splitlines(), start=1) if '"forty-two"' in t)
    assert f"--> cell line {line}, column 5" in broken["output"], context
