"""The package's version, in a module of its own: the build reads it (hatch's version
source, pyproject.toml) and so do modules below the package's front (a cell crate's
manifest records it), without importing the package's ``__init__``, which imports them."""

__version__ = "0.1.0"
