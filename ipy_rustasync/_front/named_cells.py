"""Named cells in one session (``%%rust_async --name``): which build each name has now,
and what becomes stale when one is re-run.

The magic asks ``NamedCells`` which named cells a cell may use (``named``, handed to
``cells.compile_cell`` as ``known``), refuses a cell that would link two builds of one
named cell (``check_upstream``), and after each load registers the build (``track``):
re-running a named cell with an edit turns the functions other cells built against its
earlier build into ``StaleFunction`` stubs that say which cell to re-run (the earlier
build stays loaded, with its own statics, so they would silently run on stale state),
and marks named cells built on it. What Rust links is decided in ``_sources/crate.py``
(``Upstream``, ``uses``) and ``_pipeline/build.py``; this module is the session's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._pipeline import loader
from ipy_rustasync._sources import crate


@dataclass
class BuiltOn:
    """A loaded cell that uses named cells: what it bound, and the builds it links."""

    module: str
    names: list[str]
    #: every named cell's build it links, directly or through another named cell
    upstream: frozenset[str]
    #: how the user finds the cell again: its name, or the prompt it ran at
    label: str


def this_cell_number(shell: Any) -> int | None:
    """The ``In [n]`` of the cell running now, if it is stored in the history.
    ``shell.execution_count`` is not it on every IPython: 9.x counts the cell up
    before running it (so it reads n + 1 there), 8.x after; both store the cell's
    input, numbered n, before running it."""
    inputs = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if inputs and len(inputs) > 1:
        return len(inputs) - 1
    return None


class StaleFunction:
    """What a cell's function becomes in the namespace once a named cell it was built
    against is re-run with another build: calling it says which cell to re-run (the old
    build stays loaded, with its own statics and types, so the function would silently
    work on the old named cell's state)."""

    def __init__(self, name: str, upstream: str, label: str) -> None:
        self.__name__ = self.__qualname__ = name
        self.message = (
            f"`{name}` was built against an earlier build of the cell named `{upstream}`, "
            f"which has been re-run since: re-run {label} to rebuild it"
        )
        self.__doc__ = self.message

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise RustAsyncUsageError(self.message)

    def __repr__(self) -> str:
        return f"<stale Rust function {self.__name__}: {self.message}>"


@dataclass
class NamedCells:
    """What one magic instance (one kernel session) knows of its named cells."""

    #: the named cells run in this session: name -> its current build
    named: dict[str, crate.Upstream] = field(default_factory=dict)
    #: named cells whose build links an earlier build of another: name -> that other
    stale_named: dict[str, str] = field(default_factory=dict)
    #: loaded cells that use named cells, to mark stale when one is re-run
    built_on: list[BuiltOn] = field(default_factory=list)

    def check_upstream(self, cell: str, name: str | None) -> None:
        """A cell may not use a named cell built against an earlier build of another
        named cell (it would link two builds of that one): says which cell to re-run."""
        for used in crate.uses(cell, [n for n in self.stale_named if n != name]):
            raise RustAsyncUsageError(
                f"the cell named `{used}` was built against an earlier build of the cell named "
                f"`{self.stale_named[used]}`, which has been re-run since: re-run the cell named `{used}` first"
            )

    def track(self, spec: crate.CellSpec, names: list[str], shell: Any, binder: loader.Binder) -> None:
        """Registers a named cell's build, and makes what was built against an earlier
        build of it (the functions other cells bound, other named cells) say so."""
        if spec.upstream:
            me = spec.as_upstream() if spec.name else crate.Upstream("", spec.module, ())
            closure = frozenset({u.module for u in spec.upstream} | set(me.requires))
            label = f"the cell named `{spec.name}`" if spec.name else f"the cell that defines `{names[0]}`"
            number = this_cell_number(shell)
            if not spec.name and number:
                label += f" (In [{number}])"
            self.built_on = [b for b in self.built_on if b.names != names or b.label != label]
            self.built_on.append(BuiltOn(spec.module, names, closure, label))
        if spec.name is None:
            return
        self.stale_named.pop(spec.name, None)
        previous = self.named.get(spec.name)
        self.named[spec.name] = spec.as_upstream()
        if previous is None or previous.module == spec.module:
            return
        for other, up in self.named.items():
            if previous.module in up.requires:
                self.stale_named[other] = spec.name
        namespace = shell.user_ns
        for built in self.built_on:
            if previous.module not in built.upstream:
                continue
            for fn in built.names:
                bound = binder.bound.get(fn)
                # Only what that build bound and nobody has rebound since.
                made_by = str(getattr(bound, "__module__", "")).rsplit(".", 1)[-1]  # ipy_rustasync.built.<module>
                if bound is not None and namespace.get(fn) is bound and made_by == built.module:
                    stub = StaleFunction(fn, spec.name, built.label)
                    namespace[fn] = stub
                    binder.bound[fn] = stub
