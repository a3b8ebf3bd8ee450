"""What many test files do alike: run a Python snippet in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path


def run_python(
    code: str,
    *argv: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    exe: str = sys.executable,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``exe -c code *argv`` (``code`` dedented) and returns what it did, its
    output as text; a non-zero exit is returned, not raised, so the caller's assert
    can show ``stderr``. A fresh interpreter is a kernel restart, as far as caching
    goes. The child gets this process's environment (the session fixture points it at
    the test cache) with ``env`` on top."""
    return subprocess.run(
        [exe, "-c", textwrap.dedent(code), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
