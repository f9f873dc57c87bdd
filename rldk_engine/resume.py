"""The resume plan: after a stop (or in `doctor`), where to resume from and what to change.

A plan names the last step before the first warning-or-worse anomaly (the last healthy
step), the newest checkpoint at or before it, the rules that fired and their fixes (from
the rule registry, rldk_engine.rulebook). Checkpoints are found by name under the
trainer's output folder:

    Hugging Face   checkpoint-N/                 verl        global_step_N/
    Lightning      epoch=E-step=N.ckpt           plain       *step*N* (step_100.pt, model-step-100/)

The folder comes from `--checkpoints DIR` or from the trainer's command line
(`--output_dir X`, `--output-dir X`, `output_dir=X`, `trainer.default_local_dir=X`, ...).

Base-level module: standard library only, importable from live (the monitor's stop path)
and from forensics (doctor). The plan dict is the status.json "resume" schema:
{"last_healthy_step", "first_bad_step", "checkpoint", "rules", "fixes", "scan_command"}.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAN_JSON = "resume_plan.json"
PLAN_TEXT = "resume_plan.txt"
SERIOUS = ("warning", "critical")

# A checkpoint's step from its name; the first pattern that matches names the kind.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("hf", re.compile(r"^checkpoint-(\d+)$")),
    ("verl", re.compile(r"^global_step_(\d+)$")),
    ("lightning", re.compile(r"^epoch=\d+-step=(\d+)(?:[-_].*)?\.ckpt$")),
    ("plain", re.compile(r"step[-_=]?(\d+)(?!\d)", re.IGNORECASE)),
)
# What a checkpoint file looks like when it is a file, not a folder (a "step" in a log
# file's name is not a checkpoint).
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".npz", ".tar")
# Searching is bounded: an output folder may hold datasets with millions of files.
MAX_DEPTH = 3
MAX_ENTRIES = 20_000

# Command-line spellings of a trainer's output folder (argparse, Hydra/OmegaConf, verl,
# Lightning). Longer keys first so `trainer.default_local_dir` wins over a shorter match.
OUTPUT_KEYS = (
    "trainer.default_local_dir", "default_local_dir", "default_root_dir", "output_dir",
    "checkpoint_dir", "checkpoints_dir", "ckpt_dir", "save_dir", "save_path",
)


@dataclass(frozen=True)
class Checkpoint:
    path: str
    step: int
    kind: str  # hf | verl | lightning | plain


def checkpoint_step(name: str, is_dir: bool) -> tuple[int, str] | None:
    """(step, kind) when `name` is a checkpoint's name, else None."""
    for kind, pattern in _PATTERNS:
        if kind == "plain" and not is_dir and not name.lower().endswith(_CHECKPOINT_SUFFIXES):
            continue
        if kind in ("hf", "verl") and not is_dir:
            continue
        m = pattern.search(name)
        if m:
            return int(m.group(1)), kind
    return None


def find_checkpoints(root: str | os.PathLike[str]) -> list[Checkpoint]:
    """Checkpoints under `root` (itself included), oldest step first. A checkpoint folder
    is not searched inside (DeepSpeed puts a `global_stepN` in every `checkpoint-N`)."""
    base = Path(root)
    found: list[Checkpoint] = []
    seen = 0
    if base.name and (hit := checkpoint_step(base.name, base.is_dir())) is not None:
        return [Checkpoint(str(base), hit[0], hit[1])]
    stack: list[tuple[Path, int]] = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                return sorted(found, key=lambda c: (c.step, c.path))
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            hit = checkpoint_step(entry.name, is_dir)
            if hit is not None:
                found.append(Checkpoint(entry.path, hit[0], hit[1]))
            elif is_dir and depth + 1 < MAX_DEPTH and not entry.name.startswith("."):
                stack.append((Path(entry.path), depth + 1))
    return sorted(found, key=lambda c: (c.step, c.path))


def output_dirs_from_cmd(argv: Sequence[str], cwd: str | os.PathLike[str] | None = None) -> list[Path]:
    """The output folders a trainer's command line names, in order, relative to `cwd`."""
    found: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        for key in OUTPUT_KEYS:
            spellings = {f"--{key}", f"--{key.replace('_', '-')}", key, f"+{key}", f"++{key}"}
            name, eq, value = arg.partition("=")
            if eq and name in spellings and value:
                found.append(value)
                break
            if not eq and arg in spellings and arg.startswith("--") and i + 1 < len(args):
                found.append(args[i + 1])
                break
    base = Path(cwd) if cwd is not None else Path.cwd()
    out: list[Path] = []
    for value in found:
        p = Path(value.strip("'\"")).expanduser()
        p = p if p.is_absolute() else base / p
        if p not in out:
            out.append(p)
    return out


def first_bad(anomalies: Iterable[Mapping[str, Any]]) -> tuple[int | None, list[str]]:
    """The first step of the earliest warning-or-worse anomaly, and the ids of every
    warning-or-worse rule (first seen first)."""
    first: int | None = None
    rules: list[str] = []
    for a in anomalies:
        if a.get("severity") not in SERIOUS:
            continue
        rule = str(a.get("rule", ""))
        if rule and rule not in rules:
            rules.append(rule)
        start = a.get("start_step", a.get("step"))
        if isinstance(start, int) and not isinstance(start, bool):
            first = start if first is None else min(first, start)
    return first, rules


def last_healthy(steps: Iterable[int], first_bad_step: int | None) -> int | None:
    """The last step seen before `first_bad_step` (the last step seen when there is none)."""
    best: int | None = None
    for s in steps:
        if (first_bad_step is None or s < first_bad_step) and (best is None or s > best):
            best = s
    return best


def rule_fixes(rule_ids: Sequence[str]) -> list[str]:
    """The registry's fixes for these rules, each once."""
    if not rule_ids:
        return []
    try:
        from rldk_engine.rulebook import fixes_for
    except ImportError:  # the registry is a base module; absent only in a broken install
        return []
    return list(dict.fromkeys(str(f) for f in fixes_for(list(rule_ids))))


def build_plan(
    steps: Iterable[int],
    anomalies: Iterable[Mapping[str, Any]],
    checkpoint_dirs: Sequence[str | os.PathLike[str]] = (),
    scan_command: str = "",
) -> dict[str, Any]:
    """The resume plan (status.json "resume" schema)."""
    first_bad_step, rules = first_bad(anomalies)
    healthy = last_healthy(steps, first_bad_step)
    checkpoint = best_checkpoint(checkpoint_dirs, healthy, first_bad_step)
    return {
        "last_healthy_step": healthy,
        "first_bad_step": first_bad_step,
        "checkpoint": checkpoint.path if checkpoint else None,
        "rules": rules,
        "fixes": rule_fixes(rules),
        "scan_command": scan_command,
    }


def best_checkpoint(dirs: Sequence[str | os.PathLike[str]], last_healthy_step: int | None,
                    first_bad_step: int | None) -> Checkpoint | None:
    """The newest checkpoint at or before the last healthy step. With no anomaly, the
    newest one; with an anomaly but no healthy step seen, one saved before the bad step."""
    limit = last_healthy_step if last_healthy_step is not None else (
        None if first_bad_step is None else first_bad_step - 1)
    best: Checkpoint | None = None
    for d in dirs:
        for c in find_checkpoints(d):
            if (limit is None and first_bad_step is None) or (limit is not None and c.step <= limit):
                if best is None or c.step > best.step:
                    best = c
    return best


def plan_text(plan: Mapping[str, Any]) -> str:
    """The plan for people: a few lines, what to resume from and what to change."""
    lines = ["resume plan"]
    bad, healthy = plan.get("first_bad_step"), plan.get("last_healthy_step")
    if bad is None:
        lines.append("  no warning-or-worse anomaly: the run looks healthy up to its last step"
                     + (f" ({healthy})" if healthy is not None else ""))
    else:
        lines.append(f"  first bad step: {bad} ({', '.join(plan.get('rules') or []) or 'unknown rule'})")
        lines.append(f"  last healthy step: {healthy if healthy is not None else 'none seen'}")
    ckpt = plan.get("checkpoint")
    lines.append(f"  resume from: {ckpt}" if ckpt else
                 "  resume from: no checkpoint found at or before the last healthy step "
                 "(give --checkpoints DIR, or save more often)")
    for fix in plan.get("fixes") or []:
        lines.append(f"  try: {fix}")
    if plan.get("scan_command"):
        lines.append(f"  details: {plan['scan_command']}")
    return "\n".join(lines)


def write_plans(entries: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """`out_dir/resume_plan.json` ({"tool": "rldk", "runs": [{"run_id", "source", "resume"}]})
    and `out_dir/resume_plan.txt`, the same for people. OSError goes to the caller."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, text_path = out / PLAN_JSON, out / PLAN_TEXT
    json_path.write_text(json.dumps({"tool": "rldk", "runs": [dict(e) for e in entries]}, indent=1) + "\n",
                         encoding="utf-8")
    text = "\n\n".join(f"{e.get('run_id')} ({e.get('source')})\n{plan_text(e['resume'])}" for e in entries)
    text_path.write_text(text + "\n", encoding="utf-8")
    return json_path, text_path


class ResumeTracker:
    """What a live supervisor (the monitor, the HF callback) needs for the plan, in bounded
    memory: recent steps, and for the first warning-or-worse alert its first step and the
    step before it, fixed when it fires (a long run may have forgotten them by the stop)."""

    RECENT = 4096

    def __init__(self) -> None:
        from collections import deque

        self.recent: deque[int] = deque(maxlen=self.RECENT)
        self.first_bad_step: int | None = None
        self.healthy_before: int | None = None
        self.last_step: int | None = None
        self.rules: list[str] = []

    def step(self, step: int) -> None:
        if step != self.last_step:
            self.recent.append(step)
            self.last_step = step

    def alert(self, rule: str, step: int | None, severity: str, window: int) -> None:
        """A fired alert; `window` is its rule's persistence (the episode began window-1
        observed steps before `step`)."""
        if severity not in SERIOUS or step is None:
            return
        if rule not in self.rules:
            self.rules.append(rule)
        start = streak_start(list(self.recent), step, window)
        if self.first_bad_step is None or start < self.first_bad_step:
            self.first_bad_step = start
            self.healthy_before = last_healthy(self.recent, start)

    def plan(self, checkpoint_dirs: Sequence[str | os.PathLike[str]] = (), scan_command: str = "") -> dict[str, Any]:
        if self.first_bad_step is None:
            steps: list[int] = [self.last_step] if self.last_step is not None else []
            anomalies: list[dict[str, Any]] = []
        else:
            steps = [self.healthy_before] if self.healthy_before is not None else []
            anomalies = [{"rule": self.rules[0], "start_step": self.first_bad_step, "severity": "warning"}]
        plan = build_plan(steps, anomalies, checkpoint_dirs, scan_command)
        plan["rules"] = list(self.rules)
        plan["fixes"] = rule_fixes(self.rules)
        return plan


def streak_start(steps_seen: Sequence[int], fire_step: int, window: int) -> int:
    """The first step of a `window`-step episode that fired at `fire_step`: the live
    engine reports where persistence was met; the anomaly began window-1 steps earlier."""
    if window <= 1:
        return fire_step
    earlier = [s for s in steps_seen if s <= fire_step]
    return earlier[-window] if len(earlier) >= window else (earlier[0] if earlier else fire_step)
