"""`rldk-engine scan --backend ray`: the same per-run work (`run_scan.scan_chunk`) on Ray.

Local (no address): a Ray instance with `jobs` CPUs is started and shut down after the
scan. With `address` ("auto", "ray://head:10001", "10.0.0.1:6379") an existing cluster is
used as it is; its workers must have rldk installed and see the same paths (a shared
filesystem), as with any Ray job. Results come back in source order, so the report is the
same whichever backend ran it.
"""

from __future__ import annotations

from rldk_engine.forensics.backends import Progress, ScanOptions
from rldk_engine.forensics.run_scan import Result, chunk_size, chunk_sources, scan_chunk
from rldk_engine.integrations import missing_extra_message

CHUNKS_PER_CPU = 4  # a few chunks per worker: little scheduling overhead, still balanced


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached (message is one line)."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(missing_extra_message("ray", "--backend ray")) from None
    return ray


def connect(ray, address: str | None, jobs: int) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(1, jobs), **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError, grpc errors
        where = f"at {address}" if address else "locally"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayUnavailable(f"cannot start or reach Ray {where}: {first}") from None
    return True


class RayBackend:
    """Chunks of runs as Ray tasks; raises RayUnavailable (one line) without Ray."""

    name = "ray"

    def run(self, sources: list, options: ScanOptions, progress: Progress | None = None) -> list[Result]:
        total = len(sources)
        if total == 0:
            return []
        ray = import_ray()
        started = connect(ray, options.ray_address, options.jobs)
        try:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            chunks = chunk_sources(sources, chunk_size(total, cpus, CHUNKS_PER_CPU))
            task = ray.remote(num_cpus=1)(scan_chunk)
            pending = {task.remote(chunk, options.preset, options.fmt): index
                       for index, chunk in enumerate(chunks)}
            done_chunks: dict[int, list] = {}
            finished = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    done_chunks[index] = ray.get(ref)
                    finished += len(done_chunks[index])
                if progress:
                    progress(finished, total)
            return [result for index in range(len(chunks)) for result in done_chunks[index]]
        finally:
            if started:
                ray.shutdown()
