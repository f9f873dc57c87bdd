"""Live-monitor figures: the KL trace with the guardrail threshold and the stop marker."""

from __future__ import annotations

from pathlib import Path

from rldk_engine.live.protocol import ALERTS_JSONL, RUN_JSONL, read_jsonl_rows


def _as_float(v) -> float:
    try:
        return float(v)  # "NaN"/"Infinity" strings from run.jsonl parse too
    except (TypeError, ValueError):
        return float("nan")


def plot_kl_trace(run_dir: str | Path, out_png: str | Path, threshold: float = 0.35,
                  metric: str = "kl") -> Path:
    """KL per step from run_dir/run.jsonl, the threshold line, and a marker where a stop
    rule fired (from alerts.jsonl)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [r for r in read_jsonl_rows(run_dir / RUN_JSONL) if metric in r and "step" in r]
    steps = [int(r["step"]) for r in rows]
    values = [_as_float(r[metric]) for r in rows]
    stops = [a for a in read_jsonl_rows(run_dir / ALERTS_JSONL)
             if a.get("action") == "stop" and a.get("event", "fire") == "fire"]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.plot(steps, values, marker="o", markersize=3, linewidth=1.5, label=metric)
    ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    for a in stops:
        step, value = _as_float(a.get("step")), _as_float(a.get("value"))
        ax.axvline(step, color="black", linewidth=1, alpha=0.6)
        ax.scatter([step], [value], s=90, marker="X", color="tab:red", zorder=5,
                   label=f"stop: {a.get('rule')} @ step {a.get('step')}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} trace ({run_dir})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
