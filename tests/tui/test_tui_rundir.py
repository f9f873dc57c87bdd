"""The run-directory client: partial lines, non-finite values, alert state, control lines."""

from __future__ import annotations

import math

import orjson
from tui_sample import write_sample_run_dir

from rldk_tui import rundir
from rldk_tui.live_state import LiveState, RunDirTailer


def test_partial_trailing_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "run.jsonl"
    tail = rundir.LineTail(path)
    assert tail.read_lines() == []  # missing file is "nothing yet"
    path.write_bytes(b'{"step": 0, "kl": 0.1}\n{"step": 1, "k')
    assert tail.read_lines() == [b'{"step": 0, "kl": 0.1}']
    with open(path, "ab") as out:
        out.write(b'l": 0.2}\n')
    assert tail.read_lines() == [b'{"step": 1, "kl": 0.2}']
    assert tail.read_lines() == []


def test_truncated_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "monitor.log"
    path.write_bytes(b"one\ntwo\n")
    tail = rundir.LineTail(path)
    assert tail.read_lines() == [b"one", b"two"]
    path.write_bytes(b"x\n")
    assert tail.read_lines() == [b"x"]


def test_rows_keep_the_whole_history_with_nonfinite_values_as_nan():
    state = LiveState()
    lines = [orjson.dumps({"step": i, "time": 100.0 + i, "kl": v})
             for i, v in enumerate([0.1, "NaN", 0.3, "Infinity", 0.2, "-Infinity"])]
    state.add_rows(lines + [b"not json", b"[1, 2]"])
    snap = state.snapshot()
    kl = snap.series["kl"]
    assert list(kl.steps) == [0, 1, 2, 3, 4, 5]
    assert kl.values[0] == 0.1 and math.isnan(kl.values[1]) and math.isinf(kl.values[3])
    assert math.isinf(kl.current) and kl.current < 0
    assert (kl.low, kl.high) == (0.1, 0.3)
    assert kl.non_finite_steps == (1.0, 3.0, 5.0)  # drawn as markers on the step axis
    assert snap.rows == 6 and snap.last_step == 5 and snap.bad_lines == 2
    assert snap.steps_per_s == 1.0


def test_every_metric_is_kept_key_metrics_first():
    state = LiveState()
    state.add_rows([orjson.dumps({"step": 0, "zeta": 1, "entropy": 2, "kl": 3, "alpha": 4})])
    assert list(state.snapshot().series) == ["kl", "entropy", "alpha", "zeta"]


def test_alert_fire_and_clear_drive_the_alerting_rules():
    state = LiveState()
    state.add_rows([b'{"step": 1, "kl": 0.5}'])
    fire = {"rule": "kl_spike", "metric": "kl", "step": 1, "event": "fire"}
    state.add_alerts([orjson.dumps(fire)])
    snap = state.snapshot()
    assert snap.alerting == {"kl": ("kl_spike",)}
    assert [a["rule"] for a in snap.new_alerts] == ["kl_spike"]
    state.add_alerts([orjson.dumps({**fire, "event": "clear"})])
    snap = state.snapshot()
    assert snap.alerting == {} and snap.new_alerts == ()
    assert [a["rule"] for a in snap.alert_history] == ["kl_spike"]  # markers stay


def test_log_lines_are_bounded_between_snapshots():
    state = LiveState(log_cap=5)
    state.add_log([f"line {i}".encode() for i in range(20)])
    assert state.snapshot().new_log_lines == tuple(f"line {i}" for i in range(15, 20))
    assert state.snapshot().new_log_lines == ()


def test_tailer_reads_a_whole_run_directory(tmp_path):
    run_dir = write_sample_run_dir(tmp_path / "run")
    state = LiveState()
    tailer = RunDirTailer(run_dir, state)
    while tailer.poll():
        pass
    snap = state.snapshot()
    assert snap.rows == 60
    assert snap.status["stop_rule"] == "kl_spike"
    assert "kl_spike" in snap.alerting["kl"]
    assert len(snap.new_log_lines) == 60
    assert rundir.describe_state(snap.status) == "stopped by guardrail (kl_spike, step 56)"
    assert not rundir.is_active(snap.status)


def test_control_lines_follow_the_contract(tmp_path):
    rundir.request_stop(tmp_path)
    rundir.set_auto_stop(tmp_path, False)
    lines = (tmp_path / "control.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {"action": "stop", "by": "rldk-tui"},
        {"action": "auto_stop", "enabled": False},
    ]


def test_describe_state_words():
    assert rundir.describe_state({"state": "exited", "exit_code": 0}) == "exited with code 0"
    assert rundir.describe_state({"state": "stopped", "stop_reason": "user"}) == "stopped by user"
    assert rundir.describe_state({}) == "waiting for monitor"
    assert rundir.is_active({"state": "running"})


def test_a_chunk_with_odd_values_keeps_every_row():
    state = LiveState()
    lines = [b'{"step": 1, "kl": 0.1, "time": 10.0}', b'{"step": 2, "kl": "NaN"}',
             b'{"step": 3, "kl": null, "x": {"nested": 1}}', b'{"step": 4, "kl": 7, "time": 12.0}',
             b'{"step": 5, "kl": "Infinity"}', b'{"step": 6, "kl": -2.5}', b'[1]', b'{"kl"']
    state.add_rows(lines)
    kl = state.series["kl"]
    assert state.rows == 6 and state.bad_lines == 2 and state.last_step == 6
    assert kl.count == 6 and kl.current == -2.5 and (kl.low, kl.high) == (-2.5, 7.0)
    finite = [v for v in kl.snapshot().values if math.isfinite(v)]
    assert finite == [0.1, 7.0, -2.5]  # NaN, null and inf are data, never a crash
    assert math.isnan(state.series["x"].current)
    assert state.steps_per_s() == (4 - 1) / (12.0 - 10.0)  # rows 1..4 over 2 s
