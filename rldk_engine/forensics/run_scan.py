"""Scan one run: the unit of work every scan backend runs (process pool, Ray).

Every function here is top-level and takes only picklable arguments, so a worker process
or a Ray task can call it as is. Nothing here knows which backend runs it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rldk_engine.ingest.readers import Source
    from rldk_engine.ingest.run import Run

Result = tuple[dict | None, str | None]  # (report entry, None) or (None, "path: reason")


def run_entry(run: Run, preset: str = "auto") -> dict:
    """The report entry of an already-read run.

    A run read from a monitor's run directory also carries the guardrail's verdict
    (`alerts.jsonl` beside `run.jsonl`): those alerts join the findings, so a run the
    guardrail stopped never scans as healthy. A run with no canonical metric gets health
    None ("n/a") and a "no metrics" error instead of a clean bill of health.
    """
    from rldk_engine.forensics.detectors import detect, infer_algorithm
    from rldk_engine.forensics.guardrail import guardrail_anomalies, merge_guardrail
    from rldk_engine.forensics.health import health

    errors = list(run.errors)
    if run.n_skipped > len(errors):
        errors.append(f"{run.n_skipped - len(errors)} more lines skipped")
    has_metrics = has_canonical_metrics(run)
    anomalies = detect(run, preset=preset) if has_metrics else []
    guard, guard_errors = guardrail_anomalies(run.source, run)
    errors += guard_errors
    anomalies = merge_guardrail(anomalies, guard)
    scores: dict[str, float | None]
    if has_metrics or guard:
        scores = dict(health(anomalies, run))
    else:
        scores = {"overall": None, "stability": None}
        errors.append(no_metrics_message(run))
    return {
        "run_id": run.run_id,
        "source": run.source,
        "format": run.format,
        "n_steps": run.n_steps,
        "algorithm": infer_algorithm(run) if preset == "auto" else preset,
        "metrics": run.metrics,
        "anomalies": [a.to_dict() for a in anomalies],
        "health": scores,
        "errors": errors,
    }


NO_METRICS = "no metrics"


def has_canonical_metrics(run: Run) -> bool:
    """True when at least one canonical metric (besides the step) was logged."""
    return any(name != "step" for name in run.canonical_metrics) or bool(
        any(name != "step" for name in run.nonfinite))


def no_metrics_message(run: Run) -> str:
    keys = run.unknown_keys
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} keys)" if len(keys) > 8 else "")
    what = f"keys seen: {shown}" if keys else "no keys besides the step"
    return (f"{run.source}: {NO_METRICS} - none of its {run.n_steps} step(s) holds a canonical "
            f"metric ({what}); health n/a. See `rldk-engine inspect {run.source}`")


def scan_run(source_or_path: Source | str | os.PathLike, preset: str = "auto", fmt: str | None = None) -> dict:
    """Read and scan one run (a path or a readers.Source); raises InputError if unreadable."""
    from rldk_engine.ingest.readers import read_run

    return run_entry(read_run(source_or_path, fmt=fmt), preset)


def scan_one(source: Source | str | os.PathLike, preset: str = "auto", fmt: str | None = None) -> Result:
    """(entry, None), or (None, "path: reason") when the run is unreadable."""
    from rldk_engine.errors import InputError

    try:
        return scan_run(source, preset, fmt), None
    except InputError as exc:
        return None, str(exc)


def scan_chunk(sources: list, preset: str, fmt: str | None) -> list[Result]:
    """A batch of runs, in order: what one worker or one Ray task is given."""
    return [scan_one(s, preset, fmt) for s in sources]


def chunk_sources(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def chunk_size(total: int, workers: int, chunks_per_worker: int = 4) -> int:
    """A few chunks per worker: little scheduling overhead, still balanced."""
    return max(1, -(-total // (max(1, workers) * chunks_per_worker)))
