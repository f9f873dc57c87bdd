"""Detector matrix and detector-quality evaluation over the doctored fixtures.

Both run the same pipeline a user runs: fixtures are written as JSONL, read back
with `readers.read_run`, then judged by the offline detectors (`detectors.detect`,
preset "auto") and by the streaming guardrails (`rules.replay` with the run's
algorithm preset).

Matching (documented in the report):
- only detections at warning or critical count (info is "noted", never a finding);
- a detection matches a label when the rule ids are equal and the detection window
  [start, end] overlaps the label window widened by TOLERANCE steps on each side;
  a streaming alert's window is [fire step, clear step] (or [fire, fire]);
- a detection that matches a primary label is a true positive; one that matches only
  a secondary label (a symptom the fault legitimately causes, e.g. grad_imbalance
  under value_divergence) is ignored; any other warning+ detection — including every
  warning+ detection on a clean run — is a false positive;
- a primary label is recalled when at least one detection matches it;
- lead time = label end - first matching detection's step (start_step offline, the
  fire step live): positive means flagged before the window ended; delay = detection
  step - label start.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rldk_engine.devtools import fixtures as fx
from rldk_engine.rulebook import offline_rule_ids

if TYPE_CHECKING:
    from rldk_engine.ingest.run import Run

TOLERANCE = 10
FINDING_LEVELS = ("warning", "critical")
RULE_IDS = offline_rule_ids()  # every rule a stored log can show (the registry)
MODES = ("offline", "streaming")


@dataclass(frozen=True)
class Detection:
    rule: str
    start_step: int
    end_step: int
    severity: str

    @property
    def is_finding(self) -> bool:
        return self.severity in FINDING_LEVELS


@dataclass
class JudgedRun:
    algo: str
    scenario: str
    seed: int
    path: str
    labels: list[dict]
    detections: dict[str, list[Detection]] = field(default_factory=dict)  # mode -> detections
    error: str | None = None


# ---------------------------------------------------------------- running the detectors


def offline_detections(run: Run) -> list[Detection]:
    from rldk_engine.forensics.detectors import detect

    return [Detection(a.rule, int(a.start_step), int(a.end_step), a.severity)
            for a in detect(run, "auto")]


def streaming_detections(run: Run, preset: str) -> list[Detection]:
    """Fire/clear alert pairs of a replay, as windows."""
    from rldk_engine.live.rules import replay

    open_at: dict[tuple[str, str], tuple[int, str]] = {}
    found: list[Detection] = []
    last_step = int(run.steps[-1]) if run.n_steps else 0
    for alert in replay(run, preset):
        key = (alert.rule, alert.metric)
        step = int(alert.step) if alert.step is not None else last_step
        if alert.event == "fire":
            open_at.setdefault(key, (step, alert.severity))
        elif key in open_at:
            start, severity = open_at.pop(key)
            found.append(Detection(alert.rule, start, step, severity))
    found.extend(Detection(rule, start, last_step, sev) for (rule, _), (start, sev) in open_at.items())
    return sorted(found, key=lambda d: (d.start_step, d.rule))


def preset_rule_ids(preset: str) -> set[str]:
    from rldk_engine.live.rules import preset_rules

    return {rule.id for rule in preset_rules(preset)}


def judge_directory(items: list[tuple[str, str, int, Path]], modes=MODES) -> list[JudgedRun]:
    """items: (algo, scenario, seed, run folder). Reads each run and runs detectors."""
    from rldk_engine.errors import InputError
    from rldk_engine.ingest.readers import read_run

    judged = []
    for algo, scenario, seed, folder in items:
        jr = JudgedRun(algo, scenario, seed, str(folder), fx.read_labels(folder))
        try:
            run = read_run(folder / fx.LOG_NAME)
        except InputError as exc:
            jr.error = str(exc)
            judged.append(jr)
            continue
        if "offline" in modes:
            jr.detections["offline"] = offline_detections(run)
        if "streaming" in modes:
            jr.detections["streaming"] = streaming_detections(run, algo)
        judged.append(jr)
    return judged


def write_eval_set(root: Path, seeds: int, n_steps: int) -> list[tuple[str, str, int, Path]]:
    """Every PPO and GRPO scenario for seeds 0..seeds-1, plus the classic kl-spike run."""
    items: list[tuple[str, str, int, Path]] = []
    folder = root / fx.KL_SPIKE_RUN
    fx.write_run(fx.kl_spike_run(0), folder)
    items.append(("ppo", fx.KL_SPIKE_RUN, 0, folder))
    for algo in ("ppo", "grpo"):
        for seed in range(seeds):
            for scenario in fx.scenarios(algo):
                folder = root / algo / f"seed_{seed}" / scenario
                fx.write_run(fx.scenario_run(algo, scenario, seed, n_steps), folder)
                items.append((algo, scenario, seed, folder))
    return items


def judge_fixtures(seeds: int, n_steps: int, modes=MODES) -> list[JudgedRun]:
    with tempfile.TemporaryDirectory(prefix="rldk_eval_") as tmp:
        return judge_directory(write_eval_set(Path(tmp), seeds, n_steps), modes)


# ---------------------------------------------------------------- matching and scores


def overlaps(d: Detection, label: dict, tolerance: int) -> bool:
    """Same rule, windows within `tolerance` steps of each other."""
    return (d.rule == label["rule"]
            and d.start_step <= label["end_step"] + tolerance
            and d.end_step >= label["start_step"] - tolerance)


@dataclass
class RuleScore:
    labels: int = 0
    recalled: int = 0
    true_positives: int = 0
    false_positives: int = 0
    leads: list[int] = field(default_factory=list)
    delays: list[int] = field(default_factory=list)
    false_positive_examples: list[str] = field(default_factory=list)
    missed_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        detections = self.true_positives + self.false_positives
        return {
            "labels": self.labels,
            "recalled": self.recalled,
            "recall": _ratio(self.recalled, self.labels),
            "detections": detections,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "precision": _ratio(self.true_positives, detections),
            "median_lead_steps": _median(self.leads),
            "median_delay_steps": _median(self.delays),
            "missed": self.missed_examples[:5],
            "false_positive_examples": self.false_positive_examples[:5],
        }


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def score_mode(judged: list[JudgedRun], mode: str, tolerance: int = TOLERANCE,
               covered: dict[str, set[str]] | None = None) -> dict:
    """Per-rule and overall precision/recall for one mode. `covered` (algo -> rule ids)
    limits recall to the rules a streaming preset actually has."""
    per_rule: dict[str, RuleScore] = {}
    clean_findings = 0
    uncovered_labels = 0
    for jr in judged:
        if jr.error or mode not in jr.detections:
            continue
        where = f"{jr.algo}/{jr.scenario}/seed_{jr.seed}"
        findings = [d for d in jr.detections[mode] if d.is_finding]
        primary = [lab for lab in jr.labels if not lab.get("secondary")]
        secondary = [lab for lab in jr.labels if lab.get("secondary")]
        for lab in primary:
            if covered is not None and lab["rule"] not in covered[jr.algo]:
                uncovered_labels += 1
                continue
            score = per_rule.setdefault(lab["rule"], RuleScore())
            score.labels += 1
            hits = [d for d in findings if overlaps(d, lab, tolerance)]
            if hits:
                first = min(hits, key=lambda d: d.start_step)
                score.recalled += 1
                score.leads.append(lab["end_step"] - first.start_step)
                score.delays.append(first.start_step - lab["start_step"])
            else:
                score.missed_examples.append(f"{where} [{lab['start_step']}-{lab['end_step']}]")
        for d in findings:
            score = per_rule.setdefault(d.rule, RuleScore())
            if any(overlaps(d, lab, tolerance) for lab in primary):
                score.true_positives += 1
            elif any(overlaps(d, lab, tolerance) for lab in secondary):
                continue
            else:
                score.false_positives += 1
                score.false_positive_examples.append(
                    f"{where} {d.severity} [{d.start_step}-{d.end_step}]")
                clean_findings += jr.scenario == "clean"
    totals = RuleScore()
    for score in per_rule.values():
        totals.labels += score.labels
        totals.recalled += score.recalled
        totals.true_positives += score.true_positives
        totals.false_positives += score.false_positives
        totals.leads += score.leads
        totals.delays += score.delays
    overall = totals.as_dict()
    for key in ("missed", "false_positive_examples"):
        overall.pop(key)
    overall["clean_run_findings"] = clean_findings
    overall["clean_runs"] = len({(j.algo, j.seed) for j in judged if j.scenario == "clean"})
    if covered is not None:
        overall["labels_not_covered_by_preset"] = uncovered_labels
    return {"overall": overall, "per_rule": {r: per_rule[r].as_dict() for r in sorted(per_rule)}}


TARGETS = {"recall": 0.95, "precision": 0.9, "clean_run_findings": 0}


def evaluate(seeds: int = 5, n_steps: int = 1000, tolerance: int = TOLERANCE) -> dict:
    judged = judge_fixtures(seeds, n_steps)
    covered = {algo: preset_rule_ids(algo) for algo in ("ppo", "grpo")}
    offline = score_mode(judged, "offline", tolerance)
    streaming = score_mode(judged, "streaming", tolerance, covered)
    o = offline["overall"]
    meets = (
        (o["recall"] or 0) >= TARGETS["recall"]
        and (o["precision"] or 0) >= TARGETS["precision"]
        and o["clean_run_findings"] == TARGETS["clean_run_findings"]
    )
    return {
        "seeds": seeds,
        "n_steps": n_steps,
        "tolerance_steps": tolerance,
        "runs": len(judged),
        "read_errors": [j.error for j in judged if j.error],
        "targets": TARGETS,
        "offline_meets_targets": meets,
        "offline": offline,
        "streaming": streaming,
        "streaming_preset_rules": {a: sorted(r) for a, r in covered.items()},
    }


# ---------------------------------------------------------------- the matrix


def matrix_rows(judged: list[JudgedRun], mode: str) -> list[dict]:
    """One row per (algo, scenario, rule): in how many seeds the rule fired."""
    groups: dict[tuple[str, str], list[JudgedRun]] = {}
    for jr in judged:
        if not jr.error and mode in jr.detections:
            groups.setdefault((jr.algo, jr.scenario), []).append(jr)
    rows = []
    for (algo, scenario), runs in groups.items():
        for rule in RULE_IDS:
            warn = sum(any(d.rule == rule and d.is_finding for d in r.detections[mode]) for r in runs)
            anyl = sum(any(d.rule == rule for d in r.detections[mode]) for r in runs)
            expected = any(lab["rule"] == rule and not lab.get("secondary")
                           for r in runs for lab in r.labels)
            rows.append({"mode": mode, "algo": algo, "scenario": scenario, "rule": rule,
                         "runs": len(runs), "warning_plus": warn, "any_severity": anyl,
                         "expected": expected})
    return rows


def build_matrix(seeds: int = 1, n_steps: int = 1000) -> list[dict]:
    judged = judge_fixtures(seeds, n_steps)
    return [row for mode in MODES for row in matrix_rows(judged, mode)]


def write_matrix(rows: list[dict], out: Path) -> tuple[Path, Path]:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "detector_matrix.csv", out / "detector_matrix.md"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["mode"])
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(matrix_markdown(rows), encoding="utf-8")
    return csv_path, md_path


def _cell(row: dict) -> str:
    if row["warning_plus"]:
        text = f"{row['warning_plus']}/{row['runs']}"
    elif row["any_severity"]:
        text = f"i{row['any_severity']}"
    else:
        text = ""
    if row["expected"]:
        text = f"**{text or '-'}**"
    return text


def matrix_markdown(rows: list[dict]) -> str:
    lines = [
        "# Detector matrix",
        "",
        "Cell `k/N`: the rule fired at warning or critical in k of N seeds; `iK`: only at",
        "info, in K seeds; bold: the rule the scenario was doctored for (`-` = missed).",
        "",
    ]
    for mode in MODES:
        for algo in ("ppo", "grpo"):
            sub = [r for r in rows if r["mode"] == mode and r["algo"] == algo]
            if not sub:
                continue
            scen = list(dict.fromkeys(r["scenario"] for r in sub))
            rules = [rule for rule in RULE_IDS if any(r["rule"] == rule for r in sub)]
            lines += [f"## {mode}, {algo.upper()}", ""]
            lines.append("| scenario | " + " | ".join(rules) + " |")
            lines.append("|---" * (len(rules) + 1) + "|")
            cells = {(r["scenario"], r["rule"]): _cell(r) for r in sub}
            for s in scen:
                lines.append(f"| {s} | " + " | ".join(cells[(s, rule)] for rule in rules) + " |")
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- the quality report


def write_quality(result: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "detector_quality.json", out / "detector_quality.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(quality_markdown(result), encoding="utf-8")
    return json_path, md_path


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def quality_markdown(result: dict) -> str:
    lines = [
        "# Detector quality",
        "",
        f"{result['runs']} fixture runs (PPO and GRPO, {result['seeds']} seeds, "
        f"{result['n_steps']} steps each, plus `{fx.KL_SPIKE_RUN}`).",
        "",
        "Matching: a warning/critical detection matches a labelled fault when the rule id is",
        f"the same and its window overlaps the label window widened by {result['tolerance_steps']}",
        "steps. Unmatched warning+ detections (any on a clean run) are false positives;",
        "detections of a fault's secondary symptoms are ignored. Lead = label end - first",
        "matching detection step; delay = detection step - label start.",
        "",
        f"Targets (offline): recall >= {TARGETS['recall']}, precision >= {TARGETS['precision']}, "
        "no warning/critical on clean runs. "
        f"Met: **{'yes' if result['offline_meets_targets'] else 'no'}**.",
        "",
    ]
    for mode in MODES:
        block = result[mode]
        o = block["overall"]
        lines += [
            f"## {mode}",
            "",
            f"Overall: recall {_fmt(o['recall'])} ({o['recalled']}/{o['labels']}), precision "
            f"{_fmt(o['precision'])} ({o['true_positives']}/{o['detections']}), "
            f"warning+ on clean runs: {o['clean_run_findings']}, median lead "
            f"{_fmt(o['median_lead_steps'])} steps, median delay {_fmt(o['median_delay_steps'])}.",
        ]
        if mode == "streaming":
            lines.append(f"Labels of rules the presets do not have (not scored): "
                         f"{o.get('labels_not_covered_by_preset', 0)}.")
        lines += [
            "",
            "| rule | labels | recall | detections | precision | FP | median lead | median delay |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for rule, s in block["per_rule"].items():
            lines.append(
                f"| {rule} | {s['labels']} | {_fmt(s['recall'])} | {s['detections']} | "
                f"{_fmt(s['precision'])} | {s['false_positives']} | {_fmt(s['median_lead_steps'])} | "
                f"{_fmt(s['median_delay_steps'])} |")
        problems = [(r, s) for r, s in block["per_rule"].items() if s["missed"] or s["false_positive_examples"]]
        if problems:
            lines += ["", "Misses and false positives (first few):", ""]
            for rule, s in problems:
                if s["missed"]:
                    lines.append(f"- {rule} missed: " + "; ".join(s["missed"]))
                if s["false_positive_examples"]:
                    lines.append(f"- {rule} false positives: " + "; ".join(s["false_positive_examples"]))
        lines.append("")
    return "\n".join(lines)
