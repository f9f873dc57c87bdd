"""The check end to end: run (or read) the replicas, compare, write the card and figure.

`check_command` runs replicas of a command; `check_runs` compares logs that already
exist. Both return a `DeterminismResult` (exit code 0 passed, 1 not passed, 2 could not
run) and raise `DeterminismError` only for bad usage before anything runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rldk_engine.determinism.base import DeterminismError
from rldk_engine.determinism.replicas import (
    ReplicaOutcome,
    ReplicaProgress,
    resolve_command,
    run_replicas,
)

if TYPE_CHECKING:
    from rldk_engine.determinism.compare import MetricComparison

# The comparison, card and figure modules (numpy, matplotlib) are imported inside the
# functions below, in `_Prepared`'s thread while the replicas already run: the replicas
# start as soon as the command line is parsed.


@dataclass
class DeterminismResult:
    card: dict
    exit_code: int
    card_path: Path | None
    figure_path: Path | None
    reason: str | None  # one-line reason when exit_code == 2


def summary_line(result: DeterminismResult) -> str:
    from rldk_engine.determinism.card import card_summary

    return card_summary(result.card, result.reason)


def evaluate(
    outcomes: list[ReplicaOutcome],
    compare: Sequence[str],
    atol: float,
    rtol: float,
    argv: Sequence[str] | None,
) -> tuple[list[str], list[MetricComparison]]:
    """Check the outcomes can be compared (raises DeterminismError) and compare them."""
    from rldk_engine.determinism.compare import compare_metric, resolve_compare

    with_metrics = [o for o in outcomes if o.has_metrics]
    if argv is not None and outcomes and all(o.exit_code != 0 for o in outcomes):
        first = outcomes[0]
        why = first.error or (first.stderr_tail[-1] if first.stderr_tail else "no stderr")
        codes = ", ".join(str(o.exit_code) for o in outcomes)
        raise DeterminismError(f"every replica crashed (exit codes {codes}); replica 0: {why}")
    if not with_metrics:
        errors = [o.error for o in outcomes if o.error]
        detail = f" ({errors[0]})" if errors else ""
        raise DeterminismError(f"no metrics found in any replica's output{detail}")
    runs = [o.run for o in with_metrics]
    names = resolve_compare(compare, runs)
    ids = [o.index for o in with_metrics]
    return names, [compare_metric(name, runs, ids, atol, rtol) for name in names]


def finish(
    outcomes: list[ReplicaOutcome],
    compare: Sequence[str],
    atol: float,
    rtol: float,
    out_dir: Path,
    argv: Sequence[str] | None,
    started: float,
    prepared: _Prepared | None = None,
) -> DeterminismResult:
    """Compare, then draw the figure in a thread while the environment audit (started
    with the replicas) is collected and the card built; a figure problem is noted in the
    card and never loses it."""
    from rldk_engine.determinism.card import FIGURE_NAME, build_card, write_card

    prepared = prepared or _Prepared(make_figure=False)
    prepared.figure_ready()  # numpy and the comparison modules are imported by then
    try:
        names, comparisons = evaluate(outcomes, compare, atol, rtol, argv)
    except DeterminismError as exc:
        card = build_card(
            outcomes=outcomes, compare=list(compare), atol=atol, rtol=rtol,
            env=prepared.env(), wall_time_s=time.monotonic() - started, argv=argv,
            error=str(exc),
        )
        return DeterminismResult(card, 2, write_card(card, out_dir), None, str(exc))
    drawing = _FigureThread(comparisons, atol, out_dir / FIGURE_NAME) if prepared.make_figure else None
    card = build_card(
        outcomes=outcomes, comparisons=comparisons, compare=names, atol=atol, rtol=rtol,
        env=prepared.env(), wall_time_s=time.monotonic() - started, argv=argv,
    )
    figure = None
    if drawing is not None:
        figure, error = drawing.result()
        if error is not None:
            card["figure_error"] = f"{FIGURE_NAME}: {error}"
    card["figure"] = str(figure) if figure else None
    card_path = write_card(card, out_dir)
    return DeterminismResult(card, 0 if card["passed"] else 1, card_path, figure, None)


class _FigureThread:
    """The mismatch figure, drawn beside the card (matplotlib's Figure API, no pyplot
    state: safe off the main thread)."""

    def __init__(self, comparisons: Sequence[MetricComparison], atol: float, path: Path) -> None:
        self._spreads = {c.metric: (c.steps, c.spread) for c in comparisons}
        self._atol, self._path = atol, path
        self._figure: Path | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._draw, name="rldk-figure", daemon=True)
        self._thread.start()

    def _draw(self) -> None:
        from rldk_engine.plots.determinism import plot_determinism_mismatch

        try:
            self._figure = plot_determinism_mismatch(self._spreads, self._atol, self._path)
        except Exception as exc:  # a figure problem must not lose the card
            self._error = str(exc) or type(exc).__name__

    def result(self) -> tuple[Path | None, str | None]:
        self._thread.join()
        return self._figure, self._error


class _Prepared:
    """Work that does not depend on the replicas, done while they run so the card comes
    right after the last replica: the environment audit (in a child interpreter: it may
    import torch, 1-2 s of CPU), and in a thread the numpy import and a matplotlib warm-up
    for the figure (Agg backend, no display)."""

    def __init__(self, make_figure: bool, env: dict | None = None) -> None:
        from rldk_engine.determinism.evidence import BackgroundAudit

        self.make_figure = make_figure
        self._env: dict | None = env
        self._audit = BackgroundAudit() if env is None else None
        self._figure_ready = threading.Event()
        self._thread = threading.Thread(target=self._work, name="rldk-prepare", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        import rldk_engine.determinism.card  # noqa: F401  (numpy, the comparison)

        if self.make_figure:
            try:
                from rldk_engine.plots.determinism import warm_up

                warm_up()
            except Exception:  # the figure step reports its own failure later
                pass
        self._figure_ready.set()

    def figure_ready(self) -> None:
        self._figure_ready.wait()

    def env(self) -> dict:
        if self._env is None:
            assert self._audit is not None
            self._env = self._audit.result()
        return self._env


def check_command(
    cmd: str | Sequence[str],
    *,
    compare: Sequence[str] = (),
    replicas: int = 4,
    out_dir: Path,
    atol: float = 1e-6,
    rtol: float = 0.0,
    parallel: int | None = None,
    metrics_file: str | None = None,
    on_tick: Callable[[list[ReplicaProgress]], None] | None = None,
    make_figure: bool = True,
) -> DeterminismResult:
    """Run `cmd` as `replicas` replicas and write the card."""
    if replicas < 2:
        raise DeterminismError(f"--replicas must be at least 2 (got {replicas})")
    if parallel is not None and parallel < 1:
        raise DeterminismError(f"--parallel must be at least 1 (got {parallel})")
    _check_tolerances(atol, rtol)
    out_dir = Path(out_dir)
    argv = resolve_command(cmd, Path.cwd())
    started = time.monotonic()
    prepared = _Prepared(make_figure)  # imports and audit run beside the replicas
    outcomes = run_replicas(
        argv, replicas, out_dir, parallel=parallel, metrics_file=metrics_file, on_tick=on_tick,
        compare=compare,
    )
    return finish(outcomes, compare, atol, rtol, out_dir, argv, started, prepared)


def check_runs(
    paths: Sequence[str | Path],
    *,
    compare: Sequence[str] = (),
    out_dir: Path,
    atol: float = 1e-6,
    rtol: float = 0.0,
    fmt: str | None = None,
    make_figure: bool = True,
) -> DeterminismResult:
    """Compare logs that already exist (one file or run folder per replica)."""
    from rldk_engine.errors import InputError
    from rldk_engine.ingest.readers import read_run

    if len(paths) < 2:
        raise DeterminismError(f"--runs needs at least 2 logs (got {len(paths)})")
    _check_tolerances(atol, rtol)
    started = time.monotonic()
    prepared = _Prepared(make_figure)
    outcomes = []
    for i, path in enumerate(paths):
        try:
            run = read_run(Path(path), fmt)
        except InputError as exc:
            raise DeterminismError(str(exc)) from None
        outcomes.append(ReplicaOutcome(
            index=i, workdir=None, exit_code=None, run=run, source=str(path),
            metrics_from="log", metrics_file=str(path),
        ))
    return finish(outcomes, compare, atol, rtol, Path(out_dir), None, started, prepared)


def _check_tolerances(atol: float, rtol: float) -> None:
    for flag, value in (("--tolerance", atol), ("--rtol", rtol)):
        if not (value >= 0 and math.isfinite(value)):
            raise DeterminismError(f"{flag} must be a finite number >= 0 (got {value})")
