"""User-controlled strings on the terminal: always text, never Rich markup, control
characters escaped.

File names, metric keys, error messages quoting a log line and a trainer's own output can
hold anything: `[/bold]` (Rich markup: a MarkupError, or silently restyled text),
`:smile:` (an emoji code), ESC sequences that clear or retitle the terminal, bidi overrides
that reorder what the reader sees. Every command prints such strings through `plain()`
(a `rich.text.Text`, which Rich never parses) or `safe()` (for `print`).
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab, DEL, C1 controls, and the bidi embedding/override/isolate marks.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """`value` as one line of inert text: control and bidi characters written as escapes."""
    return _UNSAFE.sub(_escape, str(value))


def plain(value: object, style: str = "") -> Any:
    """A Rich `Text` of `safe(value)`: printed literally, whatever brackets it holds."""
    from rich.text import Text

    return Text(safe(value), style=style)


def print_error(console: Any, message: object) -> None:
    """One line on an error console, literally."""
    console.print(plain(message), soft_wrap=True)


def new_app(name: str, help: str) -> Any:
    """A Typer app with rldk's settings: plain help and usage errors (no rich import, for
    start-up time), no completion commands, no pretty tracebacks."""
    import typer

    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None)
