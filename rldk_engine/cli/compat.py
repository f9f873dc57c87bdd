"""`rldk`: the original kit's commands, verbatim, on top of the same engine functions.

`rldk log-scan` / `rldk forensics log-scan` are `rldk-engine scan`; `rldk doctor` /
`rldk forensics doctor` are `rldk-engine doctor` (writing rldk_reports/ppo_scan.json
and rldk_reports/determinism_card.json); `rldk check-determinism` is
`rldk-engine determinism`; `rldk monitor --stream FILE --rules FILE --pid PID --alerts
FILE --report FILE` watches a stream a trainer writes (rldk_engine.live.attach). Only
command names and option wiring live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rldk_engine.cli.analyze import analyze_command
from rldk_engine.cli.determinism import determinism_command
from rldk_engine.cli.fixtures import doctor_command
from rldk_engine.cli.scan import scan_command
from rldk_engine.cli.text import new_app

app = new_app("rldk", "RL Debug Kit (compatibility commands of the original kit).")
forensics = new_app("forensics", "Forensic analysis of finished runs.")


@app.callback()
def _root() -> None:
    """RL Debug Kit (compatibility commands of the original kit)."""


def monitor_command(
    stream: Optional[str] = typer.Option(None, "--stream", help="metrics file to follow as it grows, or '-' for stdin"),
    once: Optional[Path] = typer.Option(None, "--once", help="read a finished metrics file once and exit"),
    rules: Optional[str] = typer.Option(None, "--rules", help="rules YAML (the original kit's format or rldk's), or ppo|grpo"),
    preset: Optional[str] = typer.Option(None, "--preset", help="rldk's rules preset ppo|grpo when --rules is not given (with --rules it is ignored: the original kit's field-map presets are not needed, rldk maps trainer keys itself)"),
    pid: Optional[int] = typer.Option(None, "--pid", help="process to stop on a stop rule (SIGINT, SIGTERM, SIGKILL)"),
    alerts: Path = typer.Option(Path("artifacts/alerts.jsonl"), "--alerts", help="alerts, one JSON row each, appended as they fire"),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report of the watch: steps, alerts, outcome"),
    grace: float = typer.Option(2.0, "--grace", help="seconds after SIGINT before SIGTERM (time to save a checkpoint)"),
    kill_timeout_sec: float = typer.Option(5.0, "--kill-timeout-sec", help="seconds after SIGTERM before SIGKILL"),
    quiet: bool = typer.Option(False, "--quiet", help="no alert lines on stderr"),
) -> None:
    """Watch a metrics stream under guardrails; stop --pid on a stop rule.

    Exit code: 3 when a stop rule fired (the process, if any, was stopped), 0 when the
    stream ended, the process exited on its own or the watch was interrupted, 2 for bad
    usage (a rules file rldk cannot read is refused with its line number).
    """
    raise typer.Exit(run_monitor_cli(stream, once, rules, preset, pid, alerts, report, grace,
                                     kill_timeout_sec, quiet))


def run_monitor_cli(stream, once, rules, preset, pid, alerts, report, grace, kill_timeout_sec, quiet) -> int:
    from rldk_engine.live.attach import AttachConfig, NativeEngine, pid_alive, run_attach
    from rldk_engine.live.kit_rules import KitEngine, is_kit_rules_text, load_kit_rules
    from rldk_engine.live.rules import PRESETS, RulesError, load_rules, preset_rules

    def usage(message: str) -> int:
        typer.echo(f"rldk monitor: {message}", err=True)
        return 2

    if stream is None and once is None:  # as the original kit: its metrics file, else a pipe
        import os
        import sys

        if os.environ.get("RLDK_METRICS_PATH"):
            stream = os.environ["RLDK_METRICS_PATH"]
        elif not sys.stdin.isatty():
            stream = "-"
    if (stream is None) == (once is None):
        return usage("give exactly one source: --stream FILE (or '-') or --once FILE")
    engine: NativeEngine | KitEngine
    try:
        if rules is not None and not Path(rules).exists() and rules in PRESETS:
            engine, source = NativeEngine(preset_rules(rules)), f"preset {rules}"
        elif rules is not None:
            if not Path(rules).is_file():
                return usage(f"{rules}: no such rules file (the original kit's built-in rule sets are "
                             f"not included; give a YAML file or --preset {'|'.join(PRESETS)})")
            text = Path(rules).read_text(encoding="utf-8", errors="replace")
            if is_kit_rules_text(text):
                engine, source = KitEngine(load_kit_rules(rules)), rules
            else:
                engine, source = NativeEngine(load_rules(rules)), rules
        else:  # with --rules, the original's --preset named a field map: rldk maps keys itself
            name = preset or "ppo"
            engine, source = NativeEngine(preset_rules(name)), f"preset {name}"
    except RulesError as exc:
        return usage(str(exc))
    if pid is not None and (pid <= 0 or not pid_alive(pid)):
        return usage(f"--pid {pid}: no such process")
    if grace < 0 or kill_timeout_sec < 0:
        return usage("--grace and --kill-timeout-sec must be >= 0")
    cfg = AttachConfig(stream=str(once if once is not None else stream), engine=engine, rules_source=source,
                       pid=pid, once=once is not None, grace_int=grace, grace_term=kill_timeout_sec,
                       alerts_path=alerts, report_path=report, quiet=quiet)
    res = run_attach(cfg)
    if not quiet:
        fired = sum(a.event == "fire" for a in res.alerts)
        why = {"stopped": f"stopped by {res.stop_rule} at step {res.stop_step}"
                          + (f"; sent {', '.join(res.signals) or 'nothing'} to PID {pid}" if pid else ""),
               "process_exited": f"PID {pid} exited on its own",
               "interrupted": "watch interrupted", "stream_ended": "stream ended"}[res.outcome]
        typer.echo(f"rldk monitor: {res.steps} steps, {fired} alerts; {why}; exit code {res.exit_code}", err=True)
    return res.exit_code


app.command("monitor")(monitor_command)
app.command("log-scan")(scan_command)
app.command("doctor")(doctor_command)
app.command("check-determinism")(determinism_command)
forensics.command("log-scan")(scan_command)
forensics.command("doctor")(doctor_command)
forensics.command("comprehensive")(analyze_command)
app.add_typer(forensics, name="forensics")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
