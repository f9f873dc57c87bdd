"""`determinism_mismatch.png`: per step, the largest difference between replicas."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _floor(spreads: Mapping[str, tuple[np.ndarray, np.ndarray]], tolerance: float) -> float:
    """Where to draw exact agreement (0) on a log axis: a decade below anything shown."""
    positive = [
        float(s[np.isfinite(s) & (s > 0)].min())
        for _, s in spreads.values()
        if (np.isfinite(s) & (s > 0)).any()
    ]
    candidates = positive + ([tolerance] if tolerance > 0 else [])
    return min(candidates) / 10.0 if candidates else 1e-12


def plot_determinism_mismatch(
    spreads: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tolerance: float,
    path: Path,
) -> Path:
    """One line per metric: max across-replica |difference| at each compared step, log
    scale. Exact agreement (0) sits on a floor line; NaN-vs-number cells (infinite
    difference) are marked with an x at the top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    floor = _floor(spreads, tolerance)
    finite_max = max(
        (float(s[np.isfinite(s)].max()) for _, s in spreads.values() if np.isfinite(s).any()),
        default=floor * 10,
    )
    top = max(finite_max, tolerance, floor * 10) * 10
    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend, thread-safe.
    fig = Figure(figsize=(9, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for metric, (steps, spread) in spreads.items():
        if steps.size == 0:
            continue
        shown = np.where(spread > 0, spread, floor)
        infinite = ~np.isfinite(shown)
        shown = np.where(infinite, top, shown)
        label = metric if (spread > 0).any() else f"{metric} (identical)"
        (line,) = ax.plot(steps, shown, label=label, linewidth=1.2, drawstyle="steps-mid")
        if infinite.any():
            ax.scatter(steps[infinite], shown[infinite], marker="x", color=line.get_color(), zorder=3)
    if tolerance > 0:
        ax.axhline(tolerance, color="black", linestyle="--", linewidth=1, label=f"tolerance {tolerance:g}")
    ax.axhline(floor, color="grey", linestyle=":", linewidth=0.8, label="identical (0)")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, top * 2)
    ax.set_xlabel("step")
    ax.set_ylabel("max |difference| across replicas")
    ax.set_title("Determinism: replica disagreement per step (x = NaN vs number)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    # Fixed margins fit these labels; tight_layout would lay the figure out twice (~half
    # the rendering time, and this figure is on the critical path after the last replica).
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def warm_up() -> None:
    """Import matplotlib and render a tiny figure (fonts, tick machinery) so the real
    figure, drawn right after the last replica, pays none of that."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=20)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([1, 2], [1e-3, 1e-2])
    ax.set_yscale("log")
    ax.set_title("warm-up")
    canvas.draw()
