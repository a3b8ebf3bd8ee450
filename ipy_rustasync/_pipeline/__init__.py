"""Build pipeline layer: one cell from source text to bound functions (``cells``),
the cached build (``build``) that runs cargo (``cargo``), loading a module
(``loader``), and a set of cells as one maturin project (``export``,
``export_templates``). ARCHITECTURE.md walks a cell through it."""
