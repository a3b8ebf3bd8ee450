"""Our one sentence under the rustc messages a newcomer gets stuck on.

rustc says what is wrong; for a few errors the fix is about how a cell runs (tokio's
worker threads, PyO3's conversions, the cell's dependencies), which rustc cannot
know. :func:`hint` returns that sentence, or ``None`` for every other message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Crates (and path roots) every cell can name without declaring them.
_PROVIDED = {"std", "core", "alloc", "tokio", "futures", "pyo3", "ipy_rustasync", "crate", "self", "super"}
_TICKED = re.compile(r"`([^`]+)`")
_UNRESOLVED = re.compile(r"(cannot find module or crate|failed to resolve: use of undeclared crate|unresolved import)")


def hint(message: dict[str, Any], text: str, lines: Sequence[str]) -> str | None:
    """The sentence for rustc's ``message`` (its JSON), whose text, already on the
    cell's lines, is ``text``; ``lines`` are the cell's (a crate the cell defines as a
    ``mod`` needs no ``--dep``)."""
    if text.startswith("future cannot be sent between threads safely"):
        return _not_send(message)
    ty = _TICKED.match(text)
    name = ty[1] if ty else "this type"
    if text.endswith("cannot be used as a Python function argument"):
        return (
            f"`{name}` cannot come in from Python: take a type PyO3 converts (int, float, bool, str, bytes, "
            f"Vec for a list, HashMap for a dict, tuples, Option for None) or make `{name}` a "
            "`#[pyo3::pyclass(from_py_object)]` that derives `Clone`."
        )
    if text.endswith("cannot be converted to a Python object"):
        return (
            f"`{name}` cannot go back to Python: return a type PyO3 converts (numbers, bool, String, Vec, HashMap, "
            f"tuples, Option) or put `#[pyo3::pyclass]` on `{name}` so Python receives it as an object."
        )
    if _UNRESOLVED.match(text):
        ticked = _TICKED.search(text)
        crate_name = ticked[1].split("::")[0] if ticked else ""
        if (
            crate_name
            and crate_name not in _PROVIDED
            and not any(re.search(rf"\bmod\s+{re.escape(crate_name)}\b", line) for line in lines)
        ):
            return (
                f"`{crate_name}` is not a dependency of this cell: add it with `%%rust_async --dep {crate_name}` "
                "(tokio, futures and pyo3 come with every cell), or if it is a named cell, "
                f"run that cell (`%%rust_async --name {crate_name}`) first in this kernel."
            )
    return None


def _not_send(message: dict[str, Any]) -> str:
    """Names the value held across the ``.await`` and its type, from rustc's labels."""
    held = ty = None
    for child in message.get("children") or ():
        for raw in child.get("spans") or ():
            label = str(raw.get("label") or "")
            if m := re.search(r"with `([^`]+)` maybe used later", label):
                held = m[1]
            if m := re.search(r"has type `(.+)` which is not `Send`", label):
                ty = m[1]
    what = f"`{held}`" + (f" (a `{ty}`)" if ty else "") if held else "a value that is not `Send`"
    return (
        f"{what} is held across an `.await`, but the future must be `Send` because it runs on tokio's "
        "worker threads: drop it before the `.await` (end its scope with a block) or use a `Send` type "
        "(`Arc` instead of `Rc`, `tokio::sync::Mutex` instead of a `std::sync::MutexGuard`)."
    )
