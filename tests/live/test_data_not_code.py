"""Rules files and logs are data (issue 9, item 6): no eval/exec/pickle in rldk_engine, no
shell expansion of anything read from a log, and CMD runs without a shell unless --shell."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MONITOR, REPO

from rldk_engine.live.rules import RulesError, parse_rules_text

PY = sys.executable

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("yaml", "load"), ("yaml", "unsafe_load"),
                   ("yaml", "full_load"), ("yaml", "load_all"), ("torch", "load")}
SPAWNERS = {"Popen", "run", "call", "check_call", "check_output"}
# the one documented use of a shell: `monitor --shell` hands ONE command string the user
# typed (never anything read from a log) to /bin/sh -c
ALLOWED_SHELL = {("monitor.py", "/bin/sh")}


def engine_sources() -> list[Path]:
    files = sorted((REPO / "rldk_engine").rglob("*.py"))
    assert len(files) > 10
    return files


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                out.append(f"{where}: {f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_ATTRS:
                out.append(f"{where}: {f.value.id}.{f.attr}()")
            callee = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            for kw in node.keywords:
                if (kw.arg == "allow_pickle" or (kw.arg == "shell" and callee in SPAWNERS)) and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    out.append(f"{where}: {kw.arg}=...")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{where}: import {name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/bin/sh"):
            if (path.name, node.value) not in ALLOWED_SHELL:
                out.append(f"{where}: {node.value!r}")
    return out


def test_no_eval_exec_pickle_or_shell_in_the_engine():
    bad = [f for path in engine_sources() for f in findings(path)]
    assert bad == []


def test_the_scan_itself_catches_what_it_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import pickle\nimport subprocess\neval('1')\n"
                     "subprocess.run('x', shell=True)\nyaml.load(s)\nx = '/bin/sh'\n")
    assert len(findings(probe)) == 5


HOSTILE = ["$(touch {m})", "`touch {m}`", "__import__('os').system('touch {m}')", "; touch {m}",
           "{{{{7*7}}}} !!python/object/apply:os.system ['touch {m}']"]


def hostile_lines(marker: Path) -> list[str]:
    lines = []
    for i, payload in enumerate(HOSTILE):
        text = payload.format(m=marker)
        lines.append(json.dumps({"step": i, "kl": 0.01, "note": text, text: 1.0}))
        lines.append(f"step:{i} - kl:{text} - reward_mean:0.5 - {text}")
        lines.append(f"{text} kl={text} loss=0.1")
    return lines


def test_hostile_log_lines_are_only_text(tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    data = ("\n".join(hostile_lines(marker)) + "\n").encode()
    proc = subprocess.run([*MONITOR, "--quiet", "--run-dir", str(run_dir), "-"], input=data,
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    assert not marker.exists()
    assert proc.stdout == data  # passed through byte for byte, nothing expanded
    assert (run_dir / "monitor.log").read_bytes() == data
    assert json.loads((run_dir / "status.json").read_text())["steps"] >= len(HOSTILE)


def test_hostile_rules_file_is_data_or_refused(tmp_path):
    marker = tmp_path / "pwned"
    rules = parse_rules_text(f"""
rules:
  - id: "$(touch {marker})"
    metric: "__import__('os').system('touch {marker}')"
    condition: {{kind: threshold, op: ">", value: 1}}
    message: "`touch {marker}`"
""")
    assert rules[0].metrics == (f"__import__('os').system('touch {marker}')",)
    with pytest.raises(RulesError):
        parse_rules_text(f"""
rules:
  - id: x
    metric: kl
    condition: !!python/object/apply:os.system ["touch {marker}"]
""")
    assert not marker.exists()


def test_cmd_runs_without_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    argv = ["a b", ";", f"touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "*", "$HOME", "x'y\"z"]
    proc = subprocess.run([*MONITOR, "--quiet", "--run-dir", str(tmp_path / "run"), "--", PY, "-c",
                           "import json, sys; print(json.dumps(sys.argv[1:]))", *argv],
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == argv  # every argument arrived literally
    assert not marker.exists()


def test_shell_takes_one_command_string(tmp_path):
    proc = subprocess.run([*MONITOR, "--quiet", "--shell", "--run-dir", str(tmp_path / "run"), "--",
                           "echo one; echo 'two three' | tr a-z A-Z"],
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == ["one", "TWO THREE"]


def test_shell_with_several_words_is_a_usage_error(tmp_path):
    proc = subprocess.run([*MONITOR, "--quiet", "--shell", "--run-dir", str(tmp_path / "run"), "--", "echo", "a b"],
                          capture_output=True, timeout=30, cwd=REPO)
    assert proc.returncode == 2
    assert "one command string" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_shell_config_with_several_words_quotes_them(tmp_path):
    """The Python API never re-splits words either: shell=True with a list is quoted."""
    from rldk_engine.live.monitor import MonitorConfig, run_monitor

    marker = tmp_path / "pwned"
    res = run_monitor(MonitorConfig(rules=[], run_dir=tmp_path / "run", shell=True, quiet=True,
                                    passthrough=False, cmd=["echo", f"a; touch {marker}"]))
    assert res.exit_code == 0
    assert (tmp_path / "run" / "monitor.log").read_text() == f"a; touch {marker}\n"
    assert not marker.exists()
