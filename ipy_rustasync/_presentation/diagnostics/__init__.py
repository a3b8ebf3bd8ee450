"""rustc's diagnostics, moved onto the lines of the cell the user wrote.

A failed (or warned) build's messages go through three modules, one job each:

- ``mapping``: cargo's ``compiler-message`` records (rustc's JSON) -> ``Diagnostic``
  records on the cell's own lines, leaving out what is about the generated glue;
- ``hints``: our one sentence under the messages a newcomer gets stuck on;
- ``render``: a record as plain text (rustc's layout) and as HTML for the notebook.

``model`` holds the records they share and the JSON they are kept in beside a cached
module. ``mapping`` and ``hints`` import nothing from ``render``. The names below are
the package's whole interface to the rest of ipy_rustasync.
"""

from ipy_rustasync._presentation.diagnostics.mapping import from_messages
from ipy_rustasync._presentation.diagnostics.model import Diagnostic, Note, Span, dumps, loads
from ipy_rustasync._presentation.diagnostics.render import summary

__all__ = ["Diagnostic", "Note", "Span", "dumps", "from_messages", "loads", "summary"]
