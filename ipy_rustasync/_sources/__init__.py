"""Crate sources and lock files: the generated crate (``crate``, ``cell_macro``), the
dependencies a cell asks for (``fragment``, ``deps``), the notebook's lock sidecar
(``lockfile``, which runs cargo) over pure Cargo.lock and version rules
(``cargolock``, ``versions``), and where crates come from (``registry``)."""
