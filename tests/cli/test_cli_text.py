"""User-controlled strings (file names, metric keys, trainer output) reach the terminal as
text: never parsed as Rich markup, control characters escaped (issue 16 item 5)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rldk_engine.cli import app, compat
from rldk_engine.cli.text import plain, safe

ROWS = "".join(json.dumps({"step": s, "kl": 0.05, "reward": 0.1 * s}) + "\n" for s in range(30))
# Scanning a folder names each run by its path inside the folder: "[/bold].jsonl" is the
# subfolder "[" holding "bold].jsonl", shown as "[/bold].jsonl" (a MarkupError before).
MARKUP_NAMES = ["[/bold].jsonl", "[red]run[/red].jsonl", "[link=https:x]a.jsonl", ":smile:.jsonl"]
ESC_NAME = "evil\x1b]0;pwned\x07\x1b[2Jrun.jsonl"


def _log(folder: Path, name: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ROWS)
    return path


def _invoke(application, argv: list[str]):
    # wide enough that no table cell folds: the names are then found verbatim
    return CliRunner(env={"COLUMNS": "250"}).invoke(application, argv, catch_exceptions=False)


def test_safe_escapes_control_and_bidi_characters_and_keeps_the_rest():
    assert safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert safe("line\nbreak\rbell\x07") == "line\\x0abreak\\x0dbell\\x07"
    assert safe("tab\tkept, [bold] kept, ünïcode kept") == "tab\tkept, [bold] kept, ünïcode kept"
    assert safe("abc\u202edcba") == "abc\\u202edcba"
    assert safe("\x9b31m") == "\\x9b31m"  # C1 CSI
    assert plain("[/bold]").plain == "[/bold]"


@pytest.mark.parametrize("name", MARKUP_NAMES)
@pytest.mark.parametrize("command", ["scan", "inspect", "analyze"])
def test_markup_in_a_file_name_is_printed_literally(tmp_path, name, command):
    folder = tmp_path / "runs"
    log = _log(folder, name)
    _log(folder, "plain.jsonl")
    argv = [command, str(folder)]
    if command == "analyze":
        argv = [command, str(log), "--out", str(tmp_path / "analysis")]
    result = _invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert (log.name if command == "analyze" else name) in result.output


@pytest.mark.parametrize("command", ["scan", "inspect", "analyze"])
def test_markup_in_a_path_named_by_an_error_is_printed_literally(tmp_path, command):
    empty = tmp_path / "[" / "bold]" / "[/red].jsonl"
    empty.parent.mkdir(parents=True)
    empty.write_text("nothing to read here\n")
    result = _invoke(app, [command, str(empty)])
    assert result.exit_code == 2, result.output
    assert "[/bold]/[/red].jsonl" in result.output.replace("\n", "")


@pytest.mark.parametrize("name", MARKUP_NAMES[:2])
def test_markup_in_a_file_name_does_not_crash_doctor_or_log_scan(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _log(tmp_path / "runs", name)
    for argv in (["forensics", "log-scan", "runs"], ["doctor", "runs"]):
        result = _invoke(compat.app, argv)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["scan", "inspect"])
def test_escape_sequences_in_a_file_name_never_reach_the_terminal(tmp_path, command):
    _log(tmp_path / "runs", ESC_NAME)
    result = _invoke(app, [command, str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b" in result.output


def test_escape_sequences_in_an_error_message_are_escaped(tmp_path):
    missing = tmp_path / "gone\x1b[2J[/bold].jsonl"
    result = _invoke(app, ["scan", str(missing)])
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "[/bold]" in result.output


def test_trainer_stderr_quoted_by_determinism_is_escaped(tmp_path):
    trainer = tmp_path / "t.py"
    trainer.write_text(
        "import json, os, sys\n"
        "i = int(os.environ['RLDK_REPLICA'])\n"
        "for s in range(3): print(json.dumps({'step': s, 'kl': 0.1}))\n"
        "if i == 1:\n"
        "    print('boom \\x1b[2J [/bold] \\x1b]0;t\\x07', file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(trainer))}"
    result = _invoke(app, ["determinism", "--cmd", cmd, "--replicas", "2", "--compare", "kl",
                           "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "[/bold]" in result.output and "\\x1b[2J" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
