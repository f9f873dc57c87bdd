"""Ingest under hostile input (issue 16) and the line parser's throughput with the new
trainer formats (issue 14).

Memory: each hostile input (generated in a temp dir) is read by `read_run` in a fresh
interpreter; its peak RSS (VmHWM) must stay <= 300 MB. Inputs: a 598 KB JSONL with a new
key on every row, a 1 MB gzip bomb, a 200 MB log with no newline, a 2 MB .tfevents.gz.
Throughput: `LineParser.feed` over a mix of the formats it learned (SB3 tables, CleanRL
numpy reprs, transformers 5 quoted dicts, tqdm postfixes, CSV rows, events), >= 100,000
lines/s; a plain JSONL `feed` loop in the same run is the baseline.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import best_of, child_peak_rss_mb, result  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
LIMIT_MB = 300


def new_key_per_row(path: Path) -> None:
    with open(path, "w") as handle:
        i = 0
        while handle.tell() < 598 * 1024:
            handle.write(json.dumps({"step": i, f"k{i}": 1.0}) + "\n")
            i += 1


def gzip_bomb(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(b'{"step": 0, "kl": 0.1}\n')
        block = b"\n" * (1 << 20)  # newlines: the worst case, every one a line
        while os.path.getsize(path) < 1 << 20 and handle.tell() < 8 << 30:
            for _ in range(256):
                handle.write(block)
            handle.flush()


def no_newline(path: Path, size_mb: int) -> None:
    with open(path, "wb") as handle:
        handle.write(b'{"step": 0, "kl": 0.1}\n')
        block = b"x" * (1 << 20)
        for _ in range(size_mb):
            handle.write(block)


def tfevents_gz(path: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    def record(data: bytes) -> bytes:
        header = struct.pack("<Q", len(data))
        return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))

    with gzip.open(path, "wb", compresslevel=9) as handle:
        step = 0
        while os.path.getsize(path) < 2 << 20:
            chunk = []
            for _ in range(2000):
                summary = summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=f"Losses/Value Loss{step % 7}", simple_value=step * 0.5),
                    summary_pb2.Summary.Value(tag="Policy/Entropy", simple_value=1.0)])
                chunk.append(record(event_pb2.Event(step=step, summary=summary).SerializeToString()))
                step += 1
            handle.write(b"".join(chunk))
            handle.flush()


def peak_of_read(path: Path) -> tuple[float, dict]:
    return child_peak_rss_mb(
        f"import sys, time; sys.path.insert(0, {ROOT!r})\n"
        "from rldk_engine.ingest.readers import read_run\n"
        f"t = time.perf_counter(); run = read_run({str(path)!r}); t = time.perf_counter() - t\n"
        "import json; print(json.dumps({'steps': run.n_steps, 'errors': run.errors[:1], 's': t}))"
    )


def mixed_lines() -> list[str]:
    sb3 = (Path(ROOT) / "tests" / "data" / "ingest" / "sb3_ppo_cartpole_verbose1.txt").read_text().splitlines()
    lines: list[str] = []
    for i in range(400):
        lines += sb3[-21:]  # one full SB3 table (train section included)
        lines += [f"global_step={i * 512}, episodic_return=[{i}.]",
                  f"global_step={i * 512 + 1}, episodic_return=array([{i}.5], dtype=float32)",
                  f"{{'loss': '-0.{i:04d}', 'grad_norm': '1.442', 'learning_rate': '1e-05', 'epoch': '0.{i}'}}",
                  f"Epoch #1: 100it [00:05, 20.1it/s, env_step={i * 100}, len=25, loss=0.5, rew={i}.00]",
                  json.dumps({"step": i, "name": "kl", "value": 0.01 * i}),
                  "Some log line without metrics"]
    lines += ["time/total_timesteps,rollout/ep_rew_mean,train/approx_kl"]
    lines += [f"{i},{i * 0.5},0.01" for i in range(2000)]
    return lines


def throughput(lines: list[str]) -> float:
    from rldk_engine.ingest.parse import LineParser

    def go():
        parser = LineParser()
        for line in lines:
            parser.feed(line)

    return len(lines) / best_of(go)


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        inputs = [
            ("598 KB JSONL, a new key on every row", base / "keys.jsonl", new_key_per_row),
            ("1 MB gzip bomb", base / "bomb.jsonl.gz", gzip_bomb),
            (f"{40 if quick else 200} MB log with no newline", base / "noline.log",
             lambda p: no_newline(p, 40 if quick else 200)),
            ("2 MB .tfevents.gz", base / "events.out.tfevents.1.host.gz", tfevents_gz),
        ]
        for name, path, make in inputs:
            make(path)
            size = os.path.getsize(path) / 2**20
            peak, info = peak_of_read(path)
            rows.append(result(f"peak RSS reading {name} ({size:.1f} MB on disk, {info.get('steps')} steps, "
                               f"{info.get('s', 0):.1f} s)", peak, "MB", float(LIMIT_MB), "limit",
                               f"<= {LIMIT_MB} MB", peak <= LIMIT_MB))
            path.unlink()
    lines = mixed_lines()
    started = time.perf_counter()
    rate = throughput(lines)
    plain = throughput([json.dumps({"step": i, "kl": 0.01, "reward": 1.0}) for i in range(len(lines))])
    rows.append(result(f"LineParser lines/s over the new formats ({len(lines):,} lines, "
                       f"{time.perf_counter() - started:.1f} s)", rate, "lines/s", plain,
                       "plain JSONL feed", ">= 100,000 lines/s", rate >= 100_000))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
