"""A generated corpus of bad inputs, through the readers and the CLIs.

Each case must give a clear one-line message naming the file and the reason (or a
counted skip), the exit code SPEC gives, and never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.errors import InputError
from rldk_engine.ingest.readers import discover_sources, load_runs, read_run

GOOD_ROWS = [{"step": i, "train/kl": 0.01 + 0.001 * i, "env/reward_mean": 0.1 * i} for i in range(50)]
# incompressible rows, so that cutting the gzip really cuts the stream
NOISY_ROWS = [{"step": i, "kl": (i * 7919 % 1000) / 997.0, "r": (i * 104729 % 9973) / 13.0} for i in range(5000)]


def _jsonl(rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


# name -> (bytes, expected: "error: <reason>" | "skips: N" | "ok: steps")
CORPUS: dict[str, tuple[bytes, str]] = {
    "empty.jsonl": (b"", "error: empty file"),
    "whitespace.log": (b"  \n\t\n\r\n   ", "error: empty file"),
    "binary.bin.log": (bytes(range(256)) * 200, "error: binary file, not a text log"),
    "invalid_utf8.log": (b"\xff\xfe\xfa" * 3000 + b"\n", "error: binary file, not a text log"),
    "truncated_mid_line.jsonl": (_jsonl(GOOD_ROWS)[:-17], "skips: 1"),
    "truncated_mid_file.jsonl.gz": (gzip.compress(_jsonl(NOISY_ROWS))[:20000], "ok: gzip stream ends early"),
    "not_gzip.jsonl.gz": (_jsonl(GOOD_ROWS), "error: named .gz but is not a gzip file"),
    "crlf.jsonl": (_jsonl(GOOD_ROWS).replace(b"\n", b"\r\n"), "ok: 50"),
    "ragged.csv": (
        b'step,kl,note\n1,0.1,"a, quoted, note"\n2,0.2\n3,0.3,x,extra\n4,0.4,"ok"\n',
        "skips: 2",
    ),
    "array_not_jsonl.json": (json.dumps(GOOD_ROWS).encode(), "ok: 50"),
    "prose.log": (b"starting\nloading weights\ndone\n", "error: no metric rows found"),
    "nan_inf_none.jsonl": (
        b'{"step": 0, "kl": NaN}\n{"step": 1, "kl": "Infinity"}\n{"step": 2, "kl": null}\n{"step": 3, "kl": 0.1}\n',
        "ok: 4",
    ),
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for name, (data, _) in CORPUS.items():
        (tmp_path / name).write_bytes(data)
    # a 10 MB line between good lines: read, not choked on
    big = tmp_path / "ten_mb_line.jsonl"
    with open(big, "wb") as handle:
        handle.write(_jsonl(GOOD_ROWS[:2]))
        handle.write(json.dumps({"step": 2, "kl": 0.5, "blob": "x" * 10_000_000}).encode() + b"\n")
        handle.write(_jsonl(GOOD_ROWS[3:5]))
    return tmp_path


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_file_reads_or_fails_in_one_line(corpus, name):
    path = corpus / name
    expected = CORPUS[name][1]
    kind, _, detail = expected.partition(": ")
    if kind == "error":
        with pytest.raises(InputError) as info:
            read_run(path)
        message = str(info.value)
        assert message == f"{path}: {message.split(': ', 1)[1]}"
        assert detail in message and "\n" not in message
        return
    run = read_run(path)
    if kind == "skips":
        assert run.n_skipped == int(detail) and len(run.errors) == int(detail)
        assert all(e.startswith("line ") for e in run.errors)
    elif detail.isdigit():
        assert run.n_steps == int(detail)
    else:
        assert any(detail in e for e in run.errors)


def test_ten_megabyte_line_is_parsed(corpus):
    run = read_run(corpus / "ten_mb_line.jsonl")
    assert run.steps.tolist() == [0, 1, 2, 3, 4] and run.columns["kl"][2] == 0.5


def test_crlf_and_array_give_the_same_columns_as_clean_jsonl(corpus, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(_jsonl(GOOD_ROWS))
    reference = read_run(clean)
    for name in ("crlf.jsonl", "array_not_jsonl.json"):
        run = read_run(corpus / name)
        assert run.steps.tolist() == reference.steps.tolist()
        assert run.columns["kl"].tolist() == reference.columns["kl"].tolist()


def test_file_deleted_between_discovery_and_reading(tmp_path):
    path = tmp_path / "gone.jsonl"
    path.write_bytes(_jsonl(GOOD_ROWS))
    sources, errors = discover_sources([tmp_path])
    path.unlink()
    with pytest.raises(InputError, match="no such file"):
        read_run(sources[0])


def test_file_deleted_while_being_read_is_read_to_the_end(tmp_path, monkeypatch):
    path = tmp_path / "vanishing.jsonl"
    path.write_bytes(_jsonl(GOOD_ROWS * 100))
    import rldk_engine.ingest.readers as readers

    real_open = readers.open_binary

    def open_then_delete(p):
        handle = real_open(p)
        if os.path.exists(path):
            path.unlink()  # POSIX: an open file stays readable after unlink
        return handle

    monkeypatch.setattr(readers, "open_binary", open_then_delete)
    run = read_run(path, fmt="jsonl")
    assert run.n_steps == 50


def test_directory_without_permission_is_named_with_its_reason(tmp_path, monkeypatch):
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl(GOOD_ROWS))
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "hidden.jsonl").write_bytes(_jsonl(GOOD_ROWS))
    real_scandir = os.scandir

    def scandir(path="."):  # root ignores chmod 000, so refuse the way the kernel would
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    runs, errors = load_runs([tmp_path])
    assert [r.run_id for r in runs] == ["good.jsonl"]
    assert errors == [f"{locked}: permission denied"]


def test_unreadable_file_is_named_with_its_reason(tmp_path, monkeypatch):
    path = tmp_path / "secret.jsonl"
    path.write_bytes(_jsonl(GOOD_ROWS))
    import builtins

    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    with pytest.raises(InputError) as info:
        read_run(path)
    assert str(info.value) == f"{path}: permission denied"


@pytest.mark.parametrize("command", ["scan", "inspect"])
def test_cli_on_the_whole_corpus_lists_bad_files_and_scans_good_ones(corpus, command):
    result = CliRunner().invoke(app, [command, str(corpus)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0
    output = result.output
    assert "Traceback" not in output
    for name, (_, expected) in CORPUS.items():
        if expected.startswith("error: "):
            lines = [line for line in output.splitlines() if line.startswith(str(corpus / name) + ":")]
            assert len(lines) == 1, (name, output)
            assert expected.removeprefix("error: ") in lines[0]


@pytest.mark.parametrize("name", [n for n, (_, e) in CORPUS.items() if e.startswith("error: ")])
def test_cli_exit_2_when_nothing_is_readable(corpus, name):
    result = subprocess.run(
        [sys.executable, "-m", "rldk_engine.cli", "scan", str(corpus / name)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(corpus / name) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_missing_file_and_unknown_format():
    runner = CliRunner()
    missing = runner.invoke(app, ["scan", "/nonexistent/x.jsonl"])
    assert missing.exit_code == 2 and "/nonexistent/x.jsonl" in missing.output
    wrong = runner.invoke(app, ["inspect", "--format", "yaml", "/nonexistent/x.jsonl"])
    assert wrong.exit_code == 2 and "unknown format" in wrong.output
