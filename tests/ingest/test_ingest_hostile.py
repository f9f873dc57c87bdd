"""Hostile inputs to ingest (issue 16 items 1, 2, 6): every case asserts a clear message,
bounded time and memory, and that the good data around the bad part is kept.

Time limits here are generous bounds that catch a quadratic or blocking path, not speed
figures (those are in bench/bench_ingest_hostile.py).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import subprocess
import sys
import time
import tracemalloc

import pytest

from rldk_engine.errors import InputError
from rldk_engine.ingest import readers
from rldk_engine.ingest.parse import LineParser, canonical_metrics, parse_line
from rldk_engine.ingest.readers import discover_sources, load_runs, read_run
from rldk_engine.ingest.run import MAX_KEYS

HUGE = "9" * 400  # more digits than any float holds
GIANT = "9" * 5000  # past Python's 4300-digit int-parsing limit


# ------------------------------------------------------------------ huge integers


@pytest.mark.parametrize(
    "line",
    [
        '{"step": 1, "kl": ' + HUGE + "}",
        '{"step": 1, "kl": -' + GIANT + "}",
        "{'kl': " + HUGE + ", 'loss': 0.5}",
        "{'kl': '" + HUGE + "', 'loss': 0.5}",
        "step=1 kl=" + HUGE,
        "step:1 - kl:" + GIANT,
        "global_step=1, episodic_return=[" + HUGE + ".]",
    ],
)
def test_huge_integers_become_inf_in_every_line_format(line):
    record = LineParser().feed(line)
    assert record is not None
    value = record.metrics.get("kl", record.metrics.get("reward_mean"))
    assert math.isinf(value)


def test_huge_integer_step_is_no_step_and_never_overflows():
    parser = LineParser()
    assert parser.feed('{"step": ' + HUGE + ', "kl": 0.1}').step == 0
    assert parser.feed('{"step": 5, "kl": 0.1}').step == 5
    assert math.isinf(canonical_metrics({"kl": int(HUGE)})["kl"])


@pytest.mark.parametrize("suffix, text", [
    (".jsonl", '{"step": 0, "kl": 0.1}\n{"step": 1, "kl": ' + GIANT + '}\n{"step": 2, "kl": 0.3}\n'),
    (".csv", "step,kl\n0,0.1\n1," + HUGE + "\n2,0.3\n"),
    (".log", "{'kl': 0.1, 'step': 0}\n{'kl': " + HUGE + ", 'step': 1}\n{'kl': 0.3, 'step': 2}\n"),
    (".json", json.dumps({"log_history": [{"step": 0, "kl": 0.1}, {"step": 2, "kl": 0.3}]})[:-2]
     + ', {"step": 1, "kl": ' + GIANT + "}]}"),
])
def test_huge_integers_in_files_become_inf_and_keep_the_other_rows(tmp_path, suffix, text):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    run = read_run(path)
    assert run.steps.tolist() == [0, 1, 2]
    assert run.columns["kl"][0] == 0.1 and math.isinf(run.columns["kl"][1]) and run.columns["kl"][2] == 0.3
    assert run.nonfinite["kl"].tolist() == [1]


# ------------------------------------------------------------------ linear-time lines


@pytest.mark.parametrize("make", [
    lambda n: "{'a': " + "1" * n,                      # the 9.8 s case of the old regex
    lambda n: "{'a': '" + "x" * n + "}",
    lambda n: "{" + "'a': 1 " * (n // 7) + "}",
    lambda n: "{'" + "a'" * (n // 2) + "}",
    lambda n: "{'a': np.float64(" + "(" * n + "}",
    lambda n: "step=1 " + "x=[" * (n // 3),
    lambda n: "step=1 x=" + "[" * n,
    lambda n: "global_step=1, " + "k=array([" * (n // 10),
    lambda n: "|" + " " * n + "|" + "1" * 10 + "|",
    lambda n: "a," * (n // 2),
    lambda n: "Epoch #1: test_reward: " + "9" * n,
    lambda n: "Fps is (10 sec: " + "1" * n,
    lambda n: "[INFO] x. Step: 1. Time Elapsed: 1 s. Mean Reward: " + "1." * (n // 2),
    lambda n: "Result for x:\n" + "  " * n + "a: 1",
])
def test_a_200kb_hostile_line_parses_in_bounded_time(make):
    line = make(200_000)
    parser = LineParser()
    start = time.perf_counter()
    parse_line(line)
    parser.feed(line)
    parser.feed(line)
    assert time.perf_counter() - start < 3.0  # linear: ~0.05 s; the old regex took minutes


def test_line_parser_cuts_an_over_long_line_and_says_so():
    parser = LineParser()
    line = '{"step": 1, "kl": 0.5, "blob": "' + "x" * (17 << 20) + '"}'
    start = time.perf_counter()
    assert parser.feed(line) is None
    assert time.perf_counter() - start < 5.0
    assert any("longer than" in message for message in parser.rejections)
    assert parser.feed('{"step": 2, "kl": 0.1}').step == 2  # the stream goes on


# ------------------------------------------------------------------ bounded memory


def _peak_mb(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_log_without_newline_is_cut_at_the_cap_with_memory_bounded(tmp_path):
    path = tmp_path / "noline.log"
    with open(path, "wb") as handle:
        handle.write(b'{"step": 0, "kl": 0.1}\n{"step": 1, "kl": 0.2}\n')
        for _ in range(48):
            handle.write(b"x" * (1 << 20))  # 48 MB, no newline
    run, peak = _peak_mb(lambda: read_run(path))
    assert run.steps.tolist() == [0, 1]
    assert any("longer than" in e and "no newline" in e for e in run.errors)
    assert peak < 120  # the cap is 16 MiB; the old reader held the whole 48 MB line and more


def test_jsonl_with_a_new_key_on_every_row_stays_bounded(tmp_path):
    path = tmp_path / "keys.jsonl"
    with open(path, "w") as handle:
        for i in range(6000):
            handle.write(json.dumps({"step": i, "kl": 0.1, f"key_{i}": 1.0}) + "\n")
    run, peak = _peak_mb(lambda: read_run(path))
    assert run.n_steps == 6000 and run.columns["kl"].size == 6000  # no row lost
    assert len(run.columns) <= MAX_KEYS
    assert "distinct keys" in run.errors[0] and "key_" in run.errors[0]
    assert peak < 200


def test_gzip_bomb_stops_at_the_expansion_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "GZIP_MIN_LIMIT", 4 << 20)
    path = tmp_path / "bomb.jsonl.gz"
    row = b'{"step": 0, "kl": 0.1}\n'
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(row)
        for _ in range(64):
            handle.write(b" " * (1 << 20))  # 64 MB of spaces from a ~64 KB file
    start = time.perf_counter()
    run, peak = _peak_mb(lambda: read_run(path))
    assert time.perf_counter() - start < 20
    assert run.steps.tolist() == [0]
    assert any("gzip expands past" in e for e in run.errors)
    assert peak < 100


def test_gzip_bomb_json_document_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "GZIP_MIN_LIMIT", 1 << 20)
    path = tmp_path / "trainer_state.json.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b'{"log_history": [' + b" " * (8 << 20) + b"]}")
    with pytest.raises(InputError, match="gzip expands past"):
        read_run(path)


# ------------------------------------------------------------------ TensorBoard


def _tfrecord(data: bytes) -> bytes:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _tf_events(steps: int) -> list[bytes]:
    event_pb2 = pytest.importorskip("tensorboard.compat.proto.event_pb2")
    summary_pb2 = pytest.importorskip("tensorboard.compat.proto.summary_pb2")
    records = [_tfrecord(event_pb2.Event(wall_time=0.0, file_version="brain.Event:2").SerializeToString())]
    for step in range(steps):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="Policy/Entropy", simple_value=1.0 + step)])
        records.append(_tfrecord(event_pb2.Event(step=step, summary=summary).SerializeToString()))
    return records


def test_tfevents_gz_is_streamed_without_a_temp_file(tmp_path, monkeypatch):
    import tempfile

    def no_temp_files(*args, **kwargs):
        raise AssertionError("a temp file was written")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_temp_files)
    monkeypatch.setattr(tempfile, "mkstemp", no_temp_files)
    path = tmp_path / "events.out.tfevents.1.host.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"".join(_tf_events(100)))
    run = read_run(path)
    assert run.steps.tolist() == list(range(100)) and run.columns["entropy"][99] == 100.0
    assert run.errors == []


def test_tfevents_bad_crc_is_reported_with_the_records_lost(tmp_path):
    records = _tf_events(100)
    bad = bytearray(records[51])  # the event of step 50
    bad[-6] ^= 0xFF  # a data byte: the data CRC fails
    records[51] = bytes(bad)
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"".join(records))
    run = read_run(path)
    assert run.n_steps == 99 and 50 not in run.steps.tolist() and run.steps[-1] == 99
    assert any("CRC mismatch; 1 record lost" in e for e in run.errors)


def test_tfevents_framing_error_resynchronises_and_counts(tmp_path):
    records = _tf_events(100)
    bad = bytearray(records[51])
    bad[0] ^= 0x40  # the length header: framing is lost until the next valid record
    records[51] = bytes(bad)
    path = tmp_path / "events.out.tfevents.2.host"
    path.write_bytes(b"".join(records))
    run = read_run(path)
    assert run.n_steps == 99 and run.steps[-1] == 99
    assert any("framing error" in e and "at least 1 record lost" in e for e in run.errors)


def test_tfevents_torn_last_record(tmp_path):
    data = b"".join(_tf_events(10))
    path = tmp_path / "events.out.tfevents.3.host"
    path.write_bytes(data[:-7])
    run = read_run(path)
    assert run.steps.tolist() == list(range(9))
    assert any("cut short" in e and "1 record lost" in e for e in run.errors)


# ------------------------------------------------------------------ the sniffer


TQDM = "  0%|          | 0/100 [00:00<?, ?it/s]"


def test_tqdm_bar_first_never_makes_stdout_csv(tmp_path):
    lines = [TQDM, "Some banner, version 1.2", "WARNING: x, y"]
    lines += [json.dumps({"step": i, "kl": 0.1 * i, "reward": float(i)}) for i in range(20)]
    path = tmp_path / "stdout.log"
    path.write_text("\n".join(lines) + "\n")
    run = read_run(path)
    assert run.format != "csv" and run.n_steps == 20 and set(run.canonical_metrics) == {"kl", "reward_mean"}


def test_csv_after_banners_is_still_csv(tmp_path):
    path = tmp_path / "progress.csv"
    path.write_text("Logging to /tmp/x\n" + TQDM + "\nstep,kl,reward\n0,0.1,1\n1,0.2,2\n")
    run = read_run(path)
    assert run.format == "csv" and run.steps.tolist() == [0, 1] and run.columns["kl"].tolist() == [0.1, 0.2]


def test_monitor_log_of_a_tqdm_trainer_stays_readable(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(TQDM + "\r 50%|#####     | 50/100 [00:01<00:01, 50it/s]\n"
                    + "".join(f"{{'loss': {i / 10}, 'kl': 0.01}}\n" for i in range(5)))
    run = read_run(path)
    assert run.n_steps == 5 and run.format == "stdout"


# ------------------------------------------------------------------ special files


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


def test_fifo_is_refused_not_read(fifo):
    with pytest.raises(InputError, match="FIFO"):
        read_run(fifo)


def test_folder_holding_a_fifo_reads_the_rest_and_names_the_fifo(fifo):
    (fifo.parent / "good.jsonl").write_text('{"step": 0, "kl": 0.1}\n')
    runs, errors = load_runs([fifo.parent])
    assert [r.run_id for r in runs] == ["good.jsonl"]
    assert len(errors) == 1 and "pipe.jsonl" in errors[0] and "FIFO" in errors[0]


@pytest.mark.parametrize("command", [["scan"], ["inspect"], ["inspect", "--lines"]])
def test_cli_on_a_fifo_exits_2_without_blocking(fifo, command):
    proc = subprocess.run([sys.executable, "-m", "rldk_engine.cli", *command, str(fifo)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "FIFO" in proc.stderr and "Traceback" not in proc.stderr


def test_discovery_never_blocks_on_a_fifo(fifo):
    sources, errors = discover_sources([fifo])
    assert sources == [] and "FIFO" in errors[0]


# ------------------------------------------------------------------ markup and control characters


def test_inspect_shows_hostile_names_and_keys_as_text(tmp_path):
    from typer.testing import CliRunner

    from rldk_engine.cli.engine import app

    (tmp_path / "[").mkdir()
    path = tmp_path / "[" / "bold]\x1b[31m.jsonl"  # the path holds `[/bold]` and an escape
    path.write_text('{"step": 0, "[/red]": 1.0, "kl": 0.1}\n{"step": 1, "[/red]": 2.0, "kl": 0.2}\n')
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "bold]" in result.output and "\\x1b" in result.output  # shown, escaped
    assert "\x1b" not in result.output
    lines = CliRunner().invoke(app, ["inspect", "--stdin"], input='{"step": 0, "[/red]": 1.0}\n\x1b[31mred\n')
    assert lines.exit_code == 2 and "([/red])" in lines.output and "\x1b" not in lines.output


def test_wandb_summary_with_a_giant_integer_is_inf(tmp_path):
    folder = tmp_path / "run-20240101_000000-big"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "wandb-summary.json").write_text('{"_step": 3, "train/kl": ' + GIANT + "}")
    run = read_run(tmp_path)
    assert run.steps.tolist() == [3] and math.isinf(run.columns["kl"][0])


_PREFIXES = ["", "step=1 ", "{'a': ", '{"a": ', "x=", "| ", "|a|", "Epoch #1: ", "fps step: ", "epoch: ",
             "Avg episode reward: ", "Fps is (10 sec: ", "(a) ", "[rank0]: ", "agent_timesteps_total: ",
             "time/total_timesteps,", "[INFO] a. Step: 1. Time Elapsed: 1 s. Mean Reward: ", "step:1 - ",
             " 10%|#  | 1/10 [00:01<00:09, 1.0s/it, ", "global_step=1, x=array(["]
_RUNS = ["1", " ", "1.", "a", "[", "(", "'", "=", "|", ",", "5%", "1it", "a=1 ", "\t", "- ", ": "]


def test_every_parser_pattern_is_linear_on_long_runs():
    # every line-kind prefix followed by a 100 KB run of each character class a regex
    # could backtrack on; a quadratic pattern takes seconds per line here
    parser = LineParser()
    slowest = (0.0, "")
    for prefix in _PREFIXES:
        for run in _RUNS:
            line = prefix + run * (100_000 // len(run)) + "x"
            start = time.perf_counter()
            parser.feed(line)
            parse_line(line)
            spent = time.perf_counter() - start
            slowest = max(slowest, (spent, f"{prefix!r} + {run!r} * n"))
    assert slowest[0] < 1.0, slowest
