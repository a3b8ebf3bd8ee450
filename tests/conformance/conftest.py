"""Fixtures of the conformance tests: the control cell, built once, and both twins
on each loop kind."""

from __future__ import annotations

from types import ModuleType

import pytest

from ipy_rustasync import rust_module

from .twins import CONTROL, Pair, PythonTwin, RustTwin


@pytest.fixture(scope="session")
def control() -> ModuleType:
    return rust_module(CONTROL)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def twins(control: ModuleType, loop_kind: str) -> Pair:
    return Pair(PythonTwin(), RustTwin(control), loop_kind)
