"""`rldk-tui` usage errors: one line naming the file and the reason, exit code 2."""

from __future__ import annotations

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
