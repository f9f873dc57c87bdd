"""`rldk-tui` usage errors: one line naming the file and the reason, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from rldk_tui.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "no command given"),
        (["run", "--"], "no command given"),
        (["run", "--rules", "/no/such/rules.yaml", "--", "python", "t.py"], "/no/such/rules.yaml"),
        (["run", "--preset", "nope", "--", "python", "t.py"], "unknown preset 'nope'"),
        (["watch", "/no/such/run_dir"], "/no/such/run_dir: not a run directory"),
        (["scan", "/no/such/log.jsonl"], "/no/such/log.jsonl: no such file"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_rules_yaml_names_the_line(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: x\n    bogus: [\n")
    assert main(["run", "--rules", str(rules), "--", "python", "t.py"]) == 2
    assert f"{rules}:" in capsys.readouterr().err


def test_watch_picks_the_workspace_or_one_run(tmp_path, monkeypatch):
    from tui_sample import write_sample_run_dir

    from rldk_tui.cli import config_for

    runs = tmp_path / "runs"
    one = write_sample_run_dir(runs / "a")
    workspace = config_for(["watch", str(runs)])
    assert workspace.workspace == runs and workspace.run_dir is None
    assert workspace.initial_tab == "runs"
    single = config_for(["watch", str(one)])  # a run directory opens directly ...
    assert single.run_dir == one and single.workspace == runs  # ... esc shows its siblings
    assert single.initial_tab == "live"
    monkeypatch.chdir(tmp_path)  # `rldk-tui` alone: ./rldk_runs, even before it exists
    default = config_for([])
    assert default.workspace == Path("rldk_runs") and default.initial_tab == "runs"
    baseline = config_for(["watch", str(one), "--baseline", str(one / "run.jsonl")])
    assert baseline.baseline == str(one / "run.jsonl")


def test_a_missing_baseline_is_one_line(tmp_path, capsys):
    assert main(["watch", str(tmp_path), "--baseline", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.csv: no such file or directory (--baseline)" in err and len(err.splitlines()) == 1
