"""Evidence: what the disagreement says about its cause, as concrete fixes.

Recommendations are derived from when and how the replicas diverge (first compared step:
an unseeded RNG; later and growing: kernels; one replica alone: its environment; exit codes
and step counts: the process), never a fixed list.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rldk_engine.determinism.compare import MetricComparison, logged_mask
from rldk_engine.determinism.replicas import ReplicaOutcome


def build_recommendations(
    comparisons: Sequence[MetricComparison],
    outcomes: Sequence[ReplicaOutcome],
    env: dict,
) -> list[str]:
    """Concrete fixes derived from how the replicas disagree; empty when they agree."""
    recs: list[str] = []
    recs += _process_findings(outcomes)
    diverged = [c for c in comparisons if c.n_mismatches]
    early = [c for c in diverged if c.first_divergence_index == 0]
    late = [c for c in diverged if c.first_divergence_index not in (None, 0)]
    if early:
        names = ", ".join(f"{c.metric} (step {c.first_divergence})" for c in early)
        follow = (
            "; " + ", ".join(f"{c.metric} (step {c.first_divergence})" for c in late)
            + " follow later, as a consequence" if late else ""
        )
        recs.append(
            f"Replicas differ from the first compared step in {names}{follow}: an unseeded "
            "RNG. Seed every generator once at start-up: random.seed(s), numpy.random.seed(s) "
            "(or np.random.default_rng(s)), torch.manual_seed(s) and "
            "torch.cuda.manual_seed_all(s); remove random.SystemRandom, os.urandom, "
            "secrets and uuid4 from anything that feeds training; set PYTHONHASHSEED "
            "if set/dict iteration order matters."
        )
    elif late:
        growing = any(c.grows for c in late)
        cpu_note = "" if _has_cuda(env) else (
            " (no CUDA here: the CUDA/cuDNN settings are a no-op on this CPU machine)"
        )
        names = ", ".join(f"{c.metric} (step {c.first_divergence})" for c in late)
        shape = "then the gap grows" if growing else "and the gap stays small"
        recs.append(
            f"Replicas agree at first and diverge later in {names}, {shape}: "
            "nondeterministic kernels or reduction order. Call "
            "torch.use_deterministic_algorithms(True), export "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8, set torch.backends.cudnn.benchmark=False and "
            "torch.backends.cudnn.deterministic=True, and avoid scatter_add/index_add and "
            f"atomics-based ops{cpu_note}; pin thread counts (torch.set_num_threads, "
            "OMP_NUM_THREADS) and keep data-loader workers seeded."
        )
    odd = _odd_replica_out(comparisons, outcomes)
    if odd is not None:
        recs.append(
            f"Only replica {odd} disagrees while the others match each other: look at its "
            f"environment (its working folder replica_{odd}/, host, GPU, library versions, "
            "environment variables, leftover checkpoints or caches it may have loaded)."
        )
    gaps = _coverage_findings(comparisons, outcomes)
    recs += gaps
    return recs


def _process_findings(outcomes: Sequence[ReplicaOutcome]) -> list[str]:
    findings: list[str] = []
    codes = {o.exit_code for o in outcomes if o.exit_code is not None}
    crashed = [o for o in outcomes if o.crashed]
    if crashed:
        detail = "; ".join(
            f"replica {o.index} exited {o.exit_code}"
            + (f" ({o.stderr_tail[-1]})" if o.stderr_tail else "")
            for o in crashed
        )
        findings.append(
            f"Exit codes differ ({sorted(codes)}): {detail}. Fix the crash first; a replica "
            "that dies early cannot be compared past its last step."
        )
    silent = [o.index for o in outcomes if not o.has_metrics]
    if silent:
        findings.append(
            f"Replica(s) {', '.join(map(str, silent))} produced no metrics "
            "(check their stdout.log/stderr.log, or --metrics-file)."
        )
    counts = {o.index: o.run.n_steps for o in outcomes if o.has_metrics}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"replica {i}: {n}" for i, n in counts.items())
        findings.append(
            f"Replicas logged different numbers of steps ({detail}): the run length itself "
            "is not deterministic (early stopping on a noisy metric, a time budget, or a crash)."
        )
    return findings


def _coverage_findings(
    comparisons: Sequence[MetricComparison], outcomes: Sequence[ReplicaOutcome]
) -> list[str]:
    counts = {o.run.n_steps for o in outcomes if o.has_metrics}
    if len(counts) > 1:
        return []  # already reported as different step counts
    out = []
    for c in comparisons:
        if c.missing_steps:
            detail = ", ".join(f"replica {i} misses {n}" for i, n in c.missing_steps.items())
            out.append(f"{c.metric} is logged at different steps across replicas ({detail}).")
    return out


def _odd_replica_out(
    comparisons: Sequence[MetricComparison], outcomes: Sequence[ReplicaOutcome]
) -> int | None:
    compared = [o for o in outcomes if o.has_metrics]
    if len(compared) < 3:
        return None  # with two replicas, neither is "the odd one"
    deviating: set[int] = set()
    for c in comparisons:
        deviating |= c.deviating_replicas
    return next(iter(deviating)) if len(deviating) == 1 else None


def _has_cuda(env: dict) -> bool:
    for key in ("cuda_available", "cuda"):
        value = env.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, dict) and isinstance(value.get("available"), bool):
            return value["available"]
    torch_info = env.get("torch")
    if isinstance(torch_info, dict):
        return bool(torch_info.get("cuda_available", False))
    return False


def audit_env() -> dict:
    """The same environment audit as `doctor` (rldk_engine.forensics.envaudit)."""
    try:
        from rldk_engine.forensics.envaudit import audit_environment
    except ImportError:  # the audit module is optional at import time
        return {"error": "rldk_engine.forensics.envaudit unavailable"}
    try:
        return audit_environment()
    except Exception as exc:  # an audit failure must not hide the check's result
        return {"error": f"environment audit failed: {exc}"}


_AUDIT_CODE = (
    "import json\n"
    "from rldk_engine.forensics.envaudit import audit_environment\n"
    "print(json.dumps(audit_environment()))\n"
)
AUDIT_TIMEOUT_S = 120.0


class BackgroundAudit:
    """The environment audit in a child interpreter, started before the replicas: it may
    import torch (1-2 s of CPU), which then runs on another core instead of holding this
    process's GIL and delaying the card. Same interpreter, same environment variables, so
    the same facts; any failure falls back to the audit in this process."""

    def __init__(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # where rldk_engine lives
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self._proc: subprocess.Popen[str] | None = subprocess.Popen(
                [sys.executable, "-c", _AUDIT_CODE], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
            )
        except OSError:
            self._proc = None

    def result(self) -> dict:
        if self._proc is None:
            return audit_env()
        try:
            out, _ = self._proc.communicate(timeout=AUDIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return {"error": f"environment audit took over {AUDIT_TIMEOUT_S:.0f} s"}
        if self._proc.returncode == 0:
            try:
                audited = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                audited = None
            if isinstance(audited, dict):
                return audited
        return audit_env()


def seeds_seen(argv: Sequence[str], outcomes: Sequence[ReplicaOutcome]) -> dict:
    """Seeds visible to us: seed flags on the command line, PYTHONHASHSEED, logged seeds."""
    flags: dict[str, str | bool] = {}
    for i, arg in enumerate(argv):
        key, _, inline = arg.partition("=")
        if "seed" in key.lower() and key.startswith("-"):
            if inline:
                flags[key] = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                flags[key] = argv[i + 1]
            else:
                flags[key] = True
    logged = {}
    for o in outcomes:
        mask = logged_mask(o.run, "seed")
        if mask.any():
            logged[str(o.index)] = json_number(float(o.run.columns["seed"][mask][0]))
    return {
        "cmd_flags": flags,
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        "logged": logged,
    }


def json_number(value: float):
    """Strict JSON has no NaN/Infinity: write them as the strings trainers log."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def env_findings(env: dict) -> list[dict]:
    """The environment audit's findings (each with its fix); none when the audit failed."""
    from rldk_engine.forensics.envaudit import audit_findings

    if "error" in env and "python" not in env:
        return []
    try:
        return audit_findings(env)
    except Exception:  # a partial audit (e.g. from a test) must not lose the card
        return []
