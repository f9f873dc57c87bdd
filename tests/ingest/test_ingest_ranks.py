"""Multi-rank logs: lines are attributed to their rank/actor, and the same step printed by
several ranks is observed once (live) and merged (offline)."""

from __future__ import annotations

import json
from pathlib import Path

from rldk_engine.ingest.parse import LineParser, Record, line_origin
from rldk_engine.ingest.ranks import RankMerger
from rldk_engine.ingest.readers import read_run
from rldk_engine.live.monitor import MonitorConfig, run_monitor
from rldk_engine.live.rules import preset_rules


def test_line_origin_names_rank_and_ray_actor():
    assert line_origin('[rank3]: {"kl": 0.1}') == "rank3"
    assert line_origin("(main_task pid=12) step:1 - kl:0.1") == "main_task pid=12"
    colored = "\x1b[36m(WorkerDict pid=3, ip=10.0.0.1)\x1b[0m step:1 - kl:0.1"
    assert line_origin(colored) == "WorkerDict pid=3, ip=10.0.0.1"
    assert line_origin("step:1 - kl:0.1") is None
    assert line_origin("(this is prose) kl=1") is None


def test_parser_keeps_origin_and_infers_steps_per_rank():
    parser = LineParser()
    lines = ['[rank0]: {"kl": 0.1}', '[rank1]: {"kl": 0.1}', '[rank0]: {"kl": 0.2}',
             '[rank1]: {"kl": 0.2}', '{"kl": 0.3}']
    records = [parser.feed(line) for line in lines]
    assert [(r.step, r.origin) for r in records] == [
        (0, "rank0"), (0, "rank1"), (1, "rank0"), (1, "rank1"), (2, None)]
    assert records[1].metrics == {"kl": 0.1}


def test_merger_drops_copies_and_keeps_new_metrics():
    merger = RankMerger()
    assert merger.merge(Record(5, {"kl": 1.0}, "rank0")) == Record(5, {"kl": 1.0}, "rank0")
    assert merger.merge(Record(5, {"kl": 1.0}, "rank1")) is None
    # a rank that logs something rank 0 did not: only that part passes
    assert merger.merge(Record(5, {"kl": 1.0, "reward_mean": 2.0}, "rank2")) == Record(
        5, {"reward_mean": 2.0}, "rank2")
    # the same origin logging its step again is its own business: passed as is
    assert merger.merge(Record(5, {"kl": 3.0}, "rank0")) == Record(5, {"kl": 3.0}, "rank0")
    assert merger.merge(Record(6, {"kl": 1.0}, "rank1")) is not None
    assert merger.n_merged == 2


def test_merger_forgets_old_steps():
    merger = RankMerger(recent=4)
    for step in range(10):
        merger.merge(Record(step, {"kl": 1.0}, "rank0"))
    assert merger.merge(Record(0, {"kl": 1.0}, "rank1")) is not None  # step 0 forgotten
    assert merger.merge(Record(9, {"kl": 1.0}, "rank1")) is None


RANKS_CHILD = """
import sys
for step in range(1, 5):
    for rank in range(4):
        print(f'[rank{rank}]: {{"step": {step}, "objective/kl": 0.5}}', flush=True)
"""


def test_monitor_counts_each_step_once_across_ranks(tmp_path: Path):
    # kl_spike needs kl > 0.35 on 5 consecutive steps: 4 steps x 4 ranks must not fire it
    run_dir = tmp_path / "run"
    config = MonitorConfig(rules=preset_rules("ppo"), run_dir=run_dir, preset="ppo",
                           cmd=["python3", "-c", RANKS_CHILD], quiet=True, passthrough=False)
    result = run_monitor(config)
    assert result.stop_reason is None and result.exit_code == 0
    rows = [json.loads(line) for line in (run_dir / "run.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert not [a for a in result.alerts if a.event == "fire"]
    assert len((run_dir / "monitor.log").read_text().splitlines()) == 16  # raw log kept whole


def test_offline_read_merges_rank_rows_by_step(tmp_path: Path):
    log = tmp_path / "ray.log"
    lines = []
    for step in range(1, 4):
        for pid in (101, 102):
            lines.append(f"(WorkerDict pid={pid}) step:{step} - actor/ppo_kl:0.01 - critic/score/mean:{step}")
    log.write_text("\n".join(lines) + "\n")
    run = read_run(log)
    assert run.steps.tolist() == [1, 2, 3]
    assert run.get("reward_mean").tolist() == [1.0, 2.0, 3.0]
