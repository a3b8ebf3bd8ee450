"""Loading a built module into the process and binding its exports into a namespace.

A module name is the content hash of its build, so loading one that is already in
``sys.modules`` is reusing the very same code. Superseded modules stay loaded (an
extension module cannot be unloaded), so objects from an earlier build keep working.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import re
import sys
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._sources.cell_macro import EXPORTS_TABLE


def load(module: str, path: Path) -> ModuleType:
    """Imports the extension module at ``path`` under the name ``module``."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise RustAsyncUsageError(f"{path} is not an extension module Python can load")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as err:
        raise RustAsyncUsageError(
            f"the built module {path.name} could not be loaded ({err}); re-run the cell with --force"
        ) from None
    register(mod)
    return mod


#: The package whose import hook finds built modules by name (``ipy_rustasync.built``,
#: which imports this module to load them; named here so the dependency is one-way).
BUILT_PACKAGE = "ipy_rustasync.built"


def importable_name(module: str) -> str:
    """The name the cell module ``module`` can be imported by in any process with the cache."""
    return f"{BUILT_PACKAGE}.{module}"


def register(mod: ModuleType) -> None:
    """Makes a loaded cell module importable in other processes too: under its own
    name and as ``ipy_rustasync.built.<name>``, which is also what its functions and
    classes give as ``__module__`` (so ``pickle`` stores them by a name a
    ``ProcessPoolExecutor`` worker can import: see ``ipy_rustasync.built``)."""
    name = mod.__name__
    public = importable_name(name)
    sys.modules.setdefault(name, mod)
    sys.modules.setdefault(public, mod)
    for value in list(vars(mod).values()):
        if getattr(value, "__module__", None) == name:
            # (An object that fixes its module keeps it.)
            with contextlib.suppress(AttributeError, TypeError):
                value.__module__ = public


@dataclass(frozen=True)
class Export:
    name: str
    kind: str  # "async", "stream", "sync", "pyfunction", "class" or "exception"
    signature: str


def exports(mod: ModuleType) -> list[Export]:
    """What the cell exported, from the table the exporter macro generates."""
    table = getattr(mod, EXPORTS_TABLE, None)
    if not isinstance(table, list):
        raise RustAsyncUsageError(f"{mod.__name__} is not an ipy-rustasync cell module")
    return [Export(*row) for row in table]


@dataclass
class Binding:
    """What a bind changed (the summary line names it: _presentation/summary.py)."""

    added: list[Export] = field(default_factory=list)
    replaced: list[Export] = field(default_factory=list)
    #: names an earlier build of the same cell bound that this build does not export
    removed: list[str] = field(default_factory=list)


class Binder:
    """Binds exports into a namespace, remembering which names it bound so it can tell
    a rebinding of a cell's function from clobbering a user's own variable, and which
    names each notebook cell bound so a rebuilt cell takes back what it dropped."""

    def __init__(self) -> None:
        self.bound: dict[str, Any] = {}
        self.by_cell: dict[str, list[str]] = {}
        #: class name -> the module of the build a rebuilt cell's class replaced
        self.superseded: dict[str, str] = {}

    def bind(self, mod: ModuleType, namespace: MutableMapping[str, Any], cell_id: str | None = None) -> Binding:
        result = Binding()
        exported = exports(mod)
        for export in exported:
            obj = getattr(mod, export.name)
            if export.name in namespace:
                if self.bound.get(export.name) is not namespace[export.name]:
                    warnings.warn(
                        f"`{export.name}` from the Rust cell replaces an existing variable of the same name",
                        stacklevel=2,
                    )
                result.replaced.append(export)
            else:
                if hasattr(builtins, export.name):
                    warnings.warn(
                        f"`{export.name}` from the Rust cell shadows the Python builtin of that name", stacklevel=2
                    )
                result.added.append(export)
            previous = self.bound.get(export.name)
            if isinstance(previous, type) and isinstance(obj, type) and previous is not obj:
                self.superseded[export.name] = previous.__module__
                mark_superseded(previous, export.name)
            namespace[export.name] = obj
            self.bound[export.name] = obj
        if cell_id is not None:
            names = {e.name for e in exported}
            for name in self.by_cell.get(cell_id, []):
                # Only what this cell bound and nobody has reassigned since.
                if name not in names and name in namespace and namespace[name] is self.bound.get(name):
                    del namespace[name]
                    del self.bound[name]
                    result.removed.append(name)
            self.by_cell[cell_id] = sorted(names)
        return result

    def stale_object_hint(self, result: Any) -> None:
        """IPython ``post_run_cell`` hook: after PyO3's TypeError that an object "is
        not an instance of" a class of its own name, which a rebuilt cell replaced,
        says why (the object keeps its old build's class) and what to do."""
        err = getattr(result, "error_in_exec", None)
        found = _SAME_NAME.search(str(err)) if isinstance(err, TypeError) else None
        if found and found["name"] in self.superseded:
            name = found["name"]
            print(
                f"rust_async: that `{name}` object was made by an earlier build of its cell "
                f"({self.superseded[name]}), and an object keeps the class of the build that made it, "
                f"while the rebuilt cell's functions take the new `{name}`: make the object again "
                "(re-run the cell that creates it) after rebuilding.",
                file=sys.stderr,
            )


def superseded_name(name: str, module: str) -> str:
    """The ``__qualname__`` a class takes once a rebuilt cell replaced it: its name and
    its build, which PyO3's TypeError then shows (``'Ticket (earlier build ira_...)'
    object cannot be converted to 'Ticket'``) instead of the same name twice."""
    return f"{name} (earlier build {module.rsplit('.', 1)[-1]})"


def mark_superseded(cls: type, name: str) -> None:
    """Renames a replaced class (its objects live on, of that class) so every message
    naming it names its build. An immutable type keeps its name: the hint still tells."""
    with contextlib.suppress(AttributeError, TypeError):
        cls.__qualname__ = superseded_name(name, cls.__module__)


#: PyO3's words for an argument of a class of the same name but another build (a
#: replaced class's name also names its build: ``superseded_name``).
_SAME_NAME = re.compile(
    r"'(?P<name>\w+)(?: \(earlier build \w+\))?' object (?:is not an instance of|cannot be converted to) '(?P=name)'"
)
