"""`rldk-engine determinism` (and `rldk check-determinism`, same flags).

Imports stay light here (no numpy/matplotlib/torch): the engine module is loaded only
when the command actually runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from rldk_engine.cli.text import safe

DEFAULT_OUTPUT_DIR = Path("rldk_reports")


class _PlainProgress:
    """Non-TTY progress: one line per replica when it starts and when it ends."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.reported: dict[int, str] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def tick(self, progress) -> None:
        for i, p in enumerate(progress):
            if p.state == self.reported.get(i) or p.state == "waiting":
                continue
            self.reported[i] = p.state
            if p.state == "running":
                line = f"replica {i}: running"
            else:
                took = (p.ended or time.monotonic()) - (p.started or time.monotonic())
                line = f"replica {i}: {p.state}, {p.steps} steps, exit {p.exit_code}, {took:.1f} s"
            print(line, file=self.stream, flush=True)


class _LiveProgress:
    """TTY progress: a rich Live table, one row per replica with the steps seen so far."""

    def __init__(self, stream) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream)
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.started = time.monotonic()

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def tick(self, progress) -> None:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for column in ("replica", "state", "steps", "exit"):
            table.add_column(column)
        colour = {"running": "cyan", "done": "green", "failed": "red", "waiting": "dim"}
        for i, p in enumerate(progress):
            table.add_row(
                str(i), f"[{colour[p.state]}]{p.state}[/]", str(p.steps),
                "" if p.exit_code is None else str(p.exit_code),
            )
        table.caption = f"{time.monotonic() - self.started:.1f} s"
        self.live.update(table)


def _progress_display(enabled: bool):
    stream = sys.stderr
    if not enabled:
        return None
    if stream.isatty():
        return _LiveProgress(stream)
    return _PlainProgress(stream)


def _split_compare(compare: str | None) -> list[str]:
    return [name.strip() for name in (compare or "").split(",") if name.strip()]


def run_determinism_cli(
    cmd: str | None = None,
    compare: str | None = None,
    replicas: int = 4,
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    tolerance: float = 1e-6,
    rtol: float = 0.0,
    parallel: int | None = None,
    metrics_file: str | None = None,
    runs: list[Path] | None = None,
    progress: bool = True,
) -> int:
    """Run the check, print a one-line verdict and the card path; return the exit code
    (0 passed, 1 not passed, 2 could not run, with the reason on one line)."""
    from rldk_engine.determinism import DeterminismError, check_command, check_runs, summary_line

    names = _split_compare(compare)
    try:
        if runs and cmd:
            raise DeterminismError("give either --cmd or --runs, not both")
        if runs:
            result = check_runs(
                runs, compare=names, out_dir=output_dir, atol=tolerance, rtol=rtol
            )
        elif cmd:
            display = _progress_display(progress)
            if display is None:
                result = check_command(
                    cmd, compare=names, replicas=replicas, out_dir=output_dir, atol=tolerance,
                    rtol=rtol, parallel=parallel, metrics_file=metrics_file,
                )
            else:
                with display:
                    result = check_command(
                        cmd, compare=names, replicas=replicas, out_dir=output_dir,
                        atol=tolerance, rtol=rtol, parallel=parallel,
                        metrics_file=metrics_file, on_tick=display.tick,
                    )
        else:
            raise DeterminismError("nothing to check: give --cmd \"...\" or --runs LOG LOG ...")
    except DeterminismError as exc:
        print(f"rldk determinism: {safe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rldk determinism: interrupted; replicas stopped", file=sys.stderr)
        return 130
    line = summary_line(result)
    print(safe(line), file=sys.stderr if result.reason else sys.stdout)
    for rec in result.card["recommendations"]:  # may quote a replica's stderr
        print(f"  - {safe(rec)}")
    if result.card_path is not None:
        print(f"card: {safe(result.card_path)}")
    if result.figure_path is not None:
        print(f"figure: {safe(result.figure_path)}")
    return result.exit_code


def determinism_command(
    cmd: Annotated[str | None, typer.Option(
        "--cmd", help="Command to replicate, split like a shell would (no shell is used)."
    )] = None,
    compare: Annotated[str | None, typer.Option(
        "--compare",
        help="Comma-separated metrics, any alias (kl matches objective/kl). "
        "Default: every metric all replicas log.",
    )] = None,
    replicas: Annotated[int, typer.Option("--replicas", "-n", help="How many replicas to run.")] = 4,
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", "-o", help="Card, figure and replica_i/ working folders go here."
    )] = DEFAULT_OUTPUT_DIR,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", help="Absolute tolerance per step x metric cell."
    )] = 1e-6,
    rtol: Annotated[float, typer.Option(
        "--rtol", help="Relative tolerance (times the largest |value| of the cell)."
    )] = 0.0,
    parallel: Annotated[int | None, typer.Option(
        "--parallel", help="At most this many replicas at once (default: all)."
    )] = None,
    metrics_file: Annotated[str | None, typer.Option(
        "--metrics-file",
        help="Read each replica's metrics from this file (glob, relative to its working "
        "folder; {replica} is replaced by its index) instead of stdout.",
    )] = None,
    runs: Annotated[list[Path] | None, typer.Option(
        "--runs", help="Compare existing logs instead of running: --runs a.jsonl b.jsonl"
    )] = None,
    more_runs: Annotated[list[Path] | None, typer.Argument(
        metavar="[LOG]...", help="More logs for --runs.", show_default=False
    )] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Run replicas of a command side by side and report where their metrics diverge."""
    all_runs = list(runs or []) + list(more_runs or [])
    code = run_determinism_cli(
        cmd=cmd, compare=compare, replicas=replicas, output_dir=output_dir,
        tolerance=tolerance, rtol=rtol, parallel=parallel, metrics_file=metrics_file,
        runs=all_runs or None, progress=not quiet,
    )
    raise typer.Exit(code)
