"""The one streaming line parser, shared by the live monitor and the offline readers.

Layers:
- `clean_line`: drops NUL bytes, ANSI colours, Ray actor and `[rankN]:` prefixes, and
  tqdm carriage-return debris.
- `parse_line`: one cleaned line -> raw metric dict (source keys -> float) or None.
  Stateless. Understands flat JSON, `{"step": N, "data": {...}}`, long-format events
  (`{"step": 3, "name": "kl", "value": 0.11}`), Python dict reprs (`{'loss': 0.1}`,
  `{'loss': '-0.5566'}`, `np.float64(...)`, `tensor(...)`), verl console lines
  (`step:N - k:v - ...`), `key=value` lines (CleanRL, tqdm postfixes of OpenRLHF and
  Tianshou, numpy reprs like `[294.]` and `array([1.5], dtype=float32)`), and the
  console summaries of Sample Factory, rl_games and Tianshou. Anything else is
  rejected cheaply.
- `LineParser`: canonical `Record`s with inferred steps and counters, for streams. It
  keeps the small state that multi-line formats need: Stable-Baselines3 ASCII tables
  (one table -> one record, emitted at the closing dashed line), RLlib `pretty_print`
  result blocks, and CSV/TSV headers followed by rows (a growing progress.csv on stdin or
  `--follow`).

Every pattern here is linear in the line length (no nested or lazy quantifiers that can
backtrack), so one hostile line costs time proportional to its length, and nothing read
from a log is ever evaluated as code.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import orjson

from rldk_engine.ingest.metrics import canonical_map, canonical_name

# Longest line the parser looks at; readers cut longer lines to this and count the rest.
MAX_LINE_CHARS = 16 << 20  # 16 MiB: W&B-style lines with blobs still parse

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# Ray actor prefixes `(main_task pid=12)`, `(WorkerDict pid=3, ip=10.0.0.1)` and
# torchrun's `[rank3]:`, possibly several in a row.
_PREFIX = re.compile(
    r"^(?:\s*(?:\([A-Za-z_][\w.:-]*(?: pid=\d+)?(?:, ip=[\d.]+)?\)|\[(?:rank|RANK)\s*\d+\]:?|\[default\d+\]:?)\s*)+"
)
# One `'key': value` pair of a Python dict repr. The value is one of: a quoted string
# (transformers 5 prints `'loss': '-0.5566'`), a call such as `np.float64(0.5)` or
# `tensor(0.5, device='cuda:0')`, a bracketed list, or a bare token. Every branch is a
# negated character class with no lazy part, so matching is linear (the old lazy
# `[^,]+?\s*(?=,|})` took 9.8 s on a 20 KB line).
_PYDICT_PAIR = re.compile(
    r"""(['"])([^'"\n]{1,512}?)\1\s*:\s*("""
    r"""'[^']*'|"[^"]*"|[A-Za-z_][\w.]*\([^()]*\)|\[[^\[\]]*\]|[^,{}\[\]'"]*)"""
)
# `np.float64(0.5)`, `tensor(0.5, device='cuda:0')`, `float32(1e-3)` -> the number
_WRAPPED_NUMBER = re.compile(r"^[A-Za-z_][\w.]*\(\s*([^,()]+)")
# numpy reprs CleanRL prints: `[294.]`, `array([1.5], dtype=float32)`, `[[3.0]]`
_ARRAY_NUMBER = re.compile(r"^(?:array\()?\[+\s*([^\[\],\s]+)\s*\]+(?:\s*,\s*dtype=\w+)?\)?$")
# `key=value` pairs: CleanRL (`global_step=9552, episodic_return=[294.]`), tqdm postfixes
# (`..., 1.2it/s, env_step=10000, rew=25.00]`), launcher lines (`step=3 kl=0.1`).
_KV_PAIR = re.compile(
    r"(?:^|(?<=[\s,|;\[]))([A-Za-z_][\w/.\-]*)\s*=\s*(array\([^()]*\)|\[+[^\[\]]*\]+|[^\s,|;\[\]]+)"
)
# the counter of a tqdm bar glued in front of a dict: `| 20/100 [00:10<...]{'loss': ...}`
_BAR_COUNTER = re.compile(r"(\d+)/\d+ \[")
# A tqdm frame: `Train step of epoch 0:  10%|█  | 10/100 [00:10<01:30, 1.0s/it, k=v]`
_TQDM_FRAME = re.compile(r"(?:\d+%\||\d+it \[|[\d.]+(?:it/s|s/it)[,\]])")

# Sample Factory (sample_factory/algo/runners/runner.py, seen in its docs and user logs):
# `[2022-11-30 19:48:21,166][07494] Fps is (10 sec: 22528.2, 60 sec: 20377.6, 300 sec:
#  20377.6). Total num frames: 3829760. Throughput: 0: 5085.4. Samples: 203415. ...`
# `[2022-11-30 19:48:21,166][07494] Avg episode reward: [(0, '0.824')]`
_SF_FPS = re.compile(r"Fps is \(10 sec: ([^,]+), 60 sec: ([^,]+), 300 sec: ([^)]+)\)\. Total num frames: (\d+)")
_SF_REWARD = re.compile(r"Avg episode rewards?: (?:\[\(0, '([^']*)'\)|#0: ([-+\w.]+))")
# rl_games (rl_games/common/a2c_common.py `train`, e.g. as shown in Isaac Lab's docs):
# `fps step: 112918 fps step and policy inference: 104337 fps total: 78179 epoch: 1/150 frames: 0`
# and forks that print `epoch: 5 fps step: 10.0 fps total: 9.0 mean reward: 1.23 mean lengths: 40.0`
_RLG_FPS = re.compile(r"fps step: ([\d.]+) .*?fps total: ([\d.]+)")
_RLG_FIELD = re.compile(r"(epoch|frames?|mean reward|mean lengths): ([-+\d.eE]+|nan|inf)(?:/\d+)?")
# Tianshou (tianshou/trainer/base.py, printed once per epoch):
# `Epoch #1: test_reward: 9.400000 ± 0.663325, best_reward: 9.400000 ± 0.663325 in #1`
_TS_EPOCH = re.compile(
    r"^Epoch #(\d+): test_reward: ([^\s,]+)(?: ± ([^\s,]+))?, best_reward: ([^\s,]+)(?: ± ([^\s,]+))?"
)
# Stable-Baselines3 (stable_baselines3/common/logger.py HumanOutputFormat):
# a dashed line, `| rollout/           |          |` section rows,
# `|    ep_rew_mean     | 1.43     |` value rows, a closing dashed line.
_SB3_RULE = re.compile(r"^-{5,}$")
_SB3_ROW = re.compile(r"^\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|$")
# RLlib `pretty_print(result)` (ray/tune/logger): YAML, keys sorted, nested by indent.
_YAML_KEY = re.compile(r"^( *)([A-Za-z_][\w/.\-]*):(?: (.*))?$")
_RLLIB_TOP_KEYS = frozenset({
    "agent_timesteps_total", "connector_metrics", "counters", "custom_metrics", "date",
    "done", "env_runners", "episode_len_mean", "episode_reward_max", "episode_reward_mean",
    "fault_tolerance", "info", "learners", "num_env_steps_sampled_lifetime",
    "num_training_step_calls_per_iteration", "perf", "sampler_results", "timers",
})
_CSV_FIELD = re.compile(r"^[A-Za-z_][\w/.\- ()%]*$")

_STEP_KEYS = ("step", "global_step", "iteration", "_step", "train/global_step")
_METRIC_MARKERS = ("{", ":", "=")
MAX_STEP = 2**62
# Keys that make a logged dict a run summary, not a step (HF's closing `train_runtime`).
SUMMARY_KEYS = ("train_runtime", "total_flos")
# marks a raw dict that belongs to the step already seen (eval dicts, reward lines)
SAME_STEP = "__same_step__"
_MAX_BLOCK_KEYS = 4096  # keys one table or result block may collect


def clean_line(text: str) -> str:
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS]
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\r" in text:
        text = text.rstrip("\r\n")
        if "\r" in text:  # progress bars redraw with \r; the last frame is what shows
            text = text.rsplit("\r", 1)[-1]
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if text[:1] in ("(", "[", " "):
        text = _PREFIX.sub("", text, count=1)
    return text.strip()


def line_origin(text: str) -> str | None:
    """Which rank or Ray actor printed a line: `[rank3]:` -> "rank3",
    `(main_task pid=12)` -> "main_task pid=12"; None for an unprefixed line."""
    if "\x1b" in text:
        text = _ANSI.sub("", text[:4096])
    text = text.lstrip()
    if text[:1] not in ("(", "["):
        return None
    prefix = _PREFIX.match(text[:4096])
    if prefix is None:
        return None
    parts = re.findall(r"[(\[]([^)\]]*)[)\]]", prefix.group(0))
    return " ".join(p.strip() for p in parts) or None


def number_from_text(text: str) -> float | None:
    """A printed value as float (NaN for None/null); None when it is no number.
    Integers of any length saturate to ±inf (float() of a string never overflows)."""
    text = text.strip().strip("'\"")
    if len(text) > 4096:  # no number is that long except a hostile digit string
        body = text.lstrip("+-")
        if body.isdigit():
            return -math.inf if text.startswith("-") else math.inf
        return None
    try:
        return float(text)
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("none", "null"):
        return math.nan
    if text[:1] in ("[", "a"):
        array = _ARRAY_NUMBER.match(text)
        if array:
            try:
                return float(array.group(1))
            except ValueError:
                return None
    wrapped = _WRAPPED_NUMBER.match(text)
    if wrapped:
        try:
            return float(wrapped.group(1).strip().strip("'\""))
        except ValueError:
            return None
    return None


def number_from_value(value: object) -> float | None:
    """A decoded JSON value as float; NaN for null; None when it is no number."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int or kind is bool:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # copysign(inf, value) would convert value, and overflow too
            return -math.inf if value < 0 else math.inf  # type: ignore[operator]
    if value is None:
        return math.nan
    if kind is str:
        return number_from_text(value)  # type: ignore[arg-type]
    if isinstance(value, (int, float)):  # numpy scalars
        try:
            return float(value)
        except OverflowError:
            return -math.inf if value < 0 else math.inf
    item = getattr(value, "item", None)  # 0-d torch tensors and numpy arrays
    if callable(item):
        try:
            return number_from_value(item())
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def flatten_json_row(row: dict) -> dict:
    """`{"step": N, "data": {...}}` and `{"metrics": {...}}` -> one flat dict."""
    for nest in ("data", "metrics"):
        inner = row.get(nest)
        if isinstance(inner, dict):
            flat = {k: v for k, v in row.items() if k != nest}
            flat.update(inner)
            return flat
    return row


def event_row(row: dict) -> dict | None:
    """A long-format event (`{"step": 3, "name": "kl", "value": 0.11, "meta": {...},
    "time": ...}`, one metric per line, as the original kit's EventWriter writes) ->
    `{"step": 3, "kl": 0.11}`; None when the row is not such an event."""
    name = row.get("name")
    if type(name) is not str or "value" not in row or not name:
        return None
    out = {name: row["value"]}
    if "step" in row:
        out = {"step": row["step"], name: row["value"]}
    return out


def parse_int(text: str) -> int | float:
    # Python refuses int literals over 4300 digits (ValueError) and float() of a huge int
    # overflows: an integer longer than any float is ±inf, never an error.
    return int(text) if len(text) < 300 else float(text)


def loads_json(raw: bytes | str) -> object:
    """orjson, falling back to the stdlib for the NaN/Infinity tokens Python writes and
    for integers beyond 64 bits (which become floats, ±inf past 1e308)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw, parse_int=parse_int)


def _json_metrics(text: str) -> dict[str, float] | None:
    try:
        row = loads_json(text)
    except (ValueError, RecursionError):
        return None
    if type(row) is not dict:
        return None
    if "data" in row or "metrics" in row:
        row = flatten_json_row(row)
    elif "name" in row and "value" in row:
        event = event_row(row)
        if event is not None:
            row = event
    for value in row.values():  # fast path: plain numbers, the usual metric line
        kind = type(value)
        if kind is not float and kind is not int:
            break
    else:
        return row or None
    out: dict[str, float] = {}
    for key, value in row.items():
        number = number_from_value(value)
        if number is not None:
            out[str(key)] = number
    return out or None


def _pydict_metrics(text: str) -> dict[str, float] | None:
    # Config dumps (nested dicts, multi-line pprint) are not metrics.
    if text.count("{") != 1 or not text.endswith("}"):
        return None
    out: dict[str, float] = {}
    for _, key, raw in _PYDICT_PAIR.findall(text):
        number = number_from_text(raw)
        if number is not None:
            out[key] = number
    return out or None


def _verl_metrics(text: str) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for part in text.split(" - "):
        key, sep, raw = part.rpartition(":")
        if not sep or not key:
            continue
        number = number_from_text(raw)
        if number is not None:
            out[key.strip()] = number
    return out if "step" in out else None


def _kv_metrics(text: str) -> dict[str, float] | None:
    pairs = _KV_PAIR.findall(text)
    if not pairs:
        return None
    if not text.startswith(pairs[0][0]):
        # only lines that *are* key=value lists, a tqdm postfix, or carry a step key; not
        # prose that mentions one (`we set lr=0.1 because ...`)
        has_step = any(key in _STEP_KEYS or canonical_name(key) == "step" for key, _ in pairs)
        if not has_step and not _TQDM_FRAME.search(text):
            return None
    out: dict[str, float] = {}
    for key, raw in pairs:
        number = number_from_text(raw)
        if number is not None:
            out[key] = number
    return out or None


def _console_summary(text: str) -> dict[str, float] | None:
    """Sample Factory, rl_games and Tianshou console summaries (formats cited above)."""
    if "Fps is (" in text:
        match = _SF_FPS.search(text)
        if match:
            fps = number_from_text(match.group(2))
            row = {"total_num_frames": float(match.group(4))}
            if fps is not None:
                row["fps"] = fps
            return row
    if "Avg episode reward" in text:
        match = _SF_REWARD.search(text)
        if match:
            value = number_from_text(match.group(1) or match.group(2) or "")
            if value is not None:
                return {SAME_STEP: 1.0, "avg_episode_reward": value}
    if text.startswith("Epoch #"):
        match = _TS_EPOCH.match(text)
        if match:
            row = {SAME_STEP: 1.0, "epoch": float(match.group(1))}
            for key, index in (("test_reward", 2), ("test_reward_std", 3), ("best_reward", 4), ("best_reward_std", 5)):
                value = number_from_text(match.group(index) or "")
                if value is not None:
                    row[key] = value
            return row
    if "fps step: " in text or (text.startswith("epoch: ") and "fps" in text):
        speed = _RLG_FPS.search(text)
        fields = dict(_RLG_FIELD.findall(text))
        row = {}
        if speed:
            row["fps_step"], row["fps_total"] = float(speed.group(1)), float(speed.group(2))
        frames = fields.get("frames") or fields.get("frame")
        if frames is not None:
            row["step"] = float(frames)
            if "epoch" in fields:
                row["epoch"] = float(fields["epoch"])
        elif "epoch" in fields:
            row["step"] = float(fields["epoch"])
        for key, name in (("mean reward", "mean_reward"), ("mean lengths", "mean_length")):
            if key in fields:
                value = number_from_text(fields[key])
                if value is not None:
                    row[name] = value
        return row if "step" in row else None
    return None


def parse_line(text: str) -> dict[str, float] | None:
    """One log line -> {source key: value}, or None when it carries no metrics."""
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS]
    if not any(marker in text for marker in _METRIC_MARKERS):
        return None
    text = clean_line(text)
    if not text:
        return None
    brace = text.find("{")
    if brace >= 0:
        body = text[brace:]
        if body.startswith('{"') or body.startswith("{}"):
            return _json_metrics(body)
        if body.startswith("{'"):
            # HF prints bare dicts; after prose ("overriding config {...}") it is config.
            # A tqdm bar glued in front (`...it/s]{'loss': ...}`) still counts.
            if brace == 0:
                return _pydict_metrics(body)
            if text[brace - 1] == "]":
                found = _pydict_metrics(body)
                bar = _BAR_COUNTER.findall(text[max(0, brace - 200):brace])
                if found is not None and bar and not any(k in found for k in _STEP_KEYS):
                    found["global_step"] = float(bar[-1])  # the bar counts optimiser steps
                return found
            return None
        if brace == 0:
            return _json_metrics(body)
    if text.startswith("step:"):
        return _verl_metrics(text)
    if "=" in text:
        found = _kv_metrics(text)
        if found is not None:
            return found
    if ": " in text:
        return _console_summary(text)
    return None


def looks_like_metrics(text: str) -> bool:
    """Cheap guess whether an unparsable line was meant to carry metrics."""
    text = clean_line(text)
    return text.startswith("{") or text.startswith("step:")


@dataclass(slots=True)
class Record:
    step: int
    metrics: dict[str, float]
    origin: str | None = None  # rank / Ray actor prefix of the line, if any


@lru_cache(maxsize=4096)
def _schema_plan(keys: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Per key schema: the target names, and which positions flip sign."""
    mapping = canonical_map(keys)
    return tuple(name for name, _ in mapping), tuple(i for i, (_, neg) in enumerate(mapping) if neg)


def derive_kl(metrics: dict[str, float]) -> None:
    """SPEC: when only the per-sequence KL is logged, the per-token `kl` the 0.35
    guardrail means is kl_seq / response_len_mean (in place)."""
    if "kl" in metrics or "kl_seq" not in metrics:
        return
    length = metrics.get("response_len_mean")
    if length is not None and length > 0 and math.isfinite(length):
        metrics["kl"] = metrics["kl_seq"] / length


def step_of(raw: dict[str, float]) -> tuple[float | None, dict[str, float]]:
    """Canonicalise one raw dict: (step or None, {canonical name: value})."""
    names, negated = _schema_plan(tuple(raw))
    metrics = dict(zip(names, raw.values()))
    for position in negated:
        metrics[names[position]] = -metrics[names[position]]
    if "kl_seq" in metrics:
        derive_kl(metrics)
    return metrics.pop("step", None), metrics


def canonical_metrics(logged: dict) -> dict[str, float]:
    """A dict logged in-process (source keys; floats, tensors, numpy scalars, strings) ->
    {canonical name: float}; non-numeric values are dropped. Used by `Guard` and the
    HF callback, so in-process guardrails map keys exactly as the line parser does."""
    raw: dict[str, float] = {}
    for key, value in logged.items():
        number = number_from_value(value)
        if number is not None:
            raw[str(key)] = number
    return step_of(raw)[1]


# ------------------------------------------------------------------ multi-line formats


class _Sb3Table:
    """Accumulates one Stable-Baselines3 table; `close()` gives its raw row."""

    __slots__ = ("section", "row", "rows_seen")

    def __init__(self) -> None:
        self.section = ""
        self.row: dict[str, float] = {}
        self.rows_seen = 0

    def add(self, key: str, value: str) -> None:
        self.rows_seen += 1
        if not value:  # `| rollout/ |  |`: a section header
            self.section = key if key.endswith("/") else key + "/"
            return
        number = number_from_text(value)
        if number is not None and len(self.row) < _MAX_BLOCK_KEYS:
            name = key if "/" in key or not self.section else self.section + key
            self.row[name] = number


class _YamlBlock:
    """Accumulates one RLlib `pretty_print(result)` block; emitted at `training_iteration`."""

    __slots__ = ("path", "row")

    def __init__(self) -> None:
        self.path: list[tuple[int, str]] = []  # (indent, key) of the open parents
        self.row: dict[str, float] = {}

    def add(self, indent: int, key: str, value: str | None) -> None:
        while self.path and self.path[-1][0] >= indent:
            self.path.pop()
        name = "/".join([k for _, k in self.path] + [key])
        if value is None or value == "":
            self.path.append((indent, key))
            return
        number = number_from_text(value)
        if number is not None and len(self.row) < _MAX_BLOCK_KEYS and value not in ("true", "false"):
            self.row[name] = number


class _CsvHeader:
    __slots__ = ("fields", "delimiter")

    def __init__(self, fields: list[str], delimiter: str) -> None:
        self.fields = fields
        self.delimiter = delimiter


def csv_header(text: str) -> _CsvHeader | None:
    """A CSV/TSV header line (SB3 progress.csv, Spinning Up progress.txt): two or more
    delimited names, none a number, each a plain metric name."""
    if text[:1] in ("{", "[", "|", "-") or "=" in text or len(text) > 65536:
        return None
    delimiter = "\t" if text.count("\t") > text.count(",") else ","
    if text.count(delimiter) < 1:
        return None
    if "\n" in text or "\r" in text:
        return None
    try:
        fields = [f.strip() for f in next(csv.reader([text], delimiter=delimiter))]
    except csv.Error:
        return None
    if len(fields) < 2 or not all(fields):
        return None
    if any(not _CSV_FIELD.match(f) or number_from_text(f) is not None for f in fields):
        return None
    # prose like "Loading weights, please wait" has words separated by spaces; metric
    # names seldom do, and at least one name must be a metric rldk knows or contain a '/'
    if sum(" " in f for f in fields) > len(fields) // 2:
        return None
    if not any("/" in f or canonical_name(f) != f for f in fields):
        return None
    return _CsvHeader(fields, delimiter)


def _csv_row(header: _CsvHeader, text: str) -> dict[str, float] | None:
    if text.count(header.delimiter) != len(header.fields) - 1:
        return None
    if '"' not in text:
        cells = text.split(header.delimiter)
    else:
        try:
            cells = next(csv.reader([text.replace("\n", " ")], delimiter=header.delimiter))
        except csv.Error:
            return None
    if len(cells) != len(header.fields):
        return None
    row: dict[str, float] = {}
    for key, cell in zip(header.fields, cells):
        cell = cell.strip()
        if not cell:
            continue  # a blank cell is missing, not NaN
        number = number_from_text(cell)
        if number is None:
            return None  # a row of a CSV holds numbers; this line is something else
        row[key] = number
    return row or None


# ------------------------------------------------------------------ the stream parser

# What `LineParser.last_kind` says about the line just fed (shown by `inspect --stdin`)
KIND_METRICS = "metric row"
KIND_TABLE = "table row"  # inside an SB3 table or RLlib result block (the row comes at its end)
KIND_TABLE_END = "table end"  # closes a table: its metrics become one record
KIND_CSV_HEADER = "csv header"
KIND_CSV_ROW = "csv row"
KIND_SUMMARY = "summary (not a step)"
KIND_IGNORED = "ignored"
KIND_REJECTED = "rejected"


class LineParser:
    """Feed lines one at a time; get canonical Records with steps filled in.

    `feed(line)` returns at most one Record per line. Multi-line formats return their
    record on the line that completes them (an SB3 table's closing dashed line, RLlib's
    `training_iteration`). `feed_all(line)` also splits tqdm's carriage-return redraws
    into frames and returns one record per distinct frame.
    """

    MAX_REJECTIONS = 100

    def __init__(self) -> None:
        self.n_lines = 0
        self.n_records = 0
        self.n_rejected = 0
        self.n_summaries = 0
        self.rejections: list[str] = []
        self.last_step: int | None = None
        self.last_kind = KIND_IGNORED
        self.last_raw: dict[str, float] | None = None  # source keys of the last record
        # ranks count their own steps: rank1's first stepless line is step 0, not last + 1
        self._last_by_origin: dict[str, int] = {}
        self._table: _Sb3Table | None = None
        self._yaml: _YamlBlock | None = None
        self._csv: _CsvHeader | None = None
        self._last_tqdm: dict[str, float] | None = None
        self._steps_per_epoch: float | None = None  # HF logging cadence, once known

    def feed(self, line: str) -> Record | None:
        self.n_lines += 1
        self.last_raw = None
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS]
            self.reject(f"longer than {MAX_LINE_CHARS} characters (cut)")
        multi = self._multi_line(line)
        if multi is not None:
            kind, raw = multi
            self.last_kind = kind
            return self._record(raw, line, pydict=False) if raw else None
        raw = parse_line(line)
        if raw is None:
            if looks_like_metrics(line):
                self.reject("looks like a metric line but could not be parsed")
                self.last_kind = KIND_REJECTED
            else:
                self.last_kind = KIND_IGNORED
            return None
        if any(key in raw for key in SUMMARY_KEYS):
            # HF's closing `{'train_runtime': ..., 'train_loss': ...}` summarises the run
            self.n_summaries += 1
            self.last_kind = KIND_SUMMARY
            return None
        pydict = "{'" in line
        if pydict and all(k.startswith("eval_") or k == "epoch" for k in raw):
            raw[SAME_STEP] = 1.0  # HF evaluates at the step it just logged
        if "=" in line and self._is_tqdm_repeat(line, raw):
            self.last_kind = KIND_IGNORED
            return None
        self.last_kind = KIND_METRICS
        return self._record(raw, line, pydict=pydict)

    def feed_all(self, line: str) -> list[Record]:
        """Like `feed`, but each tqdm carriage-return frame of the line counts."""
        if "\r" not in line.rstrip("\r\n"):
            record = self.feed(line)
            return [] if record is None else [record]
        frames = [f for f in line.rstrip("\r\n").split("\r") if f.strip()]
        records = []
        for frame in frames[-256:]:  # a pathological line of frames stays bounded
            record = self.feed(frame)
            if record is not None:
                records.append(record)
        self.n_lines -= max(0, len(frames[-256:]) - 1)  # one input line
        return records

    def finish(self) -> Record | None:
        """At end of input: a table or result block left open still counts."""
        if self._table is not None and self._table.row:
            raw, self._table = self._table.row, None
            return self._record(raw, "", pydict=False)
        return None

    # -- internals

    def _is_tqdm_repeat(self, line: str, raw: dict[str, float]) -> bool:
        """tqdm redraws the same postfix many times; only a change is a new row."""
        if not _TQDM_FRAME.search(line):
            return False
        if raw == self._last_tqdm:
            return True
        self._last_tqdm = dict(raw)
        return False

    def _multi_line(self, line: str) -> tuple[str, dict[str, float] | None] | None:
        """SB3 tables, RLlib result blocks and CSV rows; None when the line is none."""
        if line[:1] == "{" and self._table is None and self._yaml is None:
            return None  # the usual JSON / dict metric line: no table state involved
        text = clean_line(line)
        if self._table is not None or text.startswith("|") or _SB3_RULE.match(text):
            found = self._sb3(text)
            if found is not None:
                return found
        yaml = self._rllib(line.rstrip("\r\n"), text)
        if yaml is not None:
            return yaml
        if text and text[0] not in "{[" and ("," in text or "\t" in text):
            if self._csv is not None:
                row = _csv_row(self._csv, text)
                if row is not None:
                    return KIND_CSV_ROW, row
            header = csv_header(text)
            if header is not None:
                self._csv = header
                return KIND_CSV_HEADER, None
        return None

    def _sb3(self, text: str) -> tuple[str, dict[str, float] | None] | None:
        if _SB3_RULE.match(text):
            table = self._table
            if table is not None and table.row:
                self._table = None  # closing rule: the table is one record
                return KIND_TABLE_END, table.row
            self._table = _Sb3Table()  # opening rule
            return KIND_TABLE, None
        row = _SB3_ROW.match(text)
        if row is None:
            if self._table is not None:
                self._table = None  # something else interrupted the table: drop it
            return None
        if self._table is None:
            self._table = _Sb3Table()  # attached mid-table: take what follows
        self._table.add(row.group(1), row.group(2))
        return KIND_TABLE, None

    def _rllib(self, line: str, text: str) -> tuple[str, dict[str, float] | None] | None:
        if text.startswith("Result for ") and text.endswith(":"):
            self._yaml = _YamlBlock()
            return KIND_TABLE, None
        match = _YAML_KEY.match(line) if len(line) < 4096 else None
        if match is None:
            if self._yaml is not None and line.lstrip().startswith("- "):
                return KIND_TABLE, None  # a list item inside the block
            if self._yaml is not None and text:
                self._yaml = None
            return None
        indent, key, value = len(match.group(1)), match.group(2), match.group(3)
        if self._yaml is None:
            if indent or key not in _RLLIB_TOP_KEYS:
                return None
            self._yaml = _YamlBlock()
        if indent == 0 and key == "training_iteration":
            block, self._yaml = self._yaml, None
            block.add(0, key, value or "")
            return KIND_TABLE_END, block.row
        self._yaml.add(indent, key, value)
        return KIND_TABLE, None

    def _record(self, raw: dict[str, float], line: str, pydict: bool) -> Record:
        same = raw.pop(SAME_STEP, None) is not None
        self.last_raw = raw
        step, metrics = step_of(raw)
        origin = line_origin(line) if line[:1] in ("(", "[", " ", "\x1b") else None
        previous = self.last_step if origin is None else self._last_by_origin.get(origin)
        if step is not None and abs(step) < MAX_STEP:  # NaN/inf/1e30 are no usable step
            current = int(step)
        elif same and previous is not None:
            current = previous
        elif pydict:
            # HF's global_step is 1-based and counts optimiser steps: the first logged
            # dict is step 1 (with logging_steps=1), not 0. Once a dict has shown both
            # its step and its epoch, the cadence (steps per epoch) places later dicts
            # that carry only `epoch` (logging_steps > 1).
            epoch = raw.get("epoch")
            current = 1 if previous is None else previous + 1
            if epoch is not None and self._steps_per_epoch and epoch > 0:
                placed = round(epoch * self._steps_per_epoch)
                if previous is None or placed > previous:
                    current = placed
        else:
            current = 0 if previous is None else previous + 1
        if pydict and step is not None and current > 0:
            epoch = raw.get("epoch")
            if epoch is not None and 0 < epoch < current:
                self._steps_per_epoch = current / epoch
        if origin is not None:
            self._last_by_origin[origin] = current
        self.last_step = current
        self.n_records += 1
        return Record(current, metrics, origin)

    def reject(self, reason: str) -> None:
        self.n_rejected += 1
        if len(self.rejections) < self.MAX_REJECTIONS:
            self.rejections.append(f"line {self.n_lines}: {reason}")


def describe_line(parser: LineParser, line: str) -> tuple[str, Record | None]:
    """Feed one line and say what it was read as (for `rldk-engine inspect --stdin`)."""
    record = parser.feed(line)
    return parser.last_kind, record
