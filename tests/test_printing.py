"""Printing from Rust (issue 13), in this process: a cell's ``print!``, ``println!``,
``eprint!``, ``eprintln!`` and ``dbg!`` go to ``sys.stdout``/``sys.stderr`` as they are
at the time (so ``contextlib.redirect_stdout`` sees them), in the order the program
wrote them relative to Python's own output, from every kind of thread. The kernel's
view of the same is in test_printing_kernel.py, terminal IPython's in test_terminal.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
import time
from collections.abc import Callable
from types import ModuleType

import pytest

import ipy_rustasync
from ipy_rustasync import RustPanic, rust_module

from .helpers import run_python

PRINTING = r"""
use std::time::Duration;

pub async fn hello_async(n: u32) {
    println!("hello from a tokio worker {n}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!("after the sleep {n}");
}

pub fn hello_plain() {
    println!("hello from a plain fn");
}

pub fn both_streams() {
    print!("out ");
    eprint!("err ");
    println!("line");
    eprintln!("line");
    println!();
}

pub fn debug(x: i64) -> i64 {
    let y = dbg!(x * 2);
    dbg!();
    let (a, b) = dbg!(a_value(), "two",);
    y + a + b.len() as i64
}
pub fn panic_below_debug() { panic!("a line whose cell_line the test reads") }
fn a_value() -> i64 { 1 }

pub fn file_name() -> String { format!("{}|{}", file!(), concat!(file!(), "!")) }

mod inner {
    pub fn shout() { println!("from an inner module"); }
}
pub fn from_inner_module() { inner::shout(); }

/// Prints from every kind of thread, each awaited or joined before the next.
pub async fn from_every_thread() {
    println!("future on a worker");
    tokio::task::spawn_blocking(|| println!("spawn_blocking")).await.unwrap();
    tokio::spawn(async { println!("tokio::spawn") }).await.unwrap();
    std::thread::spawn(|| println!("std::thread")).join().unwrap();
    println!("future again");
}

#[rust_async(inline)]
pub async fn inline_print() -> u8 {
    println!("inline poll");
    1
}

#[pyo3::pyclass]
pub struct Greeter;

#[pyo3::pymethods]
impl Greeter {
    #[new]
    fn new() -> Self { Greeter }
    async fn greet(&self) {
        println!("from an async method");
    }
    fn greet_now(&self) {
        println!("from a sync method");
    }
}

#[pyo3::pyfunction]
pub async fn own_async_pyfunction() {
    println!("from an async #[pyfunction]");
}

/// `lines` lines, each written by one println! of several pieces.
pub async fn many_lines(worker: u32, lines: u32) {
    for i in 0..lines {
        println!("worker {} line {} {}", worker, i, "x".repeat(40));
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
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

/// Starts a task that prints after `ms` milliseconds; returns at once.
pub fn start_late(ms: u64) {
    ipy_rustasync::runtime().unwrap().spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        println!("late output");
    });
}
"""


@pytest.fixture(scope="module")
def rs() -> ModuleType:
    return rust_module(PRINTING)


def captured(run: Callable[[], object]) -> tuple[str, str]:
    """What ``run()`` wrote to ``sys.stdout`` and ``sys.stderr``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        run()
    return out.getvalue(), err.getvalue()


def lines(*texts: str) -> str:
    return "".join(f"{text}\n" for text in texts)


def test_the_issues_example_prints_in_order_and_redirect_stdout_sees_it(rs: ModuleType) -> None:
    async def cell() -> None:
        print("before")
        await rs.hello_async(1)
        rs.hello_plain()
        print("after")

    out, err = captured(lambda: asyncio.run(cell()))
    assert out == lines("before", "hello from a tokio worker 1", "after the sleep 1", "hello from a plain fn", "after")
    assert err == ""


def test_every_kind_of_thread_prints_in_order(rs: ModuleType) -> None:
    async def cell() -> None:
        print("start")
        await rs.from_every_thread()
        await rs.inline_print()
        rs.from_inner_module()
        print("end")

    out, _ = captured(lambda: asyncio.run(cell()))
    assert out == lines(
        "start",
        "future on a worker",
        "spawn_blocking",
        "tokio::spawn",
        "std::thread",
        "future again",
        "inline poll",
        "from an inner module",
        "end",
    )


def test_pyo3s_own_items_print_in_order_too(rs: ModuleType) -> None:
    async def cell() -> None:
        print("start")
        greeter = rs.Greeter()
        await greeter.greet()
        greeter.greet_now()
        await rs.own_async_pyfunction()
        print("end")

    out, _ = captured(lambda: asyncio.run(cell()))
    assert out == lines("start", "from an async method", "from a sync method", "from an async #[pyfunction]", "end")


def test_ipy_rustasync_run_writes_what_the_future_printed_before_it_returns(rs: ModuleType) -> None:
    def cell() -> None:
        print("before")
        ipy_rustasync.run(rs.hello_async(3))
        print("after")

    assert captured(cell)[0] == lines("before", "hello from a tokio worker 3", "after the sleep 3", "after")


def test_stderr_stays_stderr(rs: ModuleType) -> None:
    out, err = captured(rs.both_streams)
    assert (out, err) == ("out line\n\n", "err line\n")


def test_dbg_shows_the_cell_line_and_returns_its_value(rs: ModuleType) -> None:
    out, err = captured(lambda: print(rs.debug(21)))
    assert out == "46\n"  # 42 + 1 + len("two"): each dbg! returned its value
    with pytest.raises(RustPanic) as panic:
        rs.panic_below_debug()
    # Lines as a panic's `cell_line` counts them, found from the panic's line and the
    # distance between the two in the source (so no line offset is assumed here).
    source = PRINTING.splitlines()
    panic_at = next(i for i, text in enumerate(source) if "fn panic_below_debug" in text)

    def where(needle: str) -> str:
        (index,) = [i for i, text in enumerate(source) if needle in text]
        return f"cell line {panic.value.cell_line - (panic_at - index)}:{source[index].index('dbg!') + 1}"

    assert err == (
        f"[{where('dbg!(x * 2)')}] x * 2 = 42\n"
        f"[{where('dbg!();')}]\n"
        f"[{where('dbg!(a_value()')}] a_value() = 1\n"
        f'[{where("dbg!(a_value()")}] "two" = "two"\n'
    )


def test_file_names_the_cell(rs: ModuleType) -> None:
    assert rs.file_name() == "cell|cell!"


def test_lines_from_many_threads_and_python_never_split(rs: ModuleType) -> None:
    workers, count = 4, 300

    async def python_lines() -> None:
        for i in range(count):
            # One write per line: `print` writes the text and its newline separately, and
            # another thread's text may fall between the two (a Python thread's too).
            sys.stdout.write(f"python line {i} {'y' * 40}\n")
            if i % 50 == 0:
                await asyncio.sleep(0)

    async def cell() -> None:
        await asyncio.gather(python_lines(), *(rs.many_lines(w, count) for w in range(workers)))

    out, _ = captured(lambda: asyncio.run(cell()))
    got = out.splitlines()
    assert len(got) == (workers + 1) * count
    whole = re.compile(r"(worker \d line \d+ x{40}|python line \d+ y{40})")
    assert [line for line in got if not whole.fullmatch(line)] == []
    # Each worker's lines in the order it wrote them.
    for w in range(workers):
        mine = [line for line in got if line.startswith(f"worker {w} ")]
        assert mine == [f"worker {w} line {i} {'x' * 40}" for i in range(count)]


def test_a_sync_fn_waiting_on_a_printing_worker_neither_hangs_nor_reorders() -> None:
    # In a child with a timeout: a hang would stop the whole suite.
    out = run_python(
        f"""
        import contextlib, io
        from ipy_rustasync import rust_module
        rs = rust_module({PRINTING!r})
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            print("before")
            print(rs.blocks_on_worker())
            print("after")
        print(repr(buffer.getvalue()))
        """,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == repr(lines("before", "worker prints first", "7", "after")), out.stdout


def test_a_task_printing_after_its_call_returned_reaches_sys_stdout_while_no_loop_runs(rs: ModuleType) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rs.start_late(20)
        # No loop runs and no Rust call returns: the writer thread writes it.
        deadline = time.monotonic() + 30
        while "late output" not in buffer.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert buffer.getvalue() == "late output\n"


def test_printing_at_interpreter_exit_and_across_fork_is_clean() -> None:
    """A thread of the cell printing nonstop while the interpreter exits, and a forked
    child printing from its own runtime: every line whole, no error, exit code 0."""
    source = (
        PRINTING
        + r"""
    pub fn chatter() {
        std::thread::spawn(|| for i in 0.. {
            println!("chatter {i}");
            std::thread::sleep(std::time::Duration::from_micros(200));
        });
    }
    """
    )
    out = run_python(
        f"""
        import asyncio, os, sys, time
        from ipy_rustasync import rust_module
        rs = rust_module({source!r})
        asyncio.run(rs.hello_async(1))
        sys.stdout.flush()  # else the child would write the parent's buffer again
        pid = os.fork()
        if pid == 0:
            asyncio.run(rs.hello_async(2))
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        rs.chatter()
        time.sleep(0.05)
        sys.stdout.write("main done\\n")  # one write (see the test above)
        """,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" or "DeprecationWarning" in out.stderr, out.stderr  # fork with threads warns on 3.12+
    got = out.stdout.splitlines()
    assert got[:4] == [
        "hello from a tokio worker 1",
        "after the sleep 1",
        "hello from a tokio worker 2",
        "after the sleep 2",
    ]
    assert "main done" in got, out.stdout
    assert all(re.fullmatch(r"chatter \d+", line) for line in got[4:] if line != "main done"), got
