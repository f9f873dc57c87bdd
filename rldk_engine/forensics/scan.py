"""`scan`: read runs, run every detector, score health, build the SPEC "Scan report".

`scan_one` is the per-run unit of work. It is a top-level function taking only picklable
arguments, so a process pool (here) or another backend (Ray) can call it as is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone

from rldk_engine import __version__
from rldk_engine.constants import SEVERITY_RANK

PRESETS = ("auto", "ppo", "grpo")
BACKENDS = ("process", "ray")


def run_entry(run, preset: str = "auto") -> dict:
    """The report entry of an already-read run."""
    from rldk_engine.forensics.detectors import detect, infer_algorithm
    from rldk_engine.forensics.health import health

    anomalies = detect(run, preset=preset)
    errors = list(run.errors)
    if run.n_skipped > len(errors):
        errors.append(f"{run.n_skipped - len(errors)} more lines skipped")
    return {
        "run_id": run.run_id,
        "source": run.source,
        "format": run.format,
        "n_steps": run.n_steps,
        "algorithm": infer_algorithm(run) if preset == "auto" else preset,
        "metrics": run.metrics,
        "anomalies": [a.to_dict() for a in anomalies],
        "health": health(anomalies, run),
        "errors": errors,
    }


def scan_run(source_or_path, preset: str = "auto", fmt: str | None = None) -> dict:
    """Read and scan one run (a path or a readers.Source); raises InputError if unreadable."""
    from rldk_engine.ingest.readers import read_run

    return run_entry(read_run(source_or_path, fmt=fmt), preset)


def scan_one(source, preset: str = "auto", fmt: str | None = None) -> tuple[dict | None, str | None]:
    """Picklable unit of work: (entry, None), or (None, "path: reason") when unreadable."""
    from rldk_engine.errors import InputError

    try:
        return scan_run(source, preset, fmt), None
    except InputError as exc:
        return None, str(exc)


def _scan_chunk(sources: list, preset: str, fmt: str | None) -> list[tuple[dict | None, str | None]]:
    return [scan_one(s, preset, fmt) for s in sources]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def scan_sources(
    sources: list,
    preset: str = "auto",
    jobs: int = 1,
    fmt: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "process",
    ray_address: str | None = None,
) -> list[tuple[dict | None, str | None]]:
    """Results in source order; with jobs > 1 chunks of runs go to worker processes,
    with backend="ray" to Ray tasks (integrations.ray_scan; raises RayUnavailable)."""
    if backend == "ray":
        from rldk_engine.integrations.ray_scan import scan_sources_ray

        return scan_sources_ray(sources, preset, jobs, fmt, progress, address=ray_address)
    total = len(sources)
    results: list[tuple[dict | None, str | None]] = []
    jobs = max(1, min(jobs, total))
    if jobs == 1:
        for i, source in enumerate(sources):
            results.append(scan_one(source, preset, fmt))
            if progress:
                progress(i + 1, total)
        return results
    # import the work in the parent so forked workers start with it loaded
    from rldk_engine.ingest import readers  # noqa: F401

    # a few chunks per worker: little pickling overhead, still balanced
    size = max(1, -(-total // (jobs * 4)))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_scan_chunk, chunk, preset, fmt) for chunk in _chunks(sources, size)]
        for future in futures:
            results.extend(future.result())
            if progress:
                progress(len(results), total)
    return results


def scan_paths(
    paths: Iterable[str | os.PathLike],
    preset: str = "auto",
    jobs: int = 1,
    fmt: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "process",
    ray_address: str | None = None,
) -> dict:
    """The full scan report: {"tool", "version", "created", "runs", "errors"}."""
    from rldk_engine.ingest.readers import discover_sources

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (use {', '.join(PRESETS)})")
    sources, errors = discover_sources(paths)
    runs = []
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    for entry, error in scan_sources(sources, preset, jobs, fmt, progress, backend, ray_address):
        if entry is not None:
            runs.append(entry)
        else:
            errors.append(error)
    return {
        "tool": "rldk",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
        "errors": errors,
    }


def worst_severity(report: dict) -> str | None:
    worst = None
    for run in report["runs"]:
        for a in run["anomalies"]:
            if worst is None or SEVERITY_RANK[a["severity"]] > SEVERITY_RANK[worst]:
                worst = a["severity"]
    return worst
