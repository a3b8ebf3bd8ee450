"""In a real Jupyter kernel (ipykernel, started by jupyter_client): every cell runs
inside the kernel's running asyncio loop, outputs travel as messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from .helpers import run_python
from .kernels import Kernel, text_of

ROOT = Path(__file__).resolve().parent.parent


def test_top_level_await_in_the_kernels_running_loop(kernel: Kernel) -> None:
    out = kernel.ok(
        "%%rust_async\n"
        "pub async fn say_after(ms: u64, who: String) -> String {\n"
        "    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;\n"
        '    format!("Hello, {who}!")\n'
        "}\n"
        "pub fn add(a: i64, b: i64) -> i64 { a + b }\n"
    )
    assert "say_after (async), add" in out
    assert kernel.ok("import asyncio; asyncio.get_running_loop(); await say_after(20, 'Alice')") == "'Hello, Alice!'\n"
    assert kernel.ok("add(2, 3)") == "5\n"
    assert kernel.ok("pending = say_after(1, 'next cell')") == ""
    assert kernel.ok("await pending") == "'Hello, next cell!'\n"


def test_compile_error_stops_run_all_and_names_the_cell_line(kernel: Kernel) -> None:
    reply, messages = kernel.execute('%%rust_async\npub fn broken() -> i64 {\n    "text"\n}\n')
    assert reply["status"] == "error"
    assert reply["ename"] == "RustCompileError"
    text = text_of(messages)
    assert "cell line 3, column 5" in text  # as JupyterLab numbers it: the magic line is line 1
    assert "src/lib.rs" not in text  # the generated file never shows
    # In the notebook: rustc's message as colored HTML, then a one-line traceback.
    shown = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    assert any("<pre" in d.get("text/html", "") and "cell line 3, column 5" in d["text/html"] for d in shown)
    assert reply["traceback"] == [
        "RustCompileError: the cell did not compile: 1 error; first: mismatched types (cell line 3)"
    ]


def test_build_progress_updates_one_output_in_place(kernel: Kernel) -> None:
    nonce = time.time_ns()
    reply, messages = kernel.execute(f"%%rust_async\npub async fn progress_{nonce}() -> u64 {{ {nonce % 1000} }}\n")
    assert reply["status"] == "ok"
    outputs = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data", "stream")]
    # One display, created once, updated in place (a bar while cargo runs), and left
    # as the one-line summary: no scroll of lines.
    assert outputs[0]["msg_type"] == "display_data"
    display_id = outputs[0]["content"]["transient"]["display_id"]
    assert "<progress" in outputs[0]["content"]["data"]["text/html"]
    assert all(m["msg_type"] == "update_display_data" for m in outputs[1:])
    assert {m["content"]["transient"]["display_id"] for m in outputs[1:]} == {display_id}
    final = outputs[-1]["content"]["data"]
    assert re.match(rf"rust_async: built in \d+\.\d\d s: progress_{nonce} \(async\)", final["text/plain"])
    assert "text/html" not in final


def many_functions(count: int, nonce: int) -> str:
    """A generated cell of ``count`` plain functions and one async one."""
    body = "".join(f"pub fn many_{i:03}(x: u32) -> u32 {{ x + {i} }}\n" for i in range(count))
    return f"%%rust_async\n// {nonce}\n{body}pub async fn many_async() -> u8 {{ 1 }}\n"


def final_summary(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the build's display as it was left: the summary line."""
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    data: dict[str, str] = shown[-1]["content"]["data"]
    assert data["text/plain"].startswith("rust_async: "), shown
    return data


def test_a_long_export_list_is_summarized_and_the_full_list_is_one_click_away(kernel: Kernel) -> None:
    count, nonce = 300, time.time_ns()
    reply, messages = kernel.execute(many_functions(count, nonce))
    assert reply["status"] == "ok", reply
    summary = final_summary(messages)
    # The plain line: counts, the first and last few names.
    assert re.fullmatch(
        r"rust_async: built in \d+\.\d\d s: 301 exports: 300 functions, 1 async function; "
        r"many_000, many_001, many_002, many_003, many_004, …, many_298, many_299, many_async \(async\)",
        summary["text/plain"],
    ), summary["text/plain"]
    # In the notebook, the same line folds every name, one click away.
    page = summary["text/html"]
    assert page.startswith("<details") and f"<summary>{summary['text/plain']}</summary>" in page
    assert all(f"many_{i:03}, " in page for i in range(count)) and "many_async (async)" in page
    assert kernel.ok("many_299(1), await many_async()") == "(300, 1)\n"
    # Rebuilt: the replaced names are summarized too, and folded in full.
    reply, messages = kernel.execute(many_functions(count, nonce + 1))
    assert reply["status"] == "ok", reply
    summary = final_summary(messages)
    assert summary["text/plain"].endswith(
        "(301 replaced: many_000, many_001, many_002, many_003, many_004, …, many_298, many_299, many_async)"
    ), summary["text/plain"]
    assert "replaced (301): many_000, many_001," in summary["text/html"]
    # A short list stays one plain line, as before.
    reply, messages = kernel.execute(f"%%rust_async\n// {nonce}\npub fn few() -> u8 {{ 1 }}\n")
    assert reply["status"] == "ok", reply
    assert "text/html" not in final_summary(messages)


def test_panic_leaves_the_kernel_alive(kernel: Kernel) -> None:
    kernel.ok('%%rust_async\npub async fn explode() -> u8 { panic!("kaboom") }\n')
    reply, _ = kernel.execute("await explode()")
    assert reply["status"] == "error"
    assert reply["ename"] == "RustPanic"
    assert "kaboom" in reply["evalue"]
    assert kernel.ok("1 + 1") == "2\n"


def test_unknown_flag_is_a_usage_error_not_a_traceback(kernel: Kernel) -> None:
    reply, messages = kernel.execute("%%rust_async --nope\npub fn f() {}\n")
    assert reply["status"] == "error"
    text = text_of(messages)
    assert "unrecognized arguments: --nope" in text
    assert "Traceback" not in text


GATE = """%%rust_async
static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
pub async fn hold_gate(ms: u64) -> u64 {
    let _guard = GATE.lock().await;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    ms
}
pub async fn take_gate() -> bool { let _guard = GATE.lock().await; true }
"""


def test_interrupting_an_awaited_cell_drops_the_rust_future(kernel: Kernel) -> None:
    kernel.ok(GATE)
    msg_id = kernel.kc.execute("await hold_gate(60_000)")
    time.sleep(1.0)
    kernel.km.interrupt_kernel()
    deadline = time.monotonic() + 30
    while True:
        reply = kernel.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error"
    # The Rust future (and the lock it held) is gone: the next call gets the gate at once.
    assert kernel.ok("import asyncio\nawait asyncio.wait_for(take_gate(), 0.5)") == "True\n"


def _send(kernel: Kernel, msg_type: str, content: dict[str, Any], subshell_id: str | None = None) -> str:
    msg = kernel.kc.session.msg(msg_type, content)
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    channel = kernel.kc.control_channel if msg_type.endswith("subshell_request") else kernel.kc.shell_channel
    channel.send(msg)
    return str(msg["header"]["msg_id"])


def _reply(kernel: Kernel, msg_id: str, control: bool = False) -> dict[str, Any]:
    channel = kernel.kc.control_channel if control else kernel.kc.shell_channel
    while True:
        msg = channel.get_msg(timeout=120)
        if msg["parent_header"].get("msg_id") == msg_id:
            return dict(msg["content"])


def test_subshells_await_on_their_own_thread_and_loop(kernel: Kernel) -> None:
    """ipykernel 7 subshells run cells on their own thread and loop, alongside the main
    shell: an awaitable binds to the loop that awaits it, so both await Rust at once."""
    kernel.ok(
        "%%rust_async\n"
        "pub async fn echo_after(ms: u64, x: i64) -> i64 {\n"
        "    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;\n"
        "    x\n"
        "}\n"
    )
    created = _reply(kernel, _send(kernel, "create_subshell_request", {}), control=True)
    subshell = created["subshell_id"]
    # The main shell awaits a slow Rust future; meanwhile the subshell awaits a quick one.
    slow = _send(kernel, "execute_request", {"code": "main_result = await echo_after(3000, 1)", "silent": False})
    time.sleep(0.5)
    code = (
        "import asyncio, threading\n"
        "sub_result = await echo_after(20, 2)\n"
        "sub_thread = threading.current_thread() is not threading.main_thread()\n"
        "sub_sync = ipy_rustasync.run(echo_after(5, 3))\n"
    )
    fast = _send(kernel, "execute_request", {"code": "import ipy_rustasync\n" + code}, subshell_id=subshell)
    fast_reply = _reply(kernel, fast)
    assert fast_reply["status"] == "ok", fast_reply
    started = time.monotonic()
    slow_reply = _reply(kernel, slow)
    assert slow_reply["status"] == "ok", slow_reply
    assert time.monotonic() - started > 0.5, "the subshell's cell waited for the main shell's"
    assert kernel.ok("main_result, sub_result, sub_thread, sub_sync") == "(1, 2, True, 3)\n"
    deleted = _reply(kernel, _send(kernel, "delete_subshell_request", {"subshell_id": subshell}), control=True)
    assert deleted["status"] == "ok"


def test_sync_code_in_a_cell_uses_ipy_rustasync_run(kernel: Kernel) -> None:
    kernel.ok(GATE)
    out = kernel.ok(
        "import asyncio, ipy_rustasync\n"
        "async def py_side():\n"
        "    await asyncio.sleep(0.01)\n"
        "    return 'python'\n"
        "def sync_helper():\n"
        "    return ipy_rustasync.run(hold_gate(5)), ipy_rustasync.run(py_side())\n"
        "print(sync_helper())"
    )
    assert out == "(5, 'python')\n"


def test_asyncio_run_in_a_cell_gets_a_hint(kernel: Kernel) -> None:
    reply, messages = kernel.execute("import asyncio\nasync def one():\n    return 1\nasyncio.run(one())")
    assert reply["status"] == "error"
    text = text_of(messages)
    assert "cannot be called from a running event loop" in text
    assert "use top-level `await ...`, or `ipy_rustasync.run(...)`" in text
    assert "%rust_async --nest" in text
    assert kernel.ok("1 + 1") == "2\n"


def test_nest_opt_in_applies_to_this_kernel_only(tmp_path: Path) -> None:
    """`%rust_async --nest` lets asyncio.run nest in this kernel, together with top-level
    awaits in the same cell (it once spun the kernel at full CPU forever); a later
    kernel is not affected unless the user saves the default on purpose."""
    env = {**os.environ, "IPY_RUSTASYNC_CONFIG": str(tmp_path / "config.toml")}
    k = Kernel(env, load_ext=True)
    try:
        assert "this kernel only" in k.ok("%rust_async --nest")
        k.ok(GATE)
        out = k.ok(
            "import asyncio, time\n"
            "start = time.monotonic()\n"
            "x = await hold_gate(3)\n"
            "print(x, asyncio.run(hold_gate(4)), asyncio.run(asyncio.sleep(0, 'py')), await hold_gate(5))\n"
            "print(asyncio.get_event_loop().run_until_complete(hold_gate(6)))\n"
            "print('seconds', round(time.monotonic() - start))"
        )
        assert "3 4 py 5\n6\nseconds 0" in out, out
        assert "stays nested until it restarts" in k.ok("%rust_async --no-nest")
    finally:
        k.km.shutdown_kernel(now=True)
    assert not (tmp_path / "config.toml").exists()
    k = Kernel(env, load_ext=True)
    try:
        reply, _ = k.execute("import asyncio\nasyncio.run(asyncio.sleep(0))")
        assert reply["status"] == "error" and "cannot be called from a running event loop" in reply["evalue"]
    finally:
        k.km.shutdown_kernel(now=True)
    subprocess.run(
        [sys.executable, "-m", "ipy_rustasync._front.cli", "config", "nest", "true"],
        env=env,
        check=True,
        capture_output=True,
    )
    k = Kernel(env, load_ext=True)
    try:
        assert k.ok("import asyncio\nprint(asyncio.run(asyncio.sleep(0, 'py')))") == "py\n"  # the saved default
    finally:
        k.km.shutdown_kernel(now=True)


def test_nest_with_the_archived_nest_asyncio_runs_each_way_once(tmp_path: Path) -> None:
    """With the original nest_asyncio 1.6 applied by the user, asyncio.run, a top-level
    await and run_until_complete in turn each run once and print nothing else (the
    loop's reader callback once found its context entered by a nested loop and
    failed on every later turn, hundreds of megabytes of output)."""
    wheel_dir = tmp_path / "wheels"
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "nest_asyncio==1.6.0", "-d", str(wheel_dir)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        import pytest

        pytest.skip(f"nest_asyncio 1.6.0 could not be downloaded: {got.stderr.strip()[-200:]}")
    (wheel,) = wheel_dir.glob("*.whl")
    k = Kernel(load_ext=True)
    try:
        k.ok(GATE)
        k.ok(f"import sys; sys.path.insert(0, {str(wheel)!r}); import nest_asyncio; nest_asyncio.apply()")
        out = k.ok(
            "import asyncio\n"
            "a = asyncio.run(hold_gate(3))\n"
            "b = await hold_gate(4)\n"
            "c = asyncio.get_event_loop().run_until_complete(hold_gate(5))\n"
            "print(a, b, c)"
        )
        assert out.strip() == "3 4 5", out[:2000]
        assert k.ok("print('after')").strip() == "after"
    finally:
        k.km.shutdown_kernel(now=True)


def test_nest_refuses_a_loop_it_cannot_patch_and_leaves_others_working(tmp_path: Path) -> None:
    """In a process running uvloop, --nest says in a sentence that it cannot apply;
    once applied in a process, uvloop.run still works where nothing nests (on 3.12
    every uvloop run failed after it)."""
    code = """
import asyncio, sys, uvloop
from ipy_rustasync._runtime import loops
from ipy_rustasync._base.errors import RustAsyncUsageError

async def refuse():
    try:
        loops.nest()
    except RustAsyncUsageError as err:
        return str(err)
print(uvloop.run(refuse()))
loops.nest()
async def plain():
    return "uvloop still runs"
print(uvloop.run(plain()))
print(asyncio.run(plain(), **({"loop_factory": uvloop.new_event_loop} if sys.version_info >= (3, 12) else {})))
"""
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "which nest-asyncio2 cannot patch" in lines[0] and "uvloop" in lines[0]
    assert lines[1:] == ["uvloop still runs", "uvloop still runs"]


def test_warnings_are_folded_in_the_notebook(kernel: Kernel) -> None:
    nonce = time.time_ns() % 1000  # a fresh build or a cached one: both show the warnings
    reply, messages = kernel.execute(f"%%rust_async\npub fn noisy() -> u32 {{\n    let unused = 5;\n    {nonce}\n}}\n")
    assert reply["status"] == "ok", reply
    summary = text_of(messages)
    assert "noisy" in summary and "1 warning" in summary
    (folded,) = [
        m["content"]["data"] for m in messages if "<details>" in m["content"].get("data", {}).get("text/html", "")
    ]
    assert folded["text/html"].startswith("<details><summary>rust_async: 1 warning</summary>")
    assert "unused variable: `unused`" in folded["text/html"]
    assert "cell line 3" in folded["text/plain"]


#: The README's "Logging" recipe, as a notebook user types it.
LOGGING_RECIPE = """import logging
logging.basicConfig()
logging.getLogger("ipy_rustasync").setLevel("DEBUG")
"""


def test_the_logging_recipe_shows_a_builds_steps_under_the_cell(kernel: Kernel) -> None:
    nonce = time.time_ns()
    kernel.ok("import logging\n_ira_root_handlers = list(logging.getLogger().handlers)")
    quiet = kernel.ok(f"%%rust_async\npub fn unlogged_{nonce}() -> u8 {{ 1 }}\n")
    assert "DEBUG" not in quiet and "ipy_rustasync." not in quiet, quiet
    kernel.ok(LOGGING_RECIPE)
    try:
        shown = kernel.ok(f"%%rust_async\npub fn logged_{nonce}() -> u8 {{ 1 }}\n")
    finally:
        kernel.ok(
            'logging.getLogger().handlers[:] = _ira_root_handlers\nlogging.getLogger("ipy_rustasync").setLevel("NOTSET")'
        )
    # cargo runs, or (a warm edit) rustc is replayed as cargo last ran it: rustc_direct.py
    compiling = ("(running |replaying rustc as cargo ran it)", "(cargo|rustc) done in")
    for step in ("content hash", "cache miss, building", *compiling, "load done in", "bind done in"):
        assert re.search(rf"DEBUG:ipy_rustasync(?:\.\w+)+:ira_[0-9a-f]{{16}}: {step}", shown), (step, shown)
    assert re.search(rf"rust_async: built in [0-9.]+ s: logged_{nonce}\b", shown), shown  # the summary as always


def test_warm_on_load_and_the_warm_line_magic() -> None:
    k = Kernel({**os.environ, "IPY_RUSTASYNC_WARM_ON_LOAD": "1"}, load_ext=True)
    try:
        deadline = time.monotonic() + 300
        shown = k.ok("%rust_async")
        while "warm:    building in the background" in shown and time.monotonic() < deadline:
            time.sleep(0.5)
            shown = k.ok("%rust_async")
        assert "warm:    already built" in shown or "warm:    built in" in shown, shown
        assert "rust_async: dependencies already built" in k.ok("%rust_async --warm")
    finally:
        k.km.shutdown_kernel(now=True)


def test_kernelspec_installs_and_starts_with_the_extension_loaded(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    out = subprocess.run(
        [sys.executable, "-m", "ipy_rustasync._front.cli", "kernel", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    assert "Python 3 (Rust async)" in out.stdout
    spec = json.loads((kernels / "python3-rust-async" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    km = KernelManager(
        kernel_name="python3-rust-async", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    km.start_kernel()
    try:
        k = Kernel.attach(km)
        # No %load_ext: the kernel loaded the extension itself.
        assert "from_spec (async)" in k.ok("%%rust_async\npub async fn from_spec() -> u8 { 7 }\n")
        assert k.ok("await from_spec()") == "7\n"
        k.kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def test_quickstart_notebook_runs_with_the_documented_outputs() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs: list[tuple[str, str]] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            text = ""
            for out in cell.outputs:
                assert out.output_type != "error", out
                text += out.get("text", "") + out.get("data", {}).get("text/plain", "")
            outputs.append((cell.source, text))

    def output_of(needle: str) -> str:
        """The output of the one code cell whose source contains ``needle`` (robust to reformatting)."""
        (found,) = [text for source, text in outputs if needle in source]
        return found

    assert "say_after (async), add, checked_div" in output_of("%%rust_async")
    assert output_of('await say_after(20, "Alice")') == "'Hello, Alice!'"
    assert output_of("add(2, 3)") == "5"
    assert "1000 greetings in" in output_of("asyncio.gather")
    assert "Hello, task 999!" in output_of("asyncio.gather")
    assert "RustError: cannot divide 1 by zero" in output_of("checked_div(1, 0)")
    assert "async fn say_after(ms: u64, who: String) -> String" in output_of("say_after.__doc__")
