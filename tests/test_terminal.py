"""Terminal IPython (the app, not a kernel) running a ``.ipy`` session: its asyncio loop
runs only while a cell with top-level ``await`` runs and stops between cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parent / "data" / "terminal_demo.ipy"


def test_terminal_ipython_session_with_top_level_await() -> None:
    ipython = Path(sys.executable).parent / "ipython"
    with DEMO.open() as stdin:
        out = subprocess.run(
            [str(ipython), "--simple-prompt", "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    text = out.stdout + out.stderr
    assert "rust_async: built in" in text or "rust_async: cached" in text, text
    assert "twice (async)" in text
    assert "RESULT 42" in text  # created in one cell, awaited in the next
    assert "LOOP RUNNING BETWEEN CELLS False" in text
    assert "NEXT 100" in text
    assert "SYNC 4" in text
    # Rust's println! goes through sys.stdout, so it keeps its place among Python's
    # prints even though stdout is a pipe here (block-buffered: Rust writing to the file
    # descriptor would come out before everything Python printed).
    assert "before\nhello from a tokio worker 1\nafter the sleep 1\nhello from a plain fn\nafter\n" in out.stdout
    assert (
        "before sync\nhello from a tokio worker 2\nafter the sleep 2\nhello from a plain fn\nafter sync\n" in out.stdout
    )
    assert "no-newline|\n" in out.stdout  # not held back for a later newline
    assert "CAPTURED 'hello from a plain fn\\n'" in out.stdout
    assert out.stderr.count("to stderr from a plain fn\n") == 3
    assert "to stderr" not in out.stdout
    assert "Traceback" not in text, text
    assert "\x1b[" not in out.stdout.replace("\x1b[0m", ""), "status escapes written to a pipe"
