"""`rldk-engine inspect PATH...`: what rldk reads from each log, as a Rich table.

`--stdin` (or `--lines FILE` for a captured stdout file) shows instead how each line is
read, one row per line: the line kind (metric row, table row, csv header, ignored, ...),
the step and the canonical keys found, so a user can see why nothing was recognised.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

_SHOW_CHARS = 90


def inspect_command(
    paths: Annotated[list[str] | None, typer.Argument(help="Log files or folders of runs.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force a format instead of detecting it.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read trainer output from stdin and show what each line is read as.")] = False,
    lines: Annotated[str | None, typer.Option("--lines", help="Show what each line of this captured stdout file is read as.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Lines to show with --stdin/--lines (the summary counts all).")] = 200,
) -> None:
    """Show format, steps, canonical metrics, unknown keys and skipped lines per run."""
    if stdin or lines is not None:
        _inspect_lines(lines, limit)
        return
    if not paths:
        from rich.console import Console

        Console(stderr=True).print("rldk-engine inspect: give log paths, --stdin, or --lines FILE", markup=False)
        raise typer.Exit(2)
    _inspect_runs(paths, fmt)


def _inspect_runs(paths: list[str], fmt: str | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rldk_engine.ingest.readers import FORMATS, load_runs

    console = Console()
    err = Console(stderr=True, soft_wrap=True)
    if fmt is not None and fmt not in FORMATS:
        err.print(f"rldk-engine: unknown format {fmt!r} (choose from {', '.join(FORMATS)})", markup=False)
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
            Text(_printable(run.run_id)),
            run.format,
            str(run.n_steps),
            f"{int(run.steps[0])}..{int(run.steps[-1])}",
            " ".join(run.canonical_metrics) or "-",
            str(len(run.unknown_keys)),
            str(run.n_skipped),
        )
    if runs:
        console.print(table)
    for run in runs:
        if not run.canonical_metrics:
            err.print(f"{_printable(run.source)}: no canonical metric recognised "
                      f"(keys: {_printable(', '.join(run.unknown_keys[:8]))})", markup=False)
        for message in run.errors[:3]:
            err.print(_printable(f"{run.source}: {message}"), markup=False)
    for message in errors:
        err.print(_printable(message), markup=False)
    if not runs:
        raise typer.Exit(2)


def _inspect_lines(path: str | None, limit: int) -> None:
    """Per line: what the live parser makes of it (the monitor uses the same parser)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rldk_engine.ingest.metrics import is_canonical
    from rldk_engine.ingest.parse import LineParser

    console = Console()
    err = Console(stderr=True, soft_wrap=True)
    if path is not None:
        from rldk_engine.errors import InputError
        from rldk_engine.ingest.readers import refuse_special

        try:
            refuse_special(path)
            source = open(path, "rb")
        except InputError as exc:
            err.print(str(exc), markup=False)
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(f"{_printable(path)}: {exc.strerror or exc}", markup=False)
            raise typer.Exit(2) from None
    else:
        source = sys.stdin.buffer  # type: ignore[assignment]
    parser = LineParser()
    table = Table(title="rldk inspect: how each line is read")
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("read as", no_wrap=True)
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("canonical keys", overflow="fold", min_width=24)
    table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=_SHOW_CHARS)
    kinds: dict[str, int] = {}
    canonical: set[str] = set()
    shown = 0
    with source:
        for number, raw in enumerate(_bounded_lines(source), 1):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            records = parser.feed_all(line)
            kind = parser.last_kind
            kinds[kind] = kinds.get(kind, 0) + 1
            keys = sorted({k for r in records for k in r.metrics})
            canonical.update(k for k in keys if is_canonical(k))
            if shown < limit:
                shown += 1
                table.add_row(
                    str(number),
                    kind,
                    ",".join(str(r.step) for r in records) or "",
                    Text(" ".join(k if is_canonical(k) else f"({_printable(k)})" for k in keys)),
                    Text(_printable(line[:_SHOW_CHARS * 2])),
                )
    last = parser.finish()
    if last is not None:
        canonical.update(k for k in last.metrics if is_canonical(k))
    console.print(table)
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]))
    console.print(Text(f"{parser.n_lines} lines: {summary or 'none'}; {parser.n_records} records; "
                       f"canonical metrics: {' '.join(sorted(canonical)) or 'none'}"))
    if not canonical:
        err.print(
            "rldk: no canonical metric recognised. rldk reads JSON/Python-dict lines, `key=value` "
            "lines, verl `step:N - k:v` lines, SB3 tables, CSV with a header line, and the console "
            "summaries of RLlib, Sample Factory, rl_games and Tianshou; keys in parentheses above "
            "are kept under their own names.", markup=False)
        raise typer.Exit(2)


def _bounded_lines(source, cap: int = 1 << 20):
    """Lines of at most `cap` bytes; the rest of a longer line is read and dropped."""
    while line := source.readline(cap):
        if len(line) == cap and not line.endswith(b"\n"):
            while (rest := source.readline(cap)) and not rest.endswith(b"\n"):
                pass
        yield line


def _printable(text: str) -> str:
    """Control characters escaped so a hostile name cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
