"""`rldk-engine inspect PATH...`: what rldk reads from each log, as a Rich table."""

from __future__ import annotations

from typing import Annotated

import typer


def inspect_command(
    paths: Annotated[list[str], typer.Argument(help="Log files or folders of runs.")],
    fmt: Annotated[str | None, typer.Option("--format", help="Force a format instead of detecting it.")] = None,
) -> None:
    """Show format, steps, canonical metrics, unknown keys and skipped lines per run."""
    from rich.console import Console
    from rich.table import Table

    from rldk_engine.cli.text import plain, print_error
    from rldk_engine.ingest.readers import FORMATS, load_runs

    console = Console()
    err = Console(stderr=True, soft_wrap=True)
    if fmt is not None and fmt not in FORMATS:
        print_error(err, f"rldk-engine: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        raise typer.Exit(2)
    runs, errors = load_runs(paths, fmt=fmt)
    table = Table(title="rldk inspect")
    table.add_column("run", overflow="fold", max_width=40)
    table.add_column("format", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("first..last", no_wrap=True)
    table.add_column("canonical metrics", overflow="fold", ratio=3)
    table.add_column("unknown", justify="right", no_wrap=True)
    table.add_column("skipped", justify="right", no_wrap=True)
    for run in runs:
        table.add_row(
            plain(run.run_id),
            plain(run.format),
            str(run.n_steps),
            f"{int(run.steps[0])}..{int(run.steps[-1])}",
            plain(" ".join(run.canonical_metrics) or "-"),
            str(len(run.unknown_keys)),
            str(run.n_skipped),
        )
    if runs:
        console.print(table)
    for run in runs:
        for message in run.errors[:3]:
            print_error(err, f"{run.source}: {message}")
    for message in errors:
        print_error(err, message)
    if not runs:
        raise typer.Exit(2)
