"""`rldk-engine scan PATH...`: offline forensics over finished logs (SPEC "Scan report")."""

from __future__ import annotations

from typing import Annotated

import typer

FAIL_LEVELS = ("warning", "critical")
PROGRESS_MIN_FILES = 8


def scan_command(
    paths: Annotated[list[str], typer.Argument(help="Log files or folders of runs.")],
    out: Annotated[str | None, typer.Option("--out", help="Write the JSON report here.")] = None,
    preset: Annotated[str, typer.Option("--preset", help="auto, ppo or grpo.")] = "auto",
    fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 1 if this level (warning|critical) is found.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Runs scanned in parallel processes.")] = 1,
    plot: Annotated[str | None, typer.Option("--plot", help="Write one PNG per anomaly into DIR.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force a format instead of detecting it.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="process (default) or ray (extra 'ray').")] = "process",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster; default: a local Ray with --jobs CPUs.")] = None,
) -> None:
    """Find anomalies (windows with evidence) in finished runs and score their health."""
    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)

    from rldk_engine.cli.text import print_error

    def usage(message: str) -> None:
        print_error(err, f"rldk-engine scan: {message}")
        raise typer.Exit(2)

    from rldk_engine.forensics.backends import BACKENDS, PRESETS
    from rldk_engine.ingest.readers import FORMATS

    if preset not in PRESETS:
        usage(f"unknown preset {preset!r} (use {', '.join(PRESETS)})")
    if fail_on is not None and fail_on not in FAIL_LEVELS:
        usage(f"unknown --fail-on level {fail_on!r} (use warning or critical)")
    if fmt is not None and fmt not in FORMATS:
        usage(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if jobs < 1:
        usage("--jobs must be >= 1")
    if backend not in BACKENDS:
        usage(f"unknown --backend {backend!r} (use {', '.join(BACKENDS)})")

    from rldk_engine.integrations.ray_scan import RayUnavailable

    try:
        report = _run_scan(paths, preset, jobs, fmt, err, backend, ray_address)
    except RayUnavailable as exc:
        usage(str(exc))
    from rldk_engine.forensics.scan import scored_runs

    if scored_runs(report):
        for message in report["errors"]:
            print_error(err, message)
    else:  # nothing readable, or nothing with a metric to judge
        first = report["errors"][0] if report["errors"] else f"{paths[0]}: nothing readable"
        if out and report["runs"]:
            _write_report(report, out, usage)
        usage(f"nothing readable ({first})" if not report["runs"] else first)

    Console().print(_summary_table(report))
    if out:
        _write_report(report, out, usage)
    if plot:
        _write_plots(report, plot, fmt)
    if fail_on is not None and _found_level(report, fail_on):
        raise typer.Exit(1)


def _run_scan(paths, preset, jobs, fmt, err, backend="process", ray_address=None) -> dict:
    from rldk_engine.forensics.scan import scan_paths
    from rldk_engine.ingest.readers import discover_sources

    where = {"backend": backend, "ray_address": ray_address}
    sources, _ = discover_sources(paths)
    if len(sources) < PROGRESS_MIN_FILES:
        return scan_paths(paths, preset=preset, jobs=jobs, fmt=fmt, **where)
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("scanning", total=len(sources))
        return scan_paths(paths, preset=preset, jobs=jobs, fmt=fmt, **where,
                          progress=lambda done, total: bar.update(task, completed=done))


def _summary_table(report: dict):
    from rich.table import Table

    from rldk_engine.cli.text import plain

    table = Table(title="rldk scan")
    longest = max((len(str(run["run_id"])) for run in report["runs"]), default=12)
    table.add_column("run", overflow="fold", min_width=min(max(longest, 12), 48), ratio=2)
    table.add_column("format", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("health", justify="right")
    for level, style in (("crit", "red"), ("warn", "yellow"), ("info", "dim")):
        table.add_column(level, justify="right", style=style)
    table.add_column("findings", overflow="fold", ratio=2)
    for run in report["runs"]:
        counts = {"info": 0, "warning": 0, "critical": 0}
        for a in run["anomalies"]:
            counts[a["severity"]] += 1
        serious = sorted({a["rule"] for a in run["anomalies"] if a["severity"] != "info"})
        h = run["health"]
        table.add_row(plain(run["run_id"]), plain(run["format"]), str(run["n_steps"]),
                      "n/a" if h["overall"] is None else f"{h['overall']:.2f}",
                      str(counts["critical"]), str(counts["warning"]),
                      str(counts["info"]), plain(", ".join(serious) or "-"))
    return table


def _write_report(report: dict, out: str, usage) -> None:
    import os

    import orjson

    try:
        folder = os.path.dirname(os.path.abspath(out))
        os.makedirs(folder, exist_ok=True)
        with open(out, "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    except OSError as exc:
        from rldk_engine.errors import describe_os_error

        usage(f"{out}: cannot write report: {describe_os_error(exc)}")


def _write_plots(report: dict, out_dir: str, fmt) -> None:
    from rldk_engine.ingest.readers import read_run
    from rldk_engine.plots.forensics import plot_report_anomalies

    runs = {}
    for entry in report["runs"]:
        if entry["anomalies"]:
            runs[entry["source"]] = read_run(entry["source"], fmt=fmt)
    plot_report_anomalies(runs, report, out_dir)


def _found_level(report: dict, level: str) -> bool:
    wanted = FAIL_LEVELS.index(level)
    return any(
        a["severity"] in FAIL_LEVELS and FAIL_LEVELS.index(a["severity"]) >= wanted
        for run in report["runs"]
        for a in run["anomalies"]
    )
