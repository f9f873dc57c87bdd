"""`rldk-engine analyze PATH --out DIR`: comprehensive per-component analysis of one run.

Also `rldk forensics comprehensive PATH` (compat). Writes DIR/comprehensive_analysis.json,
DIR/metrics.csv, DIR/health_timeline.csv and DIR/summary.csv (columns: rldk_engine.forensics.analyze).
"""

from __future__ import annotations

from typing import Annotated

import typer

PRESETS = ("auto", "ppo", "grpo")


def analyze_command(
    path: Annotated[str, typer.Argument(help="One run: a log file or a run folder.")],
    out: Annotated[str, typer.Option("--out", help="Folder for the JSON and the CSVs.")] = "rldk_reports/analysis",
    kl_target: Annotated[float | None, typer.Option("--kl-target", help="KL target (nats); inferred if omitted.")] = None,
    preset: Annotated[str, typer.Option("--preset", help="auto, ppo or grpo.")] = "auto",
    fmt: Annotated[str | None, typer.Option("--format", help="Force a format instead of detecting it.")] = None,
) -> None:
    """Health per component (KL, gradients, advantages, reward, length) with evidence and CSVs."""
    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)

    from rldk_engine.cli.text import print_error

    def usage(message: str) -> None:
        print_error(err, f"rldk-engine analyze: {message}")
        raise typer.Exit(2)

    if preset not in PRESETS:
        usage(f"unknown preset {preset!r} (use {', '.join(PRESETS)})")
    if kl_target is not None and not kl_target > 0:
        usage(f"--kl-target must be a positive number, not {kl_target}")

    from rldk_engine.errors import InputError, describe_os_error
    from rldk_engine.ingest.readers import read_run

    try:
        run = read_run(path, fmt=fmt)
    except InputError as exc:
        usage(str(exc))
    if run.n_steps == 0:
        usage(f"{path}: no metric rows found")
    for message in run.errors[:5]:
        print_error(err, message)

    from rldk_engine.forensics.analyze import ANALYSIS_JSON, write_analysis

    try:
        analysis = write_analysis(run, out, kl_target=kl_target, preset=preset)
    except OSError as exc:
        usage(f"{out}: cannot write analysis: {describe_os_error(exc)}")
    Console().print(analysis_table(analysis))
    print_error(err, f"wrote {out}/{ANALYSIS_JSON}, metrics.csv, health_timeline.csv, summary.csv")


def _bar(value: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, value)) * width))
    return "█" * filled + "·" * (width - filled)


def _style(value: float) -> str:
    return "green" if value >= 0.9 else "yellow" if value >= 0.6 else "red"


def analysis_table(analysis: dict, title: str | None = None):
    """Rich table: one row per component with its health bar and weakest check."""
    from rich.table import Table

    from rldk_engine.cli.text import plain
    from rldk_engine.forensics.analyze import COMPONENTS

    run = analysis["run"]
    table = Table(title=plain(
        title or f"rldk analyze: {run['run_id']} ({run['algorithm']}, {run['n_steps']} steps)"))
    table.add_column("component")
    table.add_column("health", justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("weakest check", overflow="fold")
    table.add_column("anomalies", justify="right")
    for name in COMPONENTS:
        sec = analysis["components"][name]
        if not sec["available"]:
            table.add_row(name, "-", "", "not logged", "")
            continue
        h = sec["health"]
        weakest = min(sec["scores"].items(), key=lambda kv: kv[1], default=None)
        check = plain(f"{weakest[0]} {weakest[1]:.2f}" if weakest and weakest[1] < 1 else "-")
        table.add_row(name, plain(f"{h:.2f}", _style(h)), plain(_bar(h), _style(h)), check,
                      str(len(sec["anomalies"])))
    cs = analysis["component_score"]
    table.add_section()
    if cs is not None:
        table.add_row("components", f"{cs:.2f}", _bar(cs), "0.5 min + 0.5 mean", "")
    table.add_row("overall (scan)", f"{analysis['overall']:.2f}", _bar(analysis["overall"]), "",
                  str(analysis["n_anomalies"]))
    table.add_row("stability (scan)", f"{analysis['stability']:.2f}", _bar(analysis["stability"]), "", "")
    return table
