"""Forensics figures: one metric over steps with the anomaly window shaded."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rldk_engine.forensics.detectors import Anomaly
    from rldk_engine.ingest.run import Run


def plot_anomaly(run: Run, anomaly: Anomaly, out_png: str | os.PathLike) -> str:
    """Write a PNG of `anomaly.metric` (or its first evidence metric) with the window shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    col = run.columns.get(anomaly.metric)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        if col is not None:
            ok = np.isfinite(col)
            ax.plot(run.steps[ok], col[ok], lw=1.0, color="#1f77b4", label=anomaly.metric)
        colour = {"info": "#9e9e9e", "warning": "#ff9800", "critical": "#e53935"}.get(anomaly.severity, "#ff9800")
        ax.axvspan(anomaly.start_step - 0.5, anomaly.end_step + 0.5, color=colour, alpha=0.25,
                   label=f"{anomaly.rule} ({anomaly.severity})")
        baseline = anomaly.evidence.get("baseline") if isinstance(anomaly.evidence, dict) else None
        if isinstance(baseline, (int, float)):
            ax.axhline(baseline, color="#555555", lw=0.8, ls="--", label="baseline")
        ax.set_xlabel("step")
        ax.set_ylabel(anomaly.metric)
        ax.set_title(f"{run.run_id}: {anomaly.rule} steps {anomaly.start_step}-{anomaly.end_step}", fontsize=9)
        ax.legend(loc="best", fontsize=7)
        fig.tight_layout()
        fig.savefig(out_png)
    finally:
        plt.close(fig)
    return str(out_png)


def plot_report_anomalies(runs_by_source: dict, report: dict, out_dir: str | os.PathLike) -> list[str]:
    """One PNG per anomaly named forensics_<rule>.png (then _2, _3, ... when repeated)."""
    from rldk_engine.forensics.detectors import Anomaly

    os.makedirs(out_dir, exist_ok=True)
    counts: dict[str, int] = {}
    written = []
    for entry in report["runs"]:
        run = runs_by_source.get(entry["source"])
        if run is None:
            continue
        for a in entry["anomalies"]:
            counts[a["rule"]] = counts.get(a["rule"], 0) + 1
            k = counts[a["rule"]]
            name = f"forensics_{a['rule']}.png" if k == 1 else f"forensics_{a['rule']}_{k}.png"
            written.append(plot_anomaly(run, Anomaly(**a), os.path.join(out_dir, name)))
    return written
