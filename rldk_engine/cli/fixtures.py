"""`rldk-engine fixtures | doctor | matrix | eval-detectors`.

Imports stay light (typer only); the work modules are imported inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

REPORTS = Path("rldk_reports")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)  # errors stay one line


def fixtures_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the runs.")] = Path("test_artifacts"),
    grpo: Annotated[bool, typer.Option("--grpo", help="Write GRPO runs (seed_*/<scenario>/) instead of PPO.")] = False,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per scenario.")] = 5,
    steps: Annotated[int, typer.Option("--steps", min=50, help="Steps per run.")] = 1000,
    keys: Annotated[str, typer.Option("--keys", help="Metric keys: trl (TRL trainer names) or canonical.")] = "trl",
) -> None:
    """Write doctored runs with known faults (labels.json next to each log) and clean baselines."""
    from rldk_engine.devtools.fixtures import write_fixtures

    if keys not in ("trl", "canonical"):
        raise typer.BadParameter("--keys must be trl or canonical")
    written = write_fixtures(out, grpo=grpo, seeds=seeds, n_steps=steps, keys=keys)
    kind = "GRPO" if grpo else "PPO"
    _console().print(f"wrote {len(written)} {kind} runs ({steps} steps, {seeds} seeds) under {out}")


def doctor_command(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders to scan.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for ppo_scan.json and determinism_card.json.")] = REPORTS,
    preset: Annotated[str, typer.Option("--preset", help="auto | ppo | grpo")] = "auto",
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Runs scanned in parallel.")] = 1,
    checkpoints: Annotated[Optional[list[Path]], typer.Option(
        "--checkpoints", help="Trainer output folder with checkpoints, for the resume plan "
                              "(default: the folder of each log).")] = None,
) -> None:
    """Scan the logs and audit this environment; every finding comes with its fix."""
    raise typer.Exit(run_doctor_cli([str(p) for p in paths], out, preset, jobs, checkpoints))


def run_doctor_cli(paths: list[str], out: Path, preset: str, jobs: int,
                   checkpoints: list[Path] | None = None) -> int:
    """Shared by `rldk-engine doctor` and the `rldk` compatibility commands."""
    from rldk_engine.errors import InputError
    from rldk_engine.forensics.doctor import run_doctor

    if preset not in ("auto", "ppo", "grpo"):
        _console(stderr=True).print(f"error: --preset must be auto, ppo or grpo (got {preset!r})")
        return 2
    try:
        result = run_doctor(paths, out, preset, jobs, checkpoint_dirs=checkpoints)
    except (InputError, OSError, ValueError) as exc:
        _console(stderr=True).print(f"error: {exc}")
        return 2
    _print_doctor(result)
    return 0


def _print_doctor(result) -> None:
    from rich.table import Table

    console = _console()
    runs = Table(title="Scan", show_lines=False)
    for column in ("run", "steps", "warning+", "info", "overall", "stability"):
        runs.add_column(column)
    findings = Table(title="Findings and fixes", show_lines=True)
    for column in ("run", "rule", "steps", "severity", "fix"):
        findings.add_column(column, overflow="fold")
    for run in result.report.get("runs", []):
        anomalies = run.get("anomalies", [])
        serious = [a for a in anomalies if a["severity"] in ("warning", "critical")]
        health = run.get("health", {})
        runs.add_row(run["run_id"], str(run.get("n_steps", "")), str(len(serious)),
                     str(len(anomalies) - len(serious)),
                     _score(health.get('overall')), _score(health.get('stability')))
        for a in serious:
            findings.add_row(run["run_id"], a["rule"], f"{a['start_step']}-{a['end_step']}",
                             a["severity"], a["fix"])
    env_table = Table(title="Environment (determinism)", show_lines=True)
    for column in ("severity", "finding", "fix"):
        env_table.add_column(column, overflow="fold")
    for f in result.card["findings"]:
        env_table.add_row(f["severity"], f["finding"], f["fix"])
    console.print(runs)
    if findings.row_count:
        console.print(findings)
    console.print(env_table)
    for err in result.report.get("errors", []):
        console.print(f"[yellow]skipped[/]: {err}")
    from rich.text import Text

    from rldk_engine.resume import plan_text

    for entry in result.plans:  # what to resume from, for the runs that went wrong
        if entry["resume"].get("first_bad_step") is not None:
            console.print(Text(f"{entry['run_id']}: {plan_text(entry['resume'])}"))
    console.print(Text(f"wrote {result.scan_path}, {result.card_path} and {result.plan_path}"))


def matrix_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for detector_matrix.csv/.md.")] = REPORTS,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per scenario.")] = 1,
    steps: Annotated[int, typer.Option("--steps", min=50, help="Steps per fixture run.")] = 1000,
) -> None:
    """Which rules fire on which doctored scenario, offline and streaming, PPO and GRPO."""
    from rldk_engine.devtools.quality import build_matrix, write_matrix

    csv_path, md_path = write_matrix(build_matrix(seeds, steps), out)
    _console().print(f"wrote {csv_path} and {md_path}")


def eval_detectors_command(
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per scenario (>= 5 for the README figures).")] = 5,
    out: Annotated[Path, typer.Option("--out", help="Folder for detector_quality.md/.json.")] = REPORTS,
    steps: Annotated[int, typer.Option("--steps", min=50, help="Steps per fixture run.")] = 1000,
    tolerance: Annotated[Optional[int], typer.Option("--tolerance", min=0, help="Window slack in steps.")] = None,
    real: Annotated[Optional[Path], typer.Option("--real", help="Score a folder of labelled real logs (DIR/<run>/label.json) instead of the synthetic fixtures.")] = None,
) -> None:
    """Precision, recall and lead time per rule, offline detectors and streaming guardrails."""
    from rich.table import Table

    if real is not None:
        _eval_real(real, out)
        return

    from rldk_engine.devtools.quality import TOLERANCE, evaluate, write_quality

    result = evaluate(seeds, steps, TOLERANCE if tolerance is None else tolerance)
    json_path, md_path = write_quality(result, out)
    table = Table(title=f"Detector quality ({result['runs']} runs, {seeds} seeds)")
    for column in ("mode", "recall", "precision", "warning+ on clean", "median lead"):
        table.add_column(column)
    for mode in ("offline", "streaming"):
        o = result[mode]["overall"]
        table.add_row(mode, _num(o["recall"]), _num(o["precision"]),
                      str(o["clean_run_findings"]), _num(o["median_lead_steps"]))
    console = _console()
    console.print(table)
    verdict = "[green]met[/]" if result["offline_meets_targets"] else "[red]not met[/]"
    console.print(f"offline targets (recall >= 0.95, precision >= 0.9, clean = 0): {verdict}")
    console.print(f"wrote {md_path} and {json_path}")


def _eval_real(root: Path, out: Path) -> None:
    from rich.table import Table

    from rldk_engine.devtools.real_eval import evaluate_real, write_real

    console = _console()
    if not root.is_dir():
        console.print(f"rldk-engine eval-detectors: {root}: not a folder", markup=False)
        raise typer.Exit(2)
    result = evaluate_real(root)
    if not result["runs"]:
        console.print(f"rldk-engine eval-detectors: {root}: no run folder with a label.json", markup=False)
        raise typer.Exit(2)
    json_path, md_path = write_real(result, out)
    table = Table(title=f"Detector quality on real logs ({result['healthy_runs']} healthy, "
                        f"{result['failing_runs']} failing runs)")
    for column in ("mode", "recall", "precision", "warning+ on healthy", "median delay (steps)"):
        table.add_column(column)
    for mode in ("offline", "streaming"):
        o = result[mode]["overall"]
        table.add_row(mode, _num(o["recall"]), _num(o["precision"]),
                      str(o["healthy_run_findings"]), _num(o["median_delay_steps"]))
    console.print(table)
    per_rule = Table(title="offline, per rule")
    for column in ("rule", "failures", "recall", "precision", "on healthy", "median delay"):
        per_rule.add_column(column)
    for rule, s in result["offline"]["per_rule"].items():
        per_rule.add_row(rule, str(s["failures"]), _num(s["recall"]), _num(s["precision"]),
                         str(s["healthy_run_findings"]), _num(s["median_delay_steps"]))
    console.print(per_rule)
    for message in result["errors"]:
        console.print(message, markup=False)
    verdict = "[green]met[/]" if result["offline_meets_targets"] else "[red]not met[/]"
    console.print(f"offline targets (recall >= 0.9, nothing at warning+ on healthy runs): {verdict}")
    console.print(f"wrote {md_path} and {json_path}", markup=False)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def register(app: typer.Typer) -> None:
    app.command("fixtures")(fixtures_command)
    app.command("doctor")(doctor_command)
    app.command("matrix")(matrix_command)
    app.command("eval-detectors")(eval_detectors_command)


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
