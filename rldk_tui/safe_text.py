"""User-controlled strings (file names, metric keys, trainer output) as plain text.

Everything the TUI shows that came from a file, a trainer or a status.json goes through
`plain`: a `rich.text.Text` (never parsed as markup, so a key named `[/bold]` is just
those characters) with control characters escaped (an ESC in a file name never reaches
the terminal raw).
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 and C1 controls and DEL; tab and newline are escaped too (one cell, one line).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(value: object) -> str:
    """`str(value)` with each control character written as `\\xNN`."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))


def plain(value: object, style: str = "") -> Text:
    """A Text that shows `value` verbatim (no markup) with controls escaped."""
    return Text(escape_controls(value), style=style)
