"""Python helpers the Rust bridge (``rust/bridge``) calls while a cell module loads."""

from __future__ import annotations

from collections.abc import Sequence
from types import CodeType


def coroutine_code(name: str, params: Sequence[str], module: str) -> CodeType:
    """A code object flagged ``CO_COROUTINE`` whose positional parameters are
    ``params``: what ``inspect`` reads from a function-like object's ``__code__`` to
    decide it is a coroutine function and to build its signature (the duck typing it
    documents for compiled functions, which Cython's use too). It is never run."""
    placeholders = ", ".join(f"_{i}" for i in range(len(params)))
    namespace: dict[str, object] = {}
    exec(f"async def _f({placeholders}): pass", namespace)  # noqa: S102 - fixed text, no user input
    code = namespace["_f"].__code__  # type: ignore[attr-defined]
    return code.replace(  # type: ignore[no-any-return]
        co_name=name,
        co_qualname=name,
        co_varnames=tuple(params),
        co_filename=f"<rust cell {module}>",
    )
