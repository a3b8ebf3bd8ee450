"""Foundation: what every layer may use and which imports nothing of the package. The
one atomic file write (``atomic``), the logger's phase timer (``logs``), the
exceptions users see (``errors``; public as ``ipy_rustasync.RustError`` etc.) and
the version."""
