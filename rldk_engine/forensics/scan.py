"""`scan`: read runs, run every detector, score health, build the SPEC "Scan report".

The per-run unit of work is `run_scan.scan_one`; a backend (`backends.ProcessBackend`,
`integrations.ray_scan.RayBackend`) runs it over the discovered sources, chosen by
`ScanOptions.backend`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone

from rldk_engine import __version__
from rldk_engine.constants import SEVERITY_RANK
from rldk_engine.forensics.backends import (
    BACKENDS,
    PRESETS,
    ProcessBackend,
    Progress,
    ScanBackend,
    ScanOptions,
)
from rldk_engine.forensics.run_scan import NO_METRICS, Result, run_entry, scan_one, scan_run

__all__ = [
    "BACKENDS", "PRESETS", "ScanOptions", "backend_for", "run_entry", "scan_one", "scan_paths",
    "scan_run", "scan_sources", "scored_runs", "worst_severity",
]


def backend_for(name: str) -> ScanBackend:
    """The backend called `name` (the Ray one is imported only when asked for)."""
    if name == "ray":
        from rldk_engine.integrations.ray_scan import RayBackend

        return RayBackend()
    if name == "process":
        return ProcessBackend()
    raise ValueError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")


def scan_sources(sources: list, options: ScanOptions | None = None,
                 progress: Progress | None = None) -> list[Result]:
    """One result per source, in source order, from the options' backend."""
    options = (options or ScanOptions()).validate()
    return backend_for(options.backend).run(sources, options, progress)


def scan_paths(
    paths: Iterable[str | os.PathLike],
    preset: str = "auto",
    jobs: int = 1,
    fmt: str | None = None,
    progress: Progress | None = None,
    backend: str = "process",
    ray_address: str | None = None,
    options: ScanOptions | None = None,
) -> dict:
    """The full scan report: {"tool", "version", "created", "runs", "errors"}.

    Pass `options` or the loose keywords (kept for callers written before ScanOptions)."""
    from rldk_engine.ingest.readers import discover_sources

    if options is None:
        options = ScanOptions(preset=preset, jobs=jobs, fmt=fmt, backend=backend,
                              ray_address=ray_address)
    options.validate()
    sources, errors = discover_sources(paths)
    runs = []
    for entry, error in scan_sources(sources, options, progress):
        if entry is not None:
            runs.append(entry)
            if entry["health"]["overall"] is None:  # "no metrics": listed among the errors
                errors.extend(e for e in entry["errors"] if NO_METRICS in e)
        elif error is not None:
            errors.append(error)
    return {
        "tool": "rldk",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
        "errors": errors,
    }


def scored_runs(report: dict) -> list[dict]:
    """The runs that had metrics to judge (health not n/a)."""
    return [run for run in report["runs"] if run["health"]["overall"] is not None]


def worst_severity(report: dict) -> str | None:
    worst = None
    for run in report["runs"]:
        for a in run["anomalies"]:
            if worst is None or SEVERITY_RANK[a["severity"]] > SEVERITY_RANK[worst]:
                worst = a["severity"]
    return worst
