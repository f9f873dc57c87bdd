"""Optional GPU line (utilisation, memory): pynvml or nvidia-smi; silently absent otherwise."""

from __future__ import annotations

import shutil
import subprocess

from textual import work
from textual.widgets import Static


def query_gpus() -> list[tuple[int, float, float, float]] | None:
    """[(index, util %, used MiB, total MiB)] or None when no NVIDIA GPU is visible."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            rows = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                rows.append((index, float(util), mem.used / 2**20, mem.total / 2**20))
            return rows or None
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - any NVML failure means "no GPU strip"
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
        fields = [[float(x) for x in line.split(",")] for line in out.splitlines() if line]
        gpus: list[tuple[int, float, float, float]] = [(int(r[0]), r[1], r[2], r[3])
                                                       for r in fields]
        return gpus or None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def format_gpus(rows: list[tuple[int, float, float, float]]) -> str:
    return "   ".join(
        f"GPU{index} {util:3.0f}%  {used / 1024:.1f}/{total / 1024:.1f} GiB"
        for index, util, used, total in rows
    )


class GpuStrip(Static):
    """Hidden until a query finds a GPU; polls every 2 s in a thread worker."""

    DEFAULT_CSS = """
    GpuStrip { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, enabled: bool = True, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.enabled = enabled

    def on_mount(self) -> None:
        self.display = False
        self._timer = None
        self._seen_gpu = False
        if self.enabled:
            self.poll()
            self._timer = self.set_interval(2.0, self.poll)

    @work(thread=True, exclusive=True, group="gpu")
    def poll(self) -> None:
        rows = query_gpus()
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows) -> None:
        if not rows and not self._seen_gpu and self._timer is not None:
            self._timer.stop()  # no NVIDIA GPU here: stop asking
        self._seen_gpu = self._seen_gpu or bool(rows)
        self.display = bool(rows)
        if rows:
            self.update(format_gpus(rows))
