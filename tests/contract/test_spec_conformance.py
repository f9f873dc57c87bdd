"""Standing checks of /work/shared/SPEC.md contracts that no other test file pins down."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from importlib.metadata import entry_points

import typer
from helpers import MONITOR

from rldk_engine import cli
from rldk_engine.cli import compat
from rldk_engine.ingest.readers import read_run
from rldk_engine.live.rules import RuleEngine, preset_rules

PY = sys.executable


def _command_names(app: typer.Typer, *path: str) -> set[str]:
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    return set(group.commands)


# ---------------------------------------------------------------- entry points


def test_console_scripts_are_the_spec_names():
    # the installed package's entry points (tomllib is 3.11+, the project supports 3.10)
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")
               if ep.name in ("rldk-engine", "rldk-tui", "rldk")}
    assert scripts == {
        "rldk-engine": "rldk_engine.cli:main",
        "rldk-tui": "rldk_tui.cli:main",
        "rldk": "rldk_engine.cli.compat:main",
    }


def test_engine_and_compat_commands_exist():
    assert {"scan", "monitor", "determinism", "doctor", "fixtures"} <= _command_names(cli.app)
    assert {"log-scan", "doctor", "check-determinism", "forensics"} <= _command_names(compat.app)
    assert {"log-scan", "doctor"} <= _command_names(compat.app, "forensics")


def test_monitor_and_determinism_flags_are_the_spec_names():
    group = typer.main.get_command(cli.app)

    def flags(name: str) -> set[str]:
        return {opt for p in group.commands[name].params for opt in p.opts}

    assert {"--preset", "--rules", "--run-dir", "--follow"} <= flags("monitor")
    assert {"--cmd", "--compare", "--replicas", "--output-dir", "--tolerance", "--parallel",
            "--metrics-file"} <= flags("determinism")


# ---------------------------------------------------------------- inputs


def test_gzip_of_a_tensorboard_event_file_is_read_like_the_plain_file(real_logs, tmp_path):
    # SPEC "Inputs": gzip of any of these, TensorBoard event files included
    plain = real_logs / "ppo_pytorch_tb1.tfevents"
    packed = tmp_path / "events.out.tfevents.1.host.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    want, got = read_run(str(plain)), read_run(str(packed))
    assert got.format == "tensorboard"
    assert got.n_steps == want.n_steps > 0
    assert set(got.columns) == set(want.columns)


def test_a_cut_gzipped_event_file_keeps_what_was_read(real_logs, tmp_path):
    data = gzip.compress((real_logs / "ppo_pytorch_tb1.tfevents").read_bytes())
    cut = tmp_path / "cut.tfevents.gz"
    cut.write_bytes(data[: len(data) // 2])
    run = read_run(str(cut))
    assert 0 < run.n_steps
    assert any("cut.tfevents.gz" in e for e in run.errors)


# ---------------------------------------------------------------- guardrail persistence


def _kl_lines_twice_per_step(spike_steps: range) -> str:
    out = []
    for step in range(1, 11):
        kl = 0.5 if step in spike_steps else 0.05
        out.append(f"{{'step': {step}, 'kl': {kl}}}")  # the trainer's dict line
        out.append(f"step:{step} - kl:{kl} - reward:1.0")  # and its console summary
    return "\n".join(out) + "\n"


def test_for_n_counts_steps_not_lines_that_repeat_a_step():
    # "stop when kl > 0.35 for 5 consecutive steps": 3 steps printed twice are 3 steps
    engine = RuleEngine(preset_rules("ppo"), clock=lambda: 0.0)
    fired = []
    for step in range(1, 11):
        kl = 0.5 if 4 <= step <= 6 else 0.05
        fired += engine.observe(step, {"kl": kl}) + engine.observe(step, {"kl": kl})
    assert not [a for a in fired if a.rule == "kl_spike"]


def test_monitor_does_not_stop_on_three_steps_logged_on_two_lines_each(tmp_path):
    text = _kl_lines_twice_per_step(range(4, 7))
    proc = subprocess.run([*MONITOR, "--run-dir", str(tmp_path / "r"), "--quiet", "-"],
                          input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "alerts.jsonl").read_text() == ""


def test_monitor_stops_on_five_steps_logged_on_two_lines_each(tmp_path):
    text = _kl_lines_twice_per_step(range(3, 8))
    proc = subprocess.run([*MONITOR, "--run-dir", str(tmp_path / "r"), "--quiet", "-"],
                          input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    alerts = [json.loads(line) for line in (tmp_path / "r" / "alerts.jsonl").read_text().splitlines()]
    fire = next(a for a in alerts if a.get("event", "fire") == "fire")
    assert {"time", "step", "rule", "metric", "value", "threshold", "severity", "action", "message"} <= fire.keys()
    assert (fire["rule"], fire["step"], fire["action"], fire["threshold"]) == ("kl_spike", 7, "stop", 0.35)
