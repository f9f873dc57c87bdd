"""How the TUI writes a metric value: 4 significant digits, scientific when tiny or huge."""

from __future__ import annotations

import math


def format_value(value: float, digits: int = 4) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"
