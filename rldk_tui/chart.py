"""Line charts in braille cells: y ticks, a step axis, thresholds, alert markers, overlays.

Pure functions from numbers to a `rich.text.Text` (no Textual import), so the MetricChart
widget, the alert panel and the Scan tab's window plot draw the same way and tests can
read a chart as text. Each cell holds 2x4 dots; every series is first cut to min/max per
dot column (`series.columns`), so the cost depends on the chart's size, not the run's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text

from rldk_tui.series import columns

# Distinct colours for overlays, in order (the watched run always uses the first).
PALETTE = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "orange1",
           "bright_blue", "pink1", "wheat1")
SEVERITY_COLOUR = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
# Braille dot bits by (row in cell 0..3, column in cell 0..1).
LABEL_WIDTH = 7  # "-1.5e-05" is cut to 7; format_tick stays within it otherwise
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)


@dataclass(frozen=True)
class Line:
    label: str
    steps: np.ndarray
    values: np.ndarray
    colour: str


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str = ""
    colour: str = "red"


@dataclass(frozen=True)
class Marker:
    step: float
    severity: str = "warning"


@dataclass
class ChartSpec:
    lines: list[Line]
    x_range: tuple[float, float] | None = None  # None: every step of every line
    log: bool = False
    thresholds: list[Threshold] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    window: tuple[float, float] | None = None  # steps drawn on a red background
    legend: bool = False


def nice_step(span: float, count: int) -> float:
    """A 1/2/5 x 10^k spacing giving about `count` ticks over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def nice_ticks(low: float, high: float, count: int) -> list[float]:
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    ticks: list[float] = []
    value = first
    while value <= high + step * 1e-9 and len(ticks) < 50:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def format_tick(value: float, log: bool = False) -> str:
    if log:
        return f"1e{value:g}" if value != int(value) else f"1e{int(value)}"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")
    return f"{value:.4g}"


def format_step(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def full_range(lines: list[Line]) -> tuple[float, float] | None:
    ranges = [(float(line.steps[0]), float(line.steps[-1])) for line in lines if len(line.steps)]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _value_range(cols: list, thresholds: list[float]) -> tuple[float, float] | None:
    lows = [np.nanmin(c.low) for c in cols if np.isfinite(c.low).any()]
    highs = [np.nanmax(c.high) for c in cols if np.isfinite(c.high).any()]
    if not lows:
        return None
    low, high = float(min(lows)), float(max(highs))
    # Thresholds count: a healthy KL of 0.02 then sits low under its 0.35 line instead of
    # filling the pane the way a runaway would.
    for value in thresholds:
        low, high = min(low, value), max(high, value)
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _dot_rows(value: np.ndarray, low: float, high: float, rows: int) -> np.ndarray:
    """Dot row (0 = top) of each value; NaN stays NaN."""
    return (high - value) / (high - low) * (rows - 1)


def _bridge(values: np.ndarray) -> np.ndarray:
    """Empty columns between two drawn ones get the straight line between them: a run
    logged every 10 steps, or zoomed in past one point per column, stays one line."""
    present = np.flatnonzero(np.isfinite(values))
    if len(present) < 2 or present[-1] - present[0] + 1 == len(present):
        return values
    inside = np.arange(present[0], present[-1] + 1)
    out = values.copy()
    out[inside] = np.interp(inside, present, values[present])
    return out


def _series_dots(low: np.ndarray, high: np.ndarray, y_low: float, y_high: float,
                 rows: int) -> np.ndarray:
    """Bool [rows, len(low)]: each column lit from its max to its min, joined to the
    previous column so a steep line has no gaps."""
    low, high = _bridge(low), _bridge(high)
    top = _dot_rows(high, y_low, y_high, rows)
    bottom = _dot_rows(low, y_low, y_high, rows)
    prev_top = np.concatenate(([np.nan], top[:-1]))
    prev_bottom = np.concatenate(([np.nan], bottom[:-1]))
    # Rising: reach down to the previous column's top; falling: up to its bottom.
    with np.errstate(invalid="ignore"):
        bottom = np.where(np.isfinite(prev_top) & (prev_top > bottom),
                          np.maximum(bottom, prev_top - 1), bottom)
        top = np.where(np.isfinite(prev_bottom) & (prev_bottom < top), np.minimum(top, prev_bottom + 1), top)
    present = np.isfinite(top) & np.isfinite(bottom)
    top_i = np.where(present, np.clip(np.rint(top), 0, rows - 1), rows).astype(np.int64)
    bottom_i = np.where(present, np.clip(np.rint(bottom), 0, rows - 1), -1).astype(np.int64)
    grid = np.arange(rows)[:, None]
    return (grid >= top_i[None, :]) & (grid <= bottom_i[None, :])


def _cells(dots: np.ndarray, height: int, width: int) -> np.ndarray:
    """Braille code offsets [height, width] from a dot grid [4*height, 2*width]."""
    blocks = dots.reshape(height, 4, width, 2)
    return np.einsum("hrwc,rc->hw", blocks.astype(np.int64), _DOT_BITS)


def render_chart(spec: ChartSpec, width: int, height: int) -> Text:
    """The chart in `width` x `height` cells (axis and tick labels included)."""
    width, height = max(12, width), max(3, height)
    lines = [line for line in spec.lines if len(line.steps)]
    legend_rows = 1 if spec.legend and spec.lines else 0
    axis_rows = 2 if height - legend_rows >= 5 else 1
    plot_h = height - legend_rows - axis_rows
    extent = spec.x_range or full_range(lines)
    if not lines or extent is None or plot_h < 1:
        return Text("no data yet", style="dim")
    x_low, x_high = extent
    if x_high <= x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    thresholds = [t for t in spec.thresholds if not spec.log or t.value > 0]
    threshold_values = [math.log10(t.value) if spec.log else t.value for t in thresholds]

    # A fixed label column: charts stacked in a grid keep their plots aligned, and the
    # downsampling pass runs once per frame.
    label_w = LABEL_WIDTH
    plot_w = max(4, width - label_w - 1)
    cols = [columns(line.steps, line.values, x_low, x_high, plot_w * 2, spec.log)
            for line in lines]
    y_range = _value_range(cols, threshold_values)
    if y_range is None:
        return Text("no finite values in this range" + (" (log scale hides values <= 0)"
                                                        if spec.log else ""), style="dim")
    y_low, y_high = y_range
    ticks = nice_ticks(y_low, y_high, max(1, plot_h // 2))
    labels = [format_tick(t, spec.log)[:label_w] for t in ticks]

    rows = plot_h * 4
    # Draw the first line (the watched run) last, so it stays on top where lines cross.
    codes = np.zeros((plot_h, plot_w), dtype=np.int64)
    owner = np.full((plot_h, plot_w), -1, dtype=np.int64)
    for index in range(len(lines) - 1, -1, -1):
        dots = _series_dots(cols[index].low, cols[index].high, y_low, y_high, rows)
        cell_codes = _cells(dots, plot_h, plot_w)
        codes |= cell_codes
        owner = np.where(cell_codes > 0, index, owner)

    threshold_rows: dict[int, Threshold] = {}
    for line_at, value in zip(thresholds, threshold_values, strict=True):
        if y_low <= value <= y_high:
            threshold_rows[int(_dot_rows(np.array(value), y_low, y_high, rows)) // 4] = line_at

    window_cols = None
    if spec.window is not None:
        scale = plot_w / (x_high - x_low)
        w0 = math.floor((spec.window[0] - x_low) * scale)
        w1 = math.floor((spec.window[1] - x_low) * scale)
        if w1 >= 0 and w0 < plot_w:
            window_cols = (max(0, w0), min(plot_w - 1, w1))

    tick_rows: dict[int, str] = {}
    for tick, tick_label in zip(ticks, labels, strict=True):
        row = int(round(float(_dot_rows(np.array(tick), y_low, y_high, rows)))) // 4
        tick_rows.setdefault(row, tick_label)

    out = Text(no_wrap=True, overflow="crop")
    if legend_rows:
        legend = Text(" " * (label_w + 1))
        for line in spec.lines:
            legend.append("━ ", style=line.colour)
            legend.append(line.label[:40], style=line.colour)
            legend.append("  ")
        if spec.log:
            legend.append("(log scale)", style="dim")
        legend.truncate(width)
        out.append_text(legend)
        out.append("\n")
    for row in range(plot_h):
        label = tick_rows.get(row)
        out.append(f"{label:>{label_w}}┤" if label is not None else " " * label_w + "│",
                   style="dim")
        threshold = threshold_rows.get(row)
        run_style: str | None = None
        run_chars: list[str] = []
        for col in range(plot_w):
            code = int(codes[row, col])
            if code:
                char, style = chr(0x2800 + code), lines[int(owner[row, col])].colour
            elif threshold is not None:
                char, style = "╌", threshold.colour
            else:
                char, style = " ", ""
            if window_cols is not None and window_cols[0] <= col <= window_cols[1]:
                style = f"{style} on grey23".strip()
            if style != run_style and run_chars:
                out.append("".join(run_chars), style=run_style or "")
                run_chars = []
            run_style = style
            run_chars.append(char)
        if run_chars:
            out.append("".join(run_chars), style=run_style or "")
        out.append("\n")
    out.append_text(_step_axis(spec, x_low, x_high, label_w, plot_w, axis_rows))
    return out


def _step_axis(spec: ChartSpec, x_low: float, x_high: float, label_w: int, plot_w: int,
               axis_rows: int) -> Text:
    scale = plot_w / (x_high - x_low)
    ticks = nice_ticks(x_low, x_high, max(1, plot_w // 12))
    axis = ["─"] * plot_w
    tick_cols = []
    for tick in ticks:
        col = int((tick - x_low) * scale)
        if 0 <= col < plot_w:
            axis[col] = "┬"
            tick_cols.append((col, format_step(tick)))
    marks: dict[int, str] = {}
    rank = {"info": 0, "warning": 1, "critical": 2}
    for marker in spec.markers:
        if x_low <= marker.step <= x_high:
            col = min(plot_w - 1, int((marker.step - x_low) * scale))
            if rank.get(marker.severity, 1) >= rank.get(marks.get(col, ""), -1):
                marks[col] = marker.severity
    line = Text(" " * label_w + "└", style="dim")
    run: list[str] = []
    for col, char in enumerate(axis):
        if col in marks:
            if run:
                line.append("".join(run), style="dim")
                run = []
            line.append("▲", style=SEVERITY_COLOUR.get(marks[col], "yellow"))
        else:
            run.append(char)
    if run:
        line.append("".join(run), style="dim")
    if axis_rows < 2:
        return line
    labels = [" "] * (plot_w + 1)
    free_from = 0
    for col, label in tick_cols:
        begin = max(col - len(label) // 2, free_from)
        if begin + len(label) > plot_w + 1:
            continue
        labels[begin:begin + len(label)] = list(label)
        free_from = begin + len(label) + 1
    line.append("\n")
    line.append(" " * label_w + "".join(labels), style="dim")
    return line
