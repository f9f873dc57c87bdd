"""Scan backends: one small interface, options in one dataclass.

A backend takes the discovered sources and the `ScanOptions` and returns one result per
source, in source order (so the report is the same whichever backend ran it). The process
backend lives here; the Ray backend in `integrations.ray_scan` (optional extra). `scan.py`
picks one by name (`backend_for`); no backend imports scan.py, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from rldk_engine.forensics.run_scan import Result, chunk_size, chunk_sources, scan_chunk, scan_one

PRESETS = ("auto", "ppo", "grpo")
BACKENDS = ("process", "ray")

Progress = Callable[[int, int], None]  # (runs done, runs total)


@dataclass(frozen=True)
class ScanOptions:
    preset: str = "auto"  # auto, ppo or grpo
    jobs: int = 1  # worker processes (process) or local Ray CPUs (ray)
    fmt: str | None = None  # force a reader format instead of detecting it
    backend: str = "process"  # process or ray
    ray_address: str | None = None  # ray only: join this cluster instead of a local one

    def validate(self) -> ScanOptions:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r} (use {', '.join(PRESETS)})")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r} (use {', '.join(BACKENDS)})")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        return self


class ScanBackend(Protocol):
    name: str

    def run(self, sources: list, options: ScanOptions, progress: Progress | None = None) -> list[Result]:
        """One result per source, in source order."""
        ...


class ProcessBackend:
    """In this process (jobs=1) or chunks of runs on a process pool."""

    name = "process"

    def run(self, sources: list, options: ScanOptions, progress: Progress | None = None) -> list[Result]:
        total = len(sources)
        jobs = max(1, min(options.jobs, total))
        results: list[Result] = []
        if jobs == 1:
            for i, source in enumerate(sources):
                results.append(scan_one(source, options.preset, options.fmt))
                if progress:
                    progress(i + 1, total)
            return results
        # import the work in the parent so forked workers start with it loaded
        from rldk_engine.ingest import readers  # noqa: F401

        chunks = chunk_sources(sources, chunk_size(total, jobs))
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(scan_chunk, chunk, options.preset, options.fmt) for chunk in chunks]
            for future in futures:
                results.extend(future.result())
                if progress:
                    progress(len(results), total)
        return results
