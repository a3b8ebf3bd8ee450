"""The "Python 3 (Rust async)" kernelspec: ipykernel with the extension loaded.

The spec itself is ``kernel_ext/kernel.json`` (shipped in the wheel as
``ipy_rustasync/_kernel_ext``); installing it pins ``argv[0]`` to this interpreter, so
the kernel runs in the environment that has the package, whichever Jupyter starts it.
jupyter_client's ``KernelSpecManager`` does the installing, as ``ipykernel install``
does, so ``--user``, ``--sys-prefix`` and ``--prefix`` mean what they mean there.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ipy_rustasync._base.errors import RustAsyncUsageError

NAME = "python3-rust-async"


def spec_dir() -> Path:
    """``kernel_ext/``: inside the wheel, or the checkout's for an editable install."""
    here = Path(__file__).resolve().parent.parent  # the package: this module is in its _front/
    for candidate in (here / "_kernel_ext", here.parent / "kernel_ext"):
        if (candidate / "kernel.json").is_file():
            return candidate
    raise RustAsyncUsageError(f"the kernelspec files are missing next to {here}; reinstall the package")


def spec(python: str = sys.executable) -> dict[str, object]:
    """The kernel.json to install, started by ``python``."""
    data: dict[str, object] = json.loads((spec_dir() / "kernel.json").read_text(encoding="utf-8"))
    argv = list(data["argv"])  # type: ignore[call-overload]
    argv[0] = python
    data["argv"] = argv
    return data


def install(*, user: bool = False, prefix: str | None = None, name: str = NAME) -> Path:
    """Installs the kernelspec; returns the directory it went to."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        raise RustAsyncUsageError(
            f"installing a kernel needs jupyter_client; run `{sys.executable} -m pip install ipykernel`"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec(), indent=2) + "\n", encoding="utf-8")
        where = KernelSpecManager().install_kernel_spec(tmp, kernel_name=name, user=user, prefix=prefix)
    return Path(where)
