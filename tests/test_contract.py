"""The user contract of issue 2, in a real IPython shell (terminal kind: its loop
stops between cells) with real maturin builds."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from ipy_rustasync import RustCompileError, RustError, RustPanic

from .conftest import Shell, cell

QUICK = """
/// Says hello after `ms` milliseconds.
pub async fn say_after(ms: u64, who: String) -> String {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    format!("Hello, {who}!")
}

pub fn add(a: i64, b: i64) -> i64 { a + b }
"""

EXPORTER = r"""
use std::collections::HashMap;

/// Adds one.
///
/// Second paragraph.
#[inline]
pub fn inc(x: i64) -> i64 { helper(x) }

fn helper(x: i64) -> i64 { x + 1 }
pub(crate) fn crate_only() -> i64 { 1 }
pub(super) fn super_only() -> i64 { 2 }

/// Generic and bounded with `where`: Rust-only, so not exported but not confusing either.
fn generic<T>(t: T) -> T where T: Clone { t.clone() }

pub struct NotExported;

mod inner {
    pub fn nested() -> i64 { 3 }
}

pub fn uses_all() -> i64 { crate_only() + super_only() + generic(inner::nested()) }

pub fn floats(x: f64) -> f64 { x * 2.0 }
pub fn flag(b: bool) -> bool { !b }
pub fn text(s: &str) -> String { s.to_uppercase() }
pub fn items(v: Vec<i32>) -> Vec<i32> { v.into_iter().rev().collect() }
pub fn counts(words: Vec<String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in words { *m.entry(w).or_insert(0) += 1; }
    m
}
pub fn maybe(x: Option<i64>) -> Option<i64> { x.map(|v| v * 10) }
pub fn pair(t: (i64, String)) -> (String, i64) { (t.1, t.0) }
pub fn unit() {}
pub fn explicit_unit() -> () {}
pub async fn async_unit() {}
pub async fn async_vec(n: u32) -> Vec<u32> { (0..n).collect() }

pub fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 { Err(format!("cannot divide {a} by zero")) } else { Ok(a / b) }
}
pub async fn parse_later(s: String) -> Result<i64, std::num::ParseIntError> {
    tokio::task::yield_now().await;
    s.parse::<i64>()
}
pub async fn boom(msg: String) -> i64 {
    tokio::task::yield_now().await;
    panic!("{}", msg)
}
pub fn boom_sync() -> i64 { panic!("sync boom") }
pub async fn spawned() -> usize {
    let handles: Vec<_> = (0..4).map(|i| tokio::spawn(async move { i * 2 })).collect();
    let mut total = 0;
    for h in handles { total += h.await.unwrap(); }
    total
}
pub async fn uses_futures() -> Vec<u64> {
    let futs = (1..=3u64).map(|i| async move { i * i });
    futures::future::join_all(futs).await
}
pub fn is_release() -> bool { !cfg!(debug_assertions) }
"""


@pytest.fixture(scope="module")
def sh(shell: Shell) -> Shell:
    shell.rust(QUICK)
    shell.rust(EXPORTER)
    return shell


def test_async_and_sync_functions_are_bound_and_awaitable(sh: Shell) -> None:
    # Top-level await in terminal IPython: the loop runs only during this cell.
    sh.run("r = await say_after(20, 'Alice')")
    assert sh.ns["r"] == "Hello, Alice!"
    assert sh.ns["add"](2, 3) == 5


def test_awaitable_is_a_coroutine_for_asyncio_apis(sh: Shell) -> None:
    say_after = sh.ns["say_after"]
    aw = say_after(1, "x")
    assert asyncio.iscoroutine(aw)
    assert asyncio.run(aw) == "Hello, x!"

    async def main() -> list[str]:
        task = asyncio.create_task(say_after(5, "task"))
        gathered = await asyncio.gather(*(say_after(5, str(i)) for i in range(3)))
        timed = await asyncio.wait_for(say_after(1, "w"), timeout=5)
        return [await task, *gathered, timed]

    assert asyncio.run(main()) == ["Hello, task!", "Hello, 0!", "Hello, 1!", "Hello, 2!", "Hello, w!"]


def test_awaitable_binds_at_first_await_not_at_call(sh: Shell) -> None:
    # Created in one cell (no loop running), awaited in the next (a new loop run).
    sh.run("pending = say_after(1, 'later')")
    sh.run("got = await pending")
    assert sh.ns["got"] == "Hello, later!"
    # And created outside any loop, awaited inside asyncio.run's fresh loop.
    aw = sh.ns["say_after"](1, "run")
    assert asyncio.run(aw) == "Hello, run!"


def test_reawaiting_a_finished_awaitable_raises(sh: Shell) -> None:
    aw = sh.ns["say_after"](0, "once")
    asyncio.run(aw)
    with pytest.raises(RuntimeError):
        asyncio.run(aw)


def test_exporter_binds_only_plain_pub_functions(sh: Shell) -> None:
    for private in ("helper", "crate_only", "super_only", "generic", "NotExported", "nested"):
        assert private not in sh.ns, private
    assert sh.ns["uses_all"]() == 1 + 2 + 3
    assert sh.ns["inc"](1) == 2


def test_docs_and_signature(sh: Shell) -> None:
    say_after = sh.ns["say_after"]
    assert "Says hello after `ms` milliseconds." in say_after.__doc__
    assert "async fn say_after(ms: u64, who: String) -> String" in say_after.__doc__
    assert str(inspect.signature(say_after)) == "(ms, who)"
    assert "Second paragraph." in sh.ns["inc"].__doc__
    sh.run("import pydoc; helptext = pydoc.render_doc(say_after)")
    assert "async fn say_after(ms: u64, who: String) -> String" in sh.ns["helptext"]


def test_conversions_like_pyo3(sh: Shell) -> None:
    ns = sh.ns
    assert ns["floats"](1.25) == 2.5
    assert ns["flag"](False) is True
    assert ns["text"]("abc") == "ABC"
    assert ns["items"]([1, 2, 3]) == [3, 2, 1]
    assert ns["counts"](["a", "b", "a"]) == {"a": 2, "b": 1}
    assert ns["maybe"](None) is None
    assert ns["maybe"](4) == 40
    assert ns["pair"]((7, "x")) == ("x", 7)
    assert ns["unit"]() is None
    assert ns["explicit_unit"]() is None
    assert asyncio.run(ns["async_unit"]()) is None
    assert asyncio.run(ns["async_vec"](3)) == [0, 1, 2]


def test_wrong_arguments_raise_type_error(sh: Shell) -> None:
    with pytest.raises(TypeError):
        sh.ns["add"](1)
    with pytest.raises(TypeError, match="b"):
        sh.ns["add"](1, "two")
    with pytest.raises(OverflowError):
        sh.ns["add"](2**70, 1)


def test_result_err_raises_with_message(sh: Shell) -> None:
    assert sh.ns["checked_div"](6, 3) == 2
    with pytest.raises(RustError, match="cannot divide 1 by zero"):
        sh.ns["checked_div"](1, 0)
    with pytest.raises(RustError, match="invalid digit") as info:
        asyncio.run(sh.ns["parse_later"]("x1"))
    assert "ParseIntError" in info.value.rust_type


def test_panic_raises_rust_panic_and_the_shell_lives(sh: Shell) -> None:
    with pytest.raises(RustPanic, match="it broke") as info:
        asyncio.run(sh.ns["boom"]("it broke"))
    assert info.value.rust_message == "it broke"
    with pytest.raises(RustPanic, match="sync boom"):
        sh.ns["boom_sync"]()
    err = sh.fails("await boom('in a cell')")
    assert isinstance(err, RustPanic)
    assert sh.ns["add"](1, 1) == 2


def test_tokio_and_futures_need_no_declaration(sh: Shell) -> None:
    assert asyncio.run(sh.ns["spawned"]()) == 0 + 2 + 4 + 6
    assert asyncio.run(sh.ns["uses_futures"]()) == [1, 4, 9]


def test_pyo3_is_available_to_advanced_cells(sh: Shell) -> None:
    sh.rust(
        """
        use pyo3::prelude::*;

        #[pyfunction]
        pub fn py_len(obj: &Bound<'_, PyAny>) -> PyResult<usize> { obj.len() }

        #[pyclass]
        pub struct Counter { #[pyo3(get)] n: u64 }

        #[pymethods]
        impl Counter {
            #[new]
            fn new() -> Self { Counter { n: 0 } }
            fn bump(&mut self) -> u64 { self.n += 1; self.n }
        }
        """
    )
    assert sh.ns["py_len"]([1, 2, 3]) == 3
    counter = sh.ns["Counter"]()
    counter.bump()
    assert counter.bump() == 2


def test_release_flag_builds_optimized(sh: Shell) -> None:
    assert sh.ns["is_release"]() is False
    sh.rust("pub fn is_release() -> bool { !cfg!(debug_assertions) }", "--release")
    assert sh.ns["is_release"]() is True


def test_unchanged_cell_is_cached_and_force_rebuilds(sh: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    source = "pub fn cached_probe() -> u8 { 7 }"
    sh.rust(source)
    capsys.readouterr()
    sh.rust(source)
    assert "rust_async: cached" in capsys.readouterr().out
    sh.rust(source, "--force")
    assert "built in" in capsys.readouterr().out
    assert sh.ns["cached_probe"]() == 7


def test_edited_cell_rebinds_and_old_objects_keep_working(sh: Shell) -> None:
    sh.rust("pub fn version() -> u8 { 1 }")
    old = sh.ns["version"]
    sh.rust("pub fn version() -> u8 { 2 }")
    assert sh.ns["version"]() == 2
    assert old() == 1
    assert old.__module__ != sh.ns["version"].__module__


def test_rebuilt_cell_summarises_and_applies_what_changed(sh: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    """With a notebook cell id (ipykernel and nbclient send one), a rebuilt cell
    reports names new, replaced and removed, and unbinds the ones it dropped."""

    def run(source: str) -> str:
        result = sh.ip.run_cell("%%rust_async\n" + cell(source), cell_id="summary-cell")
        assert result.success, result.error_in_exec
        return capsys.readouterr().out

    first = run("pub fn keep() -> u8 { 1 }\npub fn dropped() -> u8 { 2 }\npub async fn later() -> u8 { 3 }")
    assert first.rstrip().endswith("keep, dropped, later (async)")
    second = run("pub fn keep() -> u8 { 10 }\npub fn fresh() -> u8 { 4 }")
    assert second.rstrip().endswith("keep, fresh (new: fresh; replaced: keep; removed: dropped, later)")
    assert "dropped" not in sh.ns and "later" not in sh.ns
    assert sh.ns["keep"]() == 10
    # A name the user has reassigned since is theirs: never removed.
    sh.ns["fresh"] = 42
    third = run("pub fn keep() -> u8 { 11 }")
    assert third.rstrip().endswith("keep (replaced: keep)")
    assert sh.ns["fresh"] == 42


def test_a_long_export_list_is_one_short_line_in_a_terminal(sh: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    body = "".join(f"pub fn wide_{i:03}() -> u32 {{ {i} }}\n" for i in range(250))
    result = sh.ip.run_cell(f"%%rust_async\n// {time.time_ns()}\n{body}", cell_id="wide-cell")
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    (line,) = [text for text in out.splitlines() if text.startswith("rust_async: built in")]
    assert line.endswith(
        ": 250 exports: 250 functions; wide_000, wide_001, wide_002, wide_003, wide_004, …, wide_247, wide_248, wide_249"
    ), line
    assert "wide_100" not in out and "<details" not in out  # no list, no HTML in a terminal
    assert sh.ns["wide_100"]() == 100  # every one is bound all the same
    sh.ip.run_line_magic("rust_async", "")
    shown = capsys.readouterr().out
    assert ": 250 exports: wide_000, wide_001, wide_002, wide_003, wide_004, …, wide_247, wide_248, wide_249" in shown


def test_dep_flag_adds_a_crate(sh: Shell) -> None:
    sh.rust(
        """
        pub fn fmt_int(n: i64) -> String { itoa::Buffer::new().format(n).to_owned() }
        """,
        "--dep itoa@1",
    )
    assert sh.ns["fmt_int"](-42) == "-42"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--relase", "unrecognized arguments: --relase"),
        ("--dep", "expected one argument"),
        ("--dep 'evil\" = 1'", "a crate name is letters"),
        ("--dep serde@latest", "not a cargo version requirement"),
    ],
)
def test_bad_flags_get_one_line_errors(sh: Shell, flags: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = sh.ip.run_cell(f"%%rust_async {flags}\npub fn f() {{}}\n")
    assert not result.success
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert message in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("%%rust_async --nest\npub fn f() {}\n", "--nest is a line-magic option: use it as `%rust_async --nest ...`"),
        ("%%rust_async --lock=off\npub fn f() {}\n", "--lock is a line-magic option"),
        (
            "%rust_async --release",
            "--release applies to a %%rust_async cell; for the default use `ipy-rustasync config",
        ),
        ("%rust_async --dep itoa@1", "--dep applies to a %%rust_async cell"),
        ("%rust_async --bogus", "unrecognized arguments: --bogus"),
    ],
)
def test_a_flag_of_the_other_magic_says_where_it_belongs(
    sh: Shell, code: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = sh.ip.run_cell(code)
    assert not result.success
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err


def test_each_magic_has_its_own_parser_and_help(sh: Shell) -> None:
    cell_help = sh.ip.find_cell_magic("rust_async").__doc__
    line_help = sh.ip.find_line_magic("rust_async").__doc__
    for flag in ("--release", "--debug", "--force", "--dep", "--export"):
        assert flag in cell_help and flag not in line_help, flag
    for flag in ("--lock", "--offline-crates", "--online", "--nest", "--no-nest", "--warm", "--clear-cache"):
        assert flag in line_help and flag not in cell_help, flag
    assert cell_help.startswith("::\n\n  %%rust_async ") and line_help.startswith("::\n\n  %rust_async ")


def test_compile_error_has_the_cells_own_line_numbers(sh: Shell) -> None:
    err = sh.fails(
        """
        %%rust_async
        /// doc line
        pub fn broken(a: i64) -> i64 {
            let s: String = a;
            a
        }
        """
    )
    assert isinstance(err, RustCompileError)
    text = str(err)
    # The editor's lines: the %%rust_async line is line 1.
    assert "cell line 4, column 21" in text
    assert "4 |     let s: String = a;" in text
    first = err.diagnostics[0]
    assert (first.line, first.column, first.code) == (4, 21, "E0308")  # type: ignore[attr-defined]


def test_exporter_errors_point_at_the_cell(sh: Shell) -> None:
    err = sh.fails(
        """
        %%rust_async
        pub fn ok() {}

        pub fn twice<T: Clone>(t: T) -> (T, T) { (t.clone(), t) }
        """
    )
    assert isinstance(err, RustCompileError)
    assert "cell line 4" in str(err)


def test_empty_cell_and_nothing_exported(sh: Shell) -> None:
    err = sh.fails("%%rust_async\n\n")
    assert "cell body is empty" in str(err)  # IPython's own message for an empty body
    err = sh.fails("%%rust_async\n// only a comment\n")
    assert "exports nothing" in str(err)
    err = sh.fails("%%rust_async\nfn private() {}\n")
    assert "exports nothing" in str(err)
