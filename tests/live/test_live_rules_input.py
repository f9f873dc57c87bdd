"""Hostile rules files (issue 16 item 7): every problem is ONE line naming the file, the
line and the column, never a traceback; numbers out of range are errors; a FIFO given as
--rules is refused at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers import MONITOR, REPO

from rldk_engine.live.rules import RulesError, load_rules, parse_rules_text


def rule(value: str, extra: str = "") -> str:
    return ("rules:\n  - id: a\n    metric: kl\n"
            f"    condition: {{kind: threshold, op: '>', value: {value}}}\n{extra}")


CASES = [
    # (name, text, expected "file:line:column: reason" start, a word of the reason)
    ("python/name tag", rule("!!python/name:os.system"), "r.yaml:4:", "YAML"),
    ("python/object tag", rule("!!python/object/apply:os.system ['echo pwned']"), "r.yaml:4:", "single value"),
    ("bad !!int", rule("!!int abc"), "r.yaml:4:50:", "not a valid int"),
    ("bad !!float", rule("!!float abc"), "r.yaml:4:50:", "not a valid float"),
    ("bad !!timestamp", rule("!!timestamp abc"), "r.yaml:4:50:", "not a valid timestamp"),
    ("timestamp as number", rule("2001-12-14"), "r.yaml:4:50:", "must be a number"),
    ("5,000-digit integer", rule("9" * 5000), "r.yaml:4:50:", "too many digits"),
    ("huge hex integer", rule("0x" + "f" * 5000), "r.yaml:4:50:", "out of range"),
    ("float overflow", rule("1e999"), "r.yaml:4:50:", "out of range"),
    ("negative float overflow", rule("-1e999"), "r.yaml:4:50:", "out of range"),
    ("infinity", rule(".inf"), "r.yaml:4:50:", "out of range"),
    ("huge for", rule("0.3", "    for: " + "9" * 30 + "\n"), "r.yaml:5:10:", "out of range"),
    ("5,000-digit for", rule("0.3", "    for: " + "9" * 5000 + "\n"), "r.yaml:5:10:", "too many digits"),
    ("huge m_of_n", rule("0.3", "    m_of_n: [3, " + "9" * 20 + "]\n"), "r.yaml:5:17:", "out of range"),
    ("deep nesting", "rules: " + "[" * 5000 + "]" * 5000 + "\n", "r.yaml:1:", "nested more than"),
    ("deep mappings", "rules:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(2000)),
     "r.yaml:", "nested more than"),
    ("deep value", rule("[" * 3000 + "]" * 3000), "r.yaml:4:", "nested more than"),
    ("tab indent", "rules:\n\t- id: a\n", "r.yaml:2:1:", "not valid YAML"),
]


@pytest.mark.parametrize("name, text, where, words", CASES, ids=[c[0] for c in CASES])
def test_hostile_rules_text_is_one_located_line(name, text, where, words):
    started = time.monotonic()
    with pytest.raises(RulesError) as err:
        parse_rules_text(text, "r.yaml")
    message = str(err.value)
    assert message.startswith(where) and words in message, message
    assert "\n" not in message and len(message) < 300
    assert time.monotonic() - started < 5


def test_rules_file_size_encoding_and_special_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(RulesError, match="larger than"):
        load_rules(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"rules: []\n# caf\xe9\n")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(latin)
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(RulesError, match="FIFO"):
        load_rules(fifo)
    assert time.monotonic() - started < 2
    with pytest.raises(RulesError, match="directory"):
        load_rules(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "python-tag", "deep"])
def test_monitor_cli_refuses_a_bad_rules_file_in_one_line(tmp_path, kind):
    rules = tmp_path / "rules.yaml"
    if kind == "fifo":
        os.mkfifo(rules)
    elif kind == "python-tag":
        rules.write_text(rule("!!python/object/apply:os.system ['touch pwned']"))
    else:
        rules.write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    done = subprocess.run([*MONITOR, "--rules", str(rules),
                           "--run-dir", str(tmp_path / "run"), "--", sys.executable, "-c", "print(1)"],
                          capture_output=True, timeout=30, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert str(rules) in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_monitor_cli_refuses_to_follow_a_fifo(tmp_path):
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)
    done = subprocess.run([*MONITOR, "--follow", str(fifo),
                           "--run-dir", str(tmp_path / "run")],
                          capture_output=True, timeout=30, cwd=REPO)
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and "FIFO" in err, err
