"""Bad input, one table: each case is what a user types into a real Jupyter kernel,
the one message they should see, and the kernel still answering afterwards.

Cases covered elsewhere, with the same promise: a crate missing from the offline
source (tests/test_offline.py), a future that never completes and is interrupted
(tests/test_kernel.py::test_interrupting_an_awaited_cell_drops_the_rust_future).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from .kernels import Kernel, text_of


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    #: "ok" or the exception class name the cell ends with
    outcome: str
    #: a fragment of what the user sees (outputs, warnings, the error)
    shows: str
    #: run first (defines what the case calls)
    setup: str = ""


HELPERS = """%%rust_async
pub fn add(a: i64, b: i64) -> i64 { a + b }
pub async fn block_thread(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}
"""

BIG = "%%rust_async\npub fn big() -> u64 {\n    let mut x = 0u64;\n" + "    x += 1;\n" * 4996 + "    x\n}\n"

CASES = [
    # Lines as the editor numbers them: the %%rust_async line is line 1.
    Case("syntax error", "%%rust_async\npub fn f( -> u8 { 1 }\n", "RustCompileError", "cell line 2"),
    Case(
        "type error",
        '%%rust_async\npub fn f() -> u8 {\n    "one"\n}\n',
        "RustCompileError",
        "first: mismatched types (cell line 3)",
    ),
    Case(
        "future that is not Send",
        "%%rust_async\npub async fn f() -> u8 {\n    let rc = std::rc::Rc::new(1u8);\n"
        "    tokio::task::yield_now().await;\n    *rc\n}\n",
        "RustCompileError",
        "`rc` (a `Rc<u8>`) is held across an `.await`",
    ),
    Case(
        "argument type Python cannot pass",
        "%%rust_async\npub struct P;\npub fn f(p: P) -> u8 { 1 }\n",
        "RustCompileError",
        "`P` cannot come in from Python",
    ),
    Case(
        "return type Python cannot receive",
        "%%rust_async\npub struct Q;\npub fn f() -> Q { Q }\n",
        "RustCompileError",
        "`Q` cannot go back to Python",
    ),
    Case(
        "two exported items with one name",
        '%%rust_async\n#[pyo3::pyfunction]\n#[pyo3(name = "g")]\npub fn g1() -> u8 { 1 }\npub fn g() -> u8 { 2 }\n',
        "RustCompileError",
        "two exported items are both named `g` in Python",
    ),
    Case(
        "a name shadowing a Python builtin (warned, still bound)",
        "%%rust_async\npub fn len(v: Vec<u8>) -> usize { v.len() + 100 }\n",
        "ok",
        "`len` from the Rust cell shadows the Python builtin of that name",
    ),
    Case(
        "a name replacing a user variable (warned, still bound)",
        "%%rust_async\npub fn total_rows() -> u8 { 7 }\n",
        "ok",
        "`total_rows` from the Rust cell replaces an existing variable of the same name",
        setup="total_rows = 3",
    ),
    Case("empty cell", "%%rust_async\n\n", "RustAsyncUsageError", "the cell is empty"),
    Case("a cell exporting nothing", "%%rust_async\nfn private() {}\n", "RustAsyncUsageError", "exports nothing"),
    Case("unknown flag", "%%rust_async --fast\npub fn f() {}\n", "UsageError", "unrecognized arguments: --fast"),
    Case(
        "a --dep that does not exist",
        "%%rust_async --dep no-such-crate-ira-test\npub fn f() {}\n",
        "BuildError",
        "there is no crate named `no-such-crate-ira-test` on crates.io",
    ),
    Case(
        "a --dep with a bad version",
        "%%rust_async --dep itoa@one\npub fn f() {}\n",
        "RustAsyncUsageError",
        "'one' is not a cargo version requirement",
    ),
    Case(
        "a --dep with a version that does not exist",
        "%%rust_async --dep itoa@99\npub fn f() {}\n",
        "BuildError",
        "no version of the crate `itoa` matches '^99'",
    ),
    Case(
        "a --dep trying to inject TOML",
        "%%rust_async --dep 'itoa = \"1\"\\n[patch]'\npub fn f() {}\n",
        "RustAsyncUsageError",
        "a crate name is letters, digits",
    ),
    Case(
        "non-ASCII identifiers and strings",
        '%%rust_async\npub fn grüße(name: String) -> String { format!("Grüße, {name} ✓") }\n',
        "ok",
        "grüße",
    ),
    Case("calling it", 'grüße("Zoë")', "ok", "'Grüße, Zoë ✓'"),
    Case("a 5,000-line cell", BIG, "ok", "big"),
    Case("calling the 5,000-line cell", "big()", "ok", "4996"),
    Case(
        "a cell defining its own #[pymodule]",
        "%%rust_async\n#[pyo3::pymodule]\nmod m {}\n",
        "RustCompileError",
        "a cell cannot define its own #[pymodule]",
    ),
    Case(
        "a cell defining its own #[pyfunction] (supported)",
        "%%rust_async\n#[pyo3::pyfunction]\npub fn twice(x: i64) -> i64 { 2 * x }\n",
        "ok",
        "twice",
    ),
    Case(
        "too few arguments", "add(1)", "TypeError", "add() missing 1 required positional argument: 'b'", setup=HELPERS
    ),
    Case("too many arguments", "add(1, 2, 3)", "TypeError", "takes 2 positional arguments but 3 were given"),
    # PyO3 (0.29+) names the argument in a note on the TypeError rather than its message.
    Case("a wrong argument type", 'add("1", 2)', "TypeError", "while processing 'a'"),
    Case("an integer too big for i64", "add(2**70, 1)", "OverflowError", ""),
    Case(
        "a Rust function blocking its thread for 1.5 s (the loop stays responsive)",
        "import asyncio\n"
        "ticks = 0\n"
        "async def tick():\n"
        "    global ticks\n"
        "    while True:\n"
        "        await asyncio.sleep(0.01)\n"
        "        ticks += 1\n"
        "ticker = asyncio.ensure_future(tick())\n"
        "await block_thread(1500)\n"
        "ticker.cancel()\n"
        "print('ticks while blocked:', ticks, ticks > 40)\n",
        "ok",
        "True",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_message_and_the_kernel_lives(kernel: Kernel, case: Case) -> None:
    if case.setup:
        kernel.ok(case.setup)
    started = time.monotonic()
    reply, messages = kernel.execute(case.code)
    seen = text_of(messages)
    if case.outcome == "ok":
        assert reply["status"] == "ok", seen
    else:
        assert reply["status"] == "error", seen
        assert reply["ename"] == case.outcome, seen
        # One clear message, not a Python traceback into ipy_rustasync's own code.
        assert "ipy_rustasync/" not in seen, seen
    assert case.shows in seen, seen
    assert time.monotonic() - started < 300
    assert kernel.ok("40 + 2") == "42\n"  # still answering
