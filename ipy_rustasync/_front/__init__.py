"""Front layer: what a user calls. The ``%%rust_async``/``%rust_async`` magics
(``magic``), the ``ipy-rustasync`` command (``cli``) and the kernelspec
(``kernelspec``). Nothing below imports from here."""
