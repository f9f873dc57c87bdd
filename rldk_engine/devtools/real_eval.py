"""`rldk-engine eval-detectors --real DIR`: detector quality on labelled real logs.

DIR holds one folder per run: `DIR/<run>/` with the log file(s), `PROVENANCE.md` and
`label.json`:

    {"trainer": "...", "format": "...", "healthy": true|false,
     "failures": [{"rule": "<rule id>", "start_step": N, "end_step": M,
                   "min_severity": "warning"}],
     "notes": "..."}

Each run is read as a user's scan reads it and judged twice: by the offline detectors
(`scan`) and by the live preset of its algorithm replayed step by step (`rules.replay`).

Scoring (per rule and overall, warning and above only; info never counts):
- a detection matches a failure when the rule is the same, its severity is at least the
  failure's `min_severity` (default warning) and its window overlaps the failure window
  widened by `tolerance` (10 steps, or 2 logged intervals when the run logs sparsely);
- recall = failures matched / failures; precision = matching detections / detections;
- every warning+ detection on a healthy run is a false alarm (the target is none);
- delay = first matching detection's start - failure start, in steps and in logged points.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rldk_engine.constants import SEVERITY_RANK
from rldk_engine.devtools.quality import TOLERANCE, Detection, overlaps, streaming_detections

LABEL_FILE = "label.json"
NOT_LOGS = {LABEL_FILE, "PROVENANCE.md", "README.md", "LICENSE", "NOTICE"}
TARGETS = {"recall": 0.9, "healthy_run_findings": 0}
MODES = ("offline", "streaming")


class LabelError(ValueError):
    """A label.json that does not follow the format (message names the file)."""


@dataclass
class RealRun:
    name: str
    folder: Path
    label: dict
    log: Path | None = None
    error: str | None = None
    algorithm: str = "ppo"
    steps: np.ndarray | None = None
    detections: dict[str, list[Detection]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.label.get("healthy"))

    @property
    def failures(self) -> list[dict]:
        return list(self.label.get("failures") or [])

    def tolerance(self) -> int:
        if self.steps is None or self.steps.size < 2:
            return TOLERANCE
        return int(max(TOLERANCE, 2 * float(np.median(np.diff(self.steps)))))

    def points_between(self, a: int, b: int) -> int:
        """Logged points from step a up to step b (negative when b is before a)."""
        if self.steps is None:
            return b - a
        ia, ib = np.searchsorted(self.steps, [a, b])
        return int(ib - ia)


def read_label(path: Path) -> dict:
    try:
        label = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(label, dict) or not isinstance(label.get("healthy"), bool):
        raise LabelError(f"{path}: needs a boolean 'healthy'")
    for i, f in enumerate(label.get("failures") or []):
        if not (isinstance(f, dict) and isinstance(f.get("rule"), str)
                and isinstance(f.get("start_step"), int) and isinstance(f.get("end_step"), int)):
            raise LabelError(f"{path}: failures[{i}] needs rule, start_step and end_step")
        if f.get("min_severity", "warning") not in SEVERITY_RANK:
            raise LabelError(f"{path}: failures[{i}]: unknown min_severity {f['min_severity']!r}")
    if not label["healthy"] and not label.get("failures"):
        raise LabelError(f"{path}: a failing run needs at least one entry in 'failures'")
    return label


def find_runs(root: Path) -> list[RealRun]:
    """Every folder under root holding a label.json, sorted by name."""
    runs = []
    for label_path in sorted(Path(root).rglob(LABEL_FILE)):
        folder = label_path.parent
        name = str(folder.relative_to(root)) if folder != Path(root) else folder.name
        try:
            label = read_label(label_path)
        except LabelError as exc:
            runs.append(RealRun(name, folder, {"healthy": True}, error=str(exc)))
            continue
        runs.append(RealRun(name, folder, label))
    return runs


def log_sources(folder: Path) -> list:
    """The run's readable sources in its folder (provenance and label files left out)."""
    from rldk_engine.ingest.readers import discover_sources

    sources, _ = discover_sources([folder])
    return [s for s in sources if not any(Path(p).name in NOT_LOGS for p in s.paths)]


def judge(run: RealRun, modes=MODES) -> RealRun:
    from rldk_engine.errors import InputError
    from rldk_engine.forensics.detectors import infer_algorithm
    from rldk_engine.forensics.run_scan import run_entry
    from rldk_engine.ingest.readers import read_run

    if run.error:
        return run
    sources = log_sources(run.folder)
    if not sources:
        run.error = f"{run.folder}: no log file beside {LABEL_FILE}"
        return run
    best = None
    for source in sources:  # several files (e.g. a CSV and event files): the longest run
        try:
            candidate = read_run(source)
        except InputError:
            continue
        if best is None or candidate.n_steps > best.n_steps:
            best = candidate
    if best is None:
        run.error = f"{run.folder}: no readable log"
        return run
    run.log = Path(best.source)
    run.steps = best.steps
    run.algorithm = infer_algorithm(best)
    if "offline" in modes:
        entry = run_entry(best)
        run.detections["offline"] = [
            Detection(a["rule"], int(a["start_step"]), int(a["end_step"]), a["severity"])
            for a in entry["anomalies"]]
    if "streaming" in modes:
        run.detections["streaming"] = streaming_detections(best, run.algorithm)
    return run


def _counts_for(d: Detection, failure: dict) -> bool:
    return SEVERITY_RANK[d.severity] >= SEVERITY_RANK[failure.get("min_severity", "warning")]


def _matches(d: Detection, failure: dict, tolerance: int) -> bool:
    return _counts_for(d, failure) and overlaps(d, failure, tolerance)


@dataclass
class Score:
    failures: int = 0
    recalled: int = 0
    detections: int = 0
    matching: int = 0
    healthy_findings: int = 0
    delays: list[int] = field(default_factory=list)
    delay_points: list[int] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("failures", "recalled", "detections", "matching", "healthy_findings"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays += other.delays
        self.delay_points += other.delay_points

    def as_dict(self, examples: bool = True) -> dict:
        out: dict[str, object] = {
            "failures": self.failures, "recalled": self.recalled,
            "recall": _ratio(self.recalled, self.failures),
            "detections": self.detections, "matching": self.matching,
            "precision": _ratio(self.matching, self.detections),
            "healthy_run_findings": self.healthy_findings,
            "median_delay_steps": _median(self.delays),
            "median_delay_points": _median(self.delay_points),
        }
        if examples:
            out["missed"] = self.missed[:8]
            out["false_alarms"] = self.false_alarms[:8]
        return out


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def score(runs: list[RealRun], mode: str, covered: dict[str, set[str]] | None = None) -> dict:
    """Per-rule and overall scores of one mode. `covered` (algorithm -> rule ids) limits
    the streaming recall to the rules a live preset has."""
    per_rule: dict[str, Score] = {}
    for run in runs:
        if run.error or mode not in run.detections:
            continue
        tol = run.tolerance()
        findings = [d for d in run.detections[mode] if d.is_finding]
        failures = [f for f in run.failures
                    if covered is None or f["rule"] in covered.get(run.algorithm, set())]
        for f in failures:
            s = per_rule.setdefault(f["rule"], Score())
            s.failures += 1
            hits = [d for d in findings if _matches(d, f, tol)]
            if hits:
                first = min(hits, key=lambda d: d.start_step)
                s.recalled += 1
                s.delays.append(first.start_step - f["start_step"])
                s.delay_points.append(run.points_between(f["start_step"], first.start_step))
            else:
                s.missed.append(f"{run.name} [{f['start_step']}-{f['end_step']}]")
        for d in findings:
            s = per_rule.setdefault(d.rule, Score())
            s.detections += 1
            if any(_matches(d, f, tol) for f in run.failures):
                s.matching += 1
            elif run.healthy:
                s.healthy_findings += 1
                s.false_alarms.append(f"{run.name} {d.severity} [{d.start_step}-{d.end_step}]")
            else:
                s.false_alarms.append(f"{run.name} (failing run, unlabelled) {d.severity} "
                                      f"[{d.start_step}-{d.end_step}]")
    total = Score()
    for s in per_rule.values():
        total.add(s)
    return {"overall": total.as_dict(examples=False),
            "per_rule": {rule: per_rule[rule].as_dict() for rule in sorted(per_rule)}}


def run_rows(runs: list[RealRun]) -> list[dict]:
    rows = []
    for run in runs:
        offline = run.detections.get("offline", [])
        rows.append({
            "run": run.name, "trainer": run.label.get("trainer"), "healthy": run.healthy,
            "log": str(run.log) if run.log else None, "algorithm": run.algorithm,
            "error": run.error,
            "labelled": [f"{f['rule']} [{f['start_step']}-{f['end_step']}]" for f in run.failures],
            "found": [f"{d.rule} {d.severity} [{d.start_step}-{d.end_step}]"
                      for d in offline if d.is_finding],
            "live": [f"{d.rule} {d.severity} [{d.start_step}-{d.end_step}]"
                     for d in run.detections.get("streaming", []) if d.is_finding],
        })
    return rows


def evaluate_real(root: str | Path, modes=MODES) -> dict:
    from rldk_engine.devtools.quality import preset_rule_ids

    root = Path(root)
    runs = [judge(run, modes) for run in find_runs(root)]
    covered = {algo: preset_rule_ids(algo) for algo in ("ppo", "grpo")}
    result: dict = {
        "root": str(root),
        "runs": len(runs),
        "healthy_runs": sum(r.healthy and not r.error for r in runs),
        "failing_runs": sum(not r.healthy and not r.error for r in runs),
        "errors": [r.error for r in runs if r.error],
        "trainers": sorted({str(r.label.get("trainer")) for r in runs if not r.error}),
        "targets": TARGETS,
    }
    for mode in modes:
        result[mode] = score(runs, mode, covered if mode == "streaming" else None)
    if "offline" in modes:
        o = result["offline"]["overall"]
        result["offline_meets_targets"] = (
            (o["recall"] or 0.0) >= TARGETS["recall"] if o["failures"] else True
        ) and o["healthy_run_findings"] == TARGETS["healthy_run_findings"]
    result["per_run"] = run_rows(runs)
    return result


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def real_markdown(result: dict) -> str:
    lines = [
        "# Detector quality on real logs",
        "",
        f"{result['runs']} labelled runs under `{result['root']}` ({result['healthy_runs']} healthy, "
        f"{result['failing_runs']} failing; trainers: {', '.join(result['trainers'])}).",
        "",
        "A warning/critical detection matches a labelled failure with the same rule, at least",
        "its min_severity, overlapping its window (10 steps or 2 logged intervals of slack).",
        "Any warning/critical on a healthy run is a false alarm. Delay = detection start - failure",
        "start (steps; logged points in brackets).",
        "",
        f"Targets (offline): recall >= {TARGETS['recall']}, no warning/critical on healthy runs. "
        f"Met: **{'yes' if result.get('offline_meets_targets') else 'no'}**.",
        "",
    ]
    for mode in MODES:
        if mode not in result:
            continue
        o = result[mode]["overall"]
        lines += [
            f"## {mode}" + (" (live presets replayed; recall over the rules a preset has)"
                            if mode == "streaming" else ""),
            "",
            f"Overall: recall {_fmt(o['recall'])} ({o['recalled']}/{o['failures']}), precision "
            f"{_fmt(o['precision'])} ({o['matching']}/{o['detections']}), warning+ on healthy "
            f"runs: {o['healthy_run_findings']}, median delay {_fmt(o['median_delay_steps'])} steps "
            f"({_fmt(o['median_delay_points'])} points).",
            "",
            "| rule | failures | recall | detections | precision | on healthy runs | median delay |",
            "|---|---|---|---|---|---|---|",
        ]
        for rule, s in result[mode]["per_rule"].items():
            lines.append(f"| {rule} | {s['failures']} | {_fmt(s['recall'])} | {s['detections']} | "
                         f"{_fmt(s['precision'])} | {s['healthy_run_findings']} | "
                         f"{_fmt(s['median_delay_steps'])} ({_fmt(s['median_delay_points'])}) |")
        for rule, s in result[mode]["per_rule"].items():
            if s["missed"]:
                lines.append(f"- {rule} missed: " + "; ".join(s["missed"]))
            if s["false_alarms"]:
                lines.append(f"- {rule} not matching a label: " + "; ".join(s["false_alarms"]))
        lines.append("")
    lines += ["## Runs", "", "| run | trainer | healthy | labelled | found (offline, warning+) |",
              "|---|---|---|---|---|"]
    for row in result["per_run"]:
        found = "; ".join(row["found"]) or ("error: " + row["error"] if row["error"] else "-")
        lines.append(f"| {row['run']} | {row['trainer']} | {row['healthy']} | "
                     f"{'; '.join(row['labelled']) or '-'} | {found} |")
    return "\n".join(lines) + "\n"


def write_real(result: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "detector_quality_real.json", out / "detector_quality_real.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(real_markdown(result), encoding="utf-8")
    return json_path, md_path
