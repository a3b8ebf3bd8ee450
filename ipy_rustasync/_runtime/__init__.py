"""Runtime layer: what an ``await`` on a Rust awaitable needs besides the bridge
(``loops``: ``ipy_rustasync.run``, nesting, the kernel's signal wake-up). It imports
nothing of the build; the front uses it and re-exports ``run``."""
