"""Environment audit: what makes a training run (non-)reproducible on this machine.

`audit_environment()` collects facts; `audit_findings(env)` turns them into findings,
each with the concrete fix. torch is imported lazily and only if installed; every
GPU probe degrades to "not available" instead of failing.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

from rldk_engine.constants import SEVERITY_RANK

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _torch_facts() -> dict:
    """torch version and determinism flags; {"installed": False} without torch."""
    if importlib.util.find_spec("torch") is None:
        return {"installed": False}
    try:
        import torch
    except Exception as exc:  # a broken install is a finding, not a crash
        return {"installed": False, "import_error": f"{type(exc).__name__}: {exc}"}
    facts: dict = {"installed": True, "version": str(torch.__version__)}
    facts["deterministic_algorithms"] = _safe(torch.are_deterministic_algorithms_enabled)
    facts["num_threads"] = _safe(torch.get_num_threads)
    facts["num_interop_threads"] = _safe(torch.get_num_interop_threads)
    facts["cuda_build"] = getattr(torch.version, "cuda", None)
    return facts


def _cuda_facts() -> dict:
    try:
        import torch
    except Exception:
        return {"available": False, "device_count": 0, "devices": []}
    available = bool(_safe(torch.cuda.is_available) or False)
    devices: list[str] = []
    if available:
        count = _safe(torch.cuda.device_count) or 0
        devices = [str(_safe(lambda i=i: torch.cuda.get_device_name(i))) for i in range(count)]
    return {"available": available, "device_count": len(devices), "devices": devices}


def _cudnn_facts() -> dict:
    try:
        import torch.backends.cudnn as cudnn
    except Exception:
        return {"available": False, "deterministic": None, "benchmark": None, "version": None}
    return {
        "available": bool(_safe(cudnn.is_available) or False),
        "version": _safe(cudnn.version),
        "deterministic": bool(cudnn.deterministic),
        "benchmark": bool(cudnn.benchmark),
    }


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


def audit_environment() -> dict:
    """Facts about Python, the platform, torch, CUDA/cuDNN, seeds and threads."""
    torch_facts = _torch_facts()
    torch_ok = torch_facts.get("installed", False)
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch_facts,
        "cuda": _cuda_facts() if torch_ok else {"available": False, "device_count": 0, "devices": []},
        "cudnn": _cudnn_facts() if torch_ok else {"available": False, "deterministic": None,
                                                  "benchmark": None, "version": None},
        "env": {
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            **{var: os.environ.get(var) for var in THREAD_VARS},
        },
    }


def _finding(finding: str, severity: str, fix: str) -> dict:
    return {"finding": finding, "severity": severity, "fix": fix}


def audit_findings(env: dict) -> list[dict]:
    """Reproducibility findings, worst first, each with the fix to apply."""
    found: list[dict] = []
    variables = env.get("env", {})
    torch_facts = env.get("torch", {})
    cuda = env.get("cuda", {}).get("available", False)
    cudnn = env.get("cudnn", {})

    if not variables.get("PYTHONHASHSEED"):
        found.append(_finding(
            "PYTHONHASHSEED is unset: set/dict iteration order of str keys differs per process",
            "warning", "export PYTHONHASHSEED=0 before launching (it must be set before Python starts)"))
    if not torch_facts.get("installed"):
        found.append(_finding(
            "torch is not installed here: torch determinism flags could not be audited",
            "info", "run `rldk doctor` inside the training environment to audit torch"))
    else:
        if torch_facts.get("deterministic_algorithms") is False:
            found.append(_finding(
                "torch deterministic algorithms are off: some kernels (scatter/index_add, "
                "cuBLAS reductions) may differ run to run",
                "warning", "call torch.use_deterministic_algorithms(True) at start-up"))
        if cuda and not variables.get("CUBLAS_WORKSPACE_CONFIG"):
            found.append(_finding(
                "CUBLAS_WORKSPACE_CONFIG is unset: cuBLAS matmuls are not reproducible on CUDA >= 10.2",
                "warning", "export CUBLAS_WORKSPACE_CONFIG=:4096:8"))
        if cudnn.get("benchmark"):
            found.append(_finding(
                "cuDNN benchmark mode is on: autotuning may pick different kernels each run",
                "warning" if cuda else "info", "set torch.backends.cudnn.benchmark = False"))
        if cudnn.get("deterministic") is False and cuda:
            found.append(_finding(
                "cuDNN deterministic mode is off: convolutions may use non-deterministic algorithms",
                "warning", "set torch.backends.cudnn.deterministic = True"))
        if not cuda:
            found.append(_finding(
                "no CUDA device: cuDNN/cuBLAS flags are no-ops here; CPU kernels are "
                "deterministic for a fixed thread count",
                "info", "audit again on the GPU machine that trains; keep thread counts fixed"))
    if not any(variables.get(var) for var in THREAD_VARS):
        threads = torch_facts.get("num_threads") or env.get("cpu_count")
        found.append(_finding(
            f"OMP_NUM_THREADS/MKL_NUM_THREADS unset (torch uses {threads} threads): float "
            "reductions can change with the thread count across machines",
            "info", "export OMP_NUM_THREADS=<n> and MKL_NUM_THREADS=<n> (same n on every run)"))
    found.sort(key=lambda f: -SEVERITY_RANK[f["severity"]])
    return found
