"""Printing from Rust in a real kernel (issue 13), read back the way a notebook shows it:
one notebook run by nbclient, each test reading the outputs of its own cells. Rust's
``print!``/``println!``/``eprint!``/``eprintln!``/``dbg!`` land in the output of the
cell that runs, in order with Python's own ``print``, on the stream they were written to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

RUST = r"""%%rust_async
use std::time::Duration;

/// The issue's example: prints from a tokio worker around a sleep.
pub async fn hello_async(n: u32) {
    println!("hello from a tokio worker {n}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!("after the sleep {n}");
}

pub fn hello_plain() {
    println!("hello from a plain fn");
}

pub fn no_newline() {
    print!("no-newline");
}

pub fn both_streams(x: i64) -> i64 {
    println!("to stdout");
    eprintln!("to stderr");
    eprint!("half ");
    dbg!(x + 1)
}

/// Prints from a `spawn_blocking` thread and from a spawned task, each awaited.
pub async fn from_other_threads() {
    tokio::task::spawn_blocking(|| println!("from spawn_blocking")).await.unwrap();
    tokio::spawn(async { println!("from tokio::spawn") }).await.unwrap();
    println!("back in the future");
}

static LATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts a task that prints after the cell that started it has finished.
pub fn start_late(ms: u64) {
    ipy_rustasync::runtime().unwrap().spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        println!("late output");
        LATE.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Whether the late task has printed (its text may still wait in the queue).
pub fn late_printed() -> bool {
    LATE.load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits, holding the GIL, for a task that prints before it answers.
pub fn blocks_on_worker() -> u32 {
    let (tx, rx) = std::sync::mpsc::channel();
    ipy_rustasync::runtime().unwrap().spawn(async move {
        println!("worker prints first");
        tx.send(7).unwrap();
    });
    rx.recv().unwrap()
}
"""

#: The notebook: (key, source). Each test reads the outputs of the cells it names.
CELLS: list[tuple[str, str]] = [
    ("load", "%load_ext ipy_rustasync"),
    # A first cell module awaited once: the wake-up channel of the kernel's loop is
    # registered while this cell runs, and later cells' output must not follow it here.
    ("first", '%%rust_async\npub async fn first() -> u8 {\n    println!("first cell");\n    1\n}\n'),
    ("await_first", "one = await first()"),
    ("rust", RUST),
    ("issue", 'print("before")\nawait hello_async(1)\nhello_plain()\nprint("after")'),
    ("no_newline", "no_newline()"),
    ("next", 'print("next")'),
    ("mid_line", 'print("py", end="")\nno_newline()\nprint("-", end="")\nhello_plain()\nprint(" 1")'),
    ("streams", "both_streams(41)"),
    ("threads", 'print("start")\nawait from_other_threads()\nprint("end")'),
    (
        "redirect",
        "import contextlib, io\nbuf = io.StringIO()\nwith contextlib.redirect_stdout(buf):\n"
        "    await hello_async(2)\n    hello_plain()\nprint(repr(buf.getvalue()))",
    ),
    ("blocks", "print(blocks_on_worker())"),
    ("late_start", 'print("started")\nstart_late(200)'),
    (
        "late_wait",
        # The writer thread may write the late text while this cell sleeps; if it has not
        # by the time the plain fn returns, that return writes it first.
        "import time\nwhile not late_printed():\n    time.sleep(0.01)\nhello_plain()",
    ),
    ("alive", "1 + 1"),
]


@pytest.fixture(scope="module")
def outputs() -> dict[str, list[dict[str, Any]]]:
    """Runs the notebook once in a fresh kernel; each cell's outputs by key."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for _, source in CELLS]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return {key: list(cell.outputs) for (key, _), cell in zip(CELLS, nb.cells, strict=True)}


def streams(outputs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The cell's stream outputs as (name, text), consecutive ones of a stream joined."""
    joined: list[tuple[str, str]] = []
    for out in outputs:
        assert out["output_type"] == "stream", out
        if joined and joined[-1][0] == out["name"]:
            joined[-1] = (out["name"], joined[-1][1] + out["text"])
        else:
            joined.append((out["name"], out["text"]))
    return joined


def lines(*texts: str) -> str:
    return "".join(f"{text}\n" for text in texts)


def test_the_issues_example_prints_in_the_order_the_program_ran(outputs: dict[str, list[dict[str, Any]]]) -> None:
    assert streams(outputs["await_first"]) == [("stdout", "first cell\n")]
    assert streams(outputs["issue"]) == [
        (
            "stdout",
            lines("before", "hello from a tokio worker 1", "after the sleep 1", "hello from a plain fn", "after"),
        )
    ]


def test_print_without_a_newline_stays_in_its_own_cell(outputs: dict[str, list[dict[str, Any]]]) -> None:
    assert streams(outputs["no_newline"]) == [("stdout", "no-newline")]
    assert streams(outputs["next"]) == [("stdout", "next\n")]


def test_rust_and_python_text_never_interleave_mid_line(outputs: dict[str, list[dict[str, Any]]]) -> None:
    assert streams(outputs["mid_line"]) == [("stdout", "pyno-newline-hello from a plain fn\n 1\n")]


def test_stderr_stays_stderr_and_dbg_names_the_cell_line(outputs: dict[str, list[dict[str, Any]]]) -> None:
    got = streams([out for out in outputs["streams"] if out["output_type"] == "stream"])
    assert [name for name, _ in got] == ["stdout", "stderr"]
    assert got[0][1] == "to stdout\n"
    # The line number itself is checked against a panic's `cell_line` in test_printing.py.
    assert re.fullmatch(r"to stderr\nhalf \[cell line \d+:5\] x \+ 1 = 42\n", got[1][1]), got
    (result,) = [out for out in outputs["streams"] if out["output_type"] == "execute_result"]
    assert result["data"]["text/plain"] == "42"  # dbg! returns its value


def test_spawn_blocking_and_spawned_tasks_print_in_order(outputs: dict[str, list[dict[str, Any]]]) -> None:
    assert streams(outputs["threads"]) == [
        ("stdout", lines("start", "from spawn_blocking", "from tokio::spawn", "back in the future", "end"))
    ]


def test_redirect_stdout_sees_rust_output(outputs: dict[str, list[dict[str, Any]]]) -> None:
    expected = lines("hello from a tokio worker 2", "after the sleep 2", "hello from a plain fn")
    assert streams(outputs["redirect"]) == [("stdout", repr(expected) + "\n")]


def test_a_sync_call_waiting_on_a_printing_worker_does_not_hang(outputs: dict[str, list[dict[str, Any]]]) -> None:
    # Had it hung, nbclient would have timed out; the worker's line comes first.
    assert streams(outputs["blocks"]) == [("stdout", "worker prints first\n7\n")]


def test_late_output_of_a_task_arrives_once_without_errors(outputs: dict[str, list[dict[str, Any]]]) -> None:
    # The task printed 0.2 s after its cell ended, while no Rust call ran: ipykernel
    # gives output from outside any cell to the cell it last started (as it does a
    # Python thread's), the next one unless that had not started yet.
    texts = ["".join(text for _, text in streams(outputs[key])) for key in ("late_start", "late_wait")]
    assert texts[0].startswith("started\n")
    assert "".join(texts) == lines("started", "late output", "hello from a plain fn"), texts
    assert [out["data"]["text/plain"] for out in outputs["alive"]] == ["2"]
    for key, cell_outputs in outputs.items():
        assert all(out["output_type"] != "error" for out in cell_outputs), (key, cell_outputs)
