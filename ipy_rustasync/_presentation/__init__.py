"""Presentation layer: how the build talks to the user. rustc's messages on the cell's
lines (``diagnostics``: mapping and hints never import rendering) and the build's
progress display (``progress``)."""
