"""`rldk-engine monitor`: live guardrails around a trainer, a followed log, or stdin."""

from __future__ import annotations

import os
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
    grace_int: float = typer.Option(0.5, "--grace", "--grace-int", help="seconds after the first stop signal before SIGTERM (time to save a checkpoint)"),
    grace_term: float = typer.Option(0.5, "--grace-term", help="seconds after SIGTERM before SIGKILL"),
    stop_signal: str = typer.Option("SIGINT", "--stop-signal", help="first signal of a stop: the trainer's own checkpoint signal, e.g. SIGUSR1"),
    notify: Optional[list[str]] = typer.Option(None, "--notify", envvar="RLDK_NOTIFY", help="Apprise URL for critical alerts and the stop (repeatable): ntfy://topic, slack://..., json://host/path"),
    checkpoints: Optional[list[Path]] = typer.Option(None, "--checkpoints", help="trainer output folder with checkpoints for the resume plan (default: --output_dir & co. in CMD)"),
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
    parsed_signal = parse_signal(stop_signal)
    if parsed_signal is None:
        _usage(f"--stop-signal: unknown signal {stop_signal!r} (e.g. SIGINT, SIGUSR1, SIGTERM or a number)")
    first_signal = parsed_signal if parsed_signal is not None else 2  # _usage raised: never 2 here
    if grace_int < 0 or grace_term < 0:
        _usage("--grace and --grace-term must be >= 0")
    os.environ.pop("RLDK_NOTIFY", None)  # URLs carry secrets: never in the trainer's environment
    if notify:
        from rldk_engine.live.notify import NotifyError, build_apprise

        try:
            build_apprise(notify)  # a URL Apprise cannot use is bad usage, found before the run
        except NotifyError as exc:
            _usage(str(exc))
    if run_dir is None:
        run_dir = Path("rldk_runs") / time.strftime("%Y%m%d-%H%M%S")
    config = MonitorConfig(
        rules=rule_list, run_dir=run_dir, cmd=[] if (use_stdin or follow) else args,
        follow=follow, stdin=use_stdin, preset=None if rules is not None else preset,
        auto_stop=not no_auto_stop, quiet=quiet, grace_int=grace_int, grace_term=grace_term,
        shell=shell, stop_signal=first_signal, notify=list(notify or []),
        checkpoints=list(checkpoints or []), ignore_late_signals=True)
    try:
        res = run_monitor(config)
    except RunDirLocked as exc:
        _usage(str(exc))
    raise typer.Exit(res.exit_code)


def parse_signal(text: str) -> int | None:
    """"SIGUSR1", "usr1" or "10" -> the signal number; None when there is no such signal."""
    import signal

    name = text.strip().upper()
    if name.isdigit():
        try:
            return int(signal.Signals(int(name)))
        except ValueError:
            return None
    name = name if name.startswith("SIG") else "SIG" + name
    sig = getattr(signal, name, None)
    return int(sig) if isinstance(sig, signal.Signals) else None


def _usage(message: str) -> None:
    typer.echo(f"rldk-engine monitor: {message}", err=True)
    raise typer.Exit(2)
