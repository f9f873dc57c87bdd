"""`rldk-engine monitor`: live guardrails around a trainer, a followed log, or stdin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

MONITOR_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def monitor_command(
    ctx: typer.Context,
    preset: str = typer.Option("ppo", "--preset", help="built-in rules: ppo or grpo"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="YAML rules file (replaces the preset)"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="artifacts folder (default rldk_runs/<time>)"),
    follow: Optional[Path] = typer.Option(None, "--follow", help="tail a growing log file instead of running CMD"),
    stall_seconds: Optional[float] = typer.Option(None, "--stall-seconds", help="stall alert after S s without metrics (0 = off)"),
    no_auto_stop: bool = typer.Option(False, "--no-auto-stop", help="stop rules only alert"),
    shell: bool = typer.Option(False, "--shell", help="run ONE command string through /bin/sh -c (quote it: --shell -- 'train.py | tee log')"),
    quiet: bool = typer.Option(False, "--quiet", help="no monitor messages or summary (child output still passes through)"),
    grace_int: float = typer.Option(0.5, "--grace-int", help="seconds after SIGINT before SIGTERM"),
    grace_term: float = typer.Option(0.5, "--grace-term", help="seconds after SIGTERM before SIGKILL"),
) -> None:
    """Run CMD (after `--`), `--follow FILE`, or `-` (stdin) under guardrails.

    Exit code: 3 when a stop rule (or, for a command, a control.jsonl stop) ended the run,
    otherwise the trainer's own exit code (128+N when killed by signal N); with --follow or
    stdin, 0 when the input ends or a user stops watching; 2 for bad usage.
    """
    from rldk_engine.ingest.tail import NotARegularFile, check_regular
    from rldk_engine.live.monitor import MonitorConfig, RunDirLocked, run_monitor
    from rldk_engine.live.rules import RulesError, load_rules, preset_rules, with_stall_seconds

    args = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    use_stdin = args == ["-"]
    if follow is not None and args:
        _usage("give either --follow FILE or a command, not both")
    if follow is None and not args:
        _usage("nothing to monitor: give `-- CMD ARGS...`, `--follow FILE` or `-` for stdin")
    if shell and len(args) != 1:
        _usage("--shell takes one command string, quoted: --shell -- 'python train.py | tee log'")
    try:
        rule_list = load_rules(rules) if rules is not None else preset_rules(preset)
    except RulesError as exc:
        _usage(str(exc))
    rule_list = with_stall_seconds(rule_list, stall_seconds)
    if follow is not None:
        try:
            check_regular(follow)  # a FIFO or device would block the reader forever
        except NotARegularFile as exc:
            _usage(f"cannot follow {exc}")
    if run_dir is None:
        run_dir = Path("rldk_runs") / time.strftime("%Y%m%d-%H%M%S")
    config = MonitorConfig(
        rules=rule_list, run_dir=run_dir, cmd=[] if (use_stdin or follow) else args,
        follow=follow, stdin=use_stdin, preset=None if rules is not None else preset,
        auto_stop=not no_auto_stop, quiet=quiet, grace_int=grace_int, grace_term=grace_term,
        shell=shell, ignore_late_signals=True)
    try:
        res = run_monitor(config)
    except RunDirLocked as exc:
        _usage(str(exc))
    raise typer.Exit(res.exit_code)


def _usage(message: str) -> None:
    typer.echo(f"rldk-engine monitor: {message}", err=True)
    raise typer.Exit(2)
