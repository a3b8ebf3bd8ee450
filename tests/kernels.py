"""A real Jupyter kernel for tests: started with jupyter_client, driven by
execute requests, its output read back as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel


class Kernel:
    def __init__(self, env: Mapping[str, str] | None = None, *, load_ext: bool = False) -> None:
        """Starts a ``python3`` kernel, with ``env`` for its environment if given (else
        this process's) and ipy_rustasync loaded if ``load_ext``."""
        self.km: KernelManager
        self.kc: BlockingKernelClient
        self.km, self.kc = start_new_kernel(kernel_name="python3", **({} if env is None else {"env": dict(env)}))
        if load_ext:
            try:
                self.ok("%load_ext ipy_rustasync")
            except BaseException:
                self.km.shutdown_kernel(now=True)
                raise

    @classmethod
    def attach(cls, km: KernelManager) -> Kernel:
        """Drives a kernel ``km`` has started (one of another kernel spec)."""
        kernel = cls.__new__(cls)
        kernel.km, kernel.kc = km, km.client()
        kernel.kc.start_channels()
        kernel.kc.wait_for_ready(timeout=60)
        return kernel

    def execute(self, code: str, timeout: float = 600) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Runs ``code``; returns the execute_reply content and the iopub messages."""
        messages: list[dict[str, Any]] = []
        reply = self.kc.execute_interactive(code, output_hook=messages.append, timeout=timeout)
        return reply["content"], messages

    def ok(self, code: str) -> str:
        reply, messages = self.execute(code)
        assert reply["status"] == "ok", reply
        return text_of(messages)


def text_of(messages: list[dict[str, Any]]) -> str:
    parts = []
    for msg in messages:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            parts.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data", "update_display_data"):
            parts.append(content["data"].get("text/plain", "") + "\n")
        elif msg["msg_type"] == "error":
            parts.append("\n".join(content["traceback"]))
    return "".join(parts)
