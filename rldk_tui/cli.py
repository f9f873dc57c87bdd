"""`rldk-tui`: run / watch / scan / determinism. Imports stay light until a subcommand runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_RUNS = "rldk_runs"  # where `rldk-tui run` and `rldk-engine monitor` put runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rldk-tui", description="rldk in the terminal: live guardrails, scans, determinism.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="start CMD under the headless monitor and watch it",
                         usage="rldk-tui run [--preset P] [--rules FILE] [--run-dir DIR] -- CMD ...")
    run.add_argument("--preset", default="ppo", help="guardrail preset: ppo or grpo")
    run.add_argument("--rules", help="YAML rules file (replaces the preset's rules)")
    run.add_argument("--run-dir", help="run directory (default: rldk_runs/<time>-<pid>)")
    run.add_argument("--baseline", help="a log to overlay on the charts (any format rldk reads)")
    run.add_argument("--notify", action="append", default=[], metavar="URL",
                     help="Apprise URL for critical alerts and the stop (repeatable)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the trainer command, after --")

    watch = sub.add_parser(
        "watch", help="list every run under DIR (the workspace), or open one run directory")
    watch.add_argument("run_dir", nargs="?", default=DEFAULT_RUNS, metavar="DIR",
                       help=f"a folder of runs or one run directory (default: ./{DEFAULT_RUNS})")
    watch.add_argument("--baseline", help="a log to overlay on the charts (any format rldk reads)")

    scan = sub.add_parser("scan", help="scan logs and browse their anomalies")
    scan.add_argument("paths", nargs="+")
    scan.add_argument("--preset", default="auto")

    det = sub.add_parser("determinism", help="run determinism replicas in the Determinism tab")
    det.add_argument("--cmd", default="", help="command to replicate")
    det.add_argument("--replicas", type=int, default=2)
    det.add_argument("--compare", default="", help="metrics, comma separated")
    det.add_argument("--output-dir", default="rldk_reports/determinism")
    return parser


def fail(message: str) -> int:
    print(f"rldk-tui: {message}", file=sys.stderr)
    return 2


class UsageError(Exception):
    """A one-line reason the command line cannot run."""


def config_for(argv: list[str] | None):
    """The AppConfig a command line asks for; UsageError with one line when it can't."""
    args = build_parser().parse_args(argv)
    if args.command is None:  # `rldk-tui` alone: the workspace of ./rldk_runs
        args = build_parser().parse_args(["watch", DEFAULT_RUNS])
    from rldk_tui.app import AppConfig
    from rldk_tui.rundir import default_run_dir, run_dir_problem

    if getattr(args, "baseline", None) and not Path(args.baseline).exists():
        raise UsageError(f"{args.baseline}: no such file or directory (--baseline)")
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            raise UsageError("run: no command given (usage: rldk-tui run -- CMD ARGS...)")
        # Validate here, where the user can read the message, not in the detached monitor.
        from rldk_engine.live.rules import RulesError, load_rules, preset_rules

        try:
            load_rules(args.rules) if args.rules else preset_rules(args.preset)
        except RulesError as error:
            raise UsageError(str(error)) from None
        if args.notify:  # handed to the headless monitor through its environment (RLDK_NOTIFY)
            from rldk_engine.live.notify import NOTIFY_ENV, NotifyError, build_apprise

            try:
                build_apprise(args.notify)
            except NotifyError as error:
                raise UsageError(str(error)) from None
            os.environ[NOTIFY_ENV] = " ".join(args.notify)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir()
        return AppConfig(run_dir=run_dir, launch_cmd=cmd, preset=args.preset,
                         rules=args.rules, workspace=run_dir.parent, baseline=args.baseline)
    if args.command == "watch":
        target = Path(args.run_dir)
        if run_dir_problem(target) is None:  # one run: open it; its folder is the workspace
            return AppConfig(run_dir=target, workspace=target.parent, baseline=args.baseline)
        if target.is_dir() or (args.run_dir == DEFAULT_RUNS and not target.exists()):
            # A folder of runs (./rldk_runs may not exist yet: runs appear as they start).
            return AppConfig(workspace=target, initial_tab="runs", baseline=args.baseline)
        raise UsageError(run_dir_problem(target) or f"{target}: not a folder")
    if args.command == "scan":
        missing = [p for p in args.paths if not Path(p).exists()]
        if missing:
            raise UsageError(f"{missing[0]}: no such file or directory")
        return AppConfig(scan_paths=args.paths, scan_preset=args.preset, initial_tab="scan")
    return AppConfig(initial_tab="determinism", determinism=(
        args.cmd, args.replicas, args.compare, args.output_dir))


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_for(argv)
    except UsageError as error:
        return fail(str(error))
    from rldk_tui.app import RldkApp

    result = RldkApp(config).run()
    if result == "left-running" and config.run_dir is not None:
        print(f"rldk-tui: the run is still going under the headless guardrail.\n"
              f"  reattach: rldk-tui watch {config.run_dir}")
    elif result == "stopped" and config.run_dir is not None:
        print(f"rldk-tui: stop requested; artifacts in {config.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
