"""The one streaming line parser, shared by the live monitor and the offline readers.

Layers:
- `clean_line`: drops NUL bytes, ANSI colours, Ray actor and `[rankN]:` prefixes, and
  tqdm carriage-return debris.
- `parse_line`: one cleaned line -> raw metric dict (source keys -> float) or None.
  Understands flat JSON, `{"step": N, "data": {...}}`, Python dict reprs
  (`{'loss': 0.1, 'kl': nan}`, `np.float64(...)`, `tensor(...)`), verl console lines
  (`step:N - k:v - ...`) and `key=value` lines. Anything else is rejected cheaply.
- `LineParser`: canonical `Record`s with inferred steps and counters, for streams.

Nothing read from a log is ever evaluated as code.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import orjson

from rldk_engine.ingest.metrics import canonical_map

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# Ray actor prefixes `(main_task pid=12)`, `(WorkerDict pid=3, ip=10.0.0.1)` and
# torchrun's `[rank3]:`, possibly several in a row.
_PREFIX = re.compile(
    r"^(?:\s*(?:\([A-Za-z_][\w.:-]*(?: pid=\d+)?(?:, ip=[\d.]+)?\)|\[(?:rank|RANK)\s*\d+\]:?|\[default\d+\]:?)\s*)+"
)
_PYDICT_PAIR = re.compile(
    r"""(['"])((?:(?!\1).)+)\1\s*:\s*([^,{}\[\]]+?)\s*(?=,|\}|$)"""
)
# `np.float64(0.5)`, `tensor(0.5, device='cuda:0')`, `float32(1e-3)` -> the number
_WRAPPED_NUMBER = re.compile(r"^[A-Za-z_][\w.]*\(\s*([^,()]+)")
_KV_PAIR = re.compile(r"(?:^|(?<=[\s,|;]))([A-Za-z_][\w/.\-]*)\s*=\s*([^\s,|;]+)")
_STEP_KEYS = ("step", "global_step", "iteration", "_step", "train/global_step")
_METRIC_MARKERS = ("{", ":", "=")
MAX_STEP = 2**62


def clean_line(text: str) -> str:
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
        text = _ANSI.sub("", text)
    text = text.lstrip()
    if text[:1] not in ("(", "["):
        return None
    prefix = _PREFIX.match(text)
    if prefix is None:
        return None
    parts = re.findall(r"[(\[]([^)\]]*)[)\]]", prefix.group(0))
    return " ".join(p.strip() for p in parts) or None


def number_from_text(text: str) -> float | None:
    """A printed value as float (NaN for None/null); None when it is no number."""
    text = text.strip().strip("'\"")
    try:
        return float(text)
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("none", "null"):
        return math.nan
    wrapped = _WRAPPED_NUMBER.match(text)
    if wrapped:
        try:
            return float(wrapped.group(1))
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
        except OverflowError:
            return math.copysign(math.inf, value)  # type: ignore[arg-type]
    if value is None:
        return math.nan
    if kind is str:
        return number_from_text(value)  # type: ignore[arg-type]
    if isinstance(value, (int, float)):  # numpy scalars
        return float(value)
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


def loads_json(raw: bytes | str) -> object:
    """orjson, falling back to the stdlib for the NaN/Infinity tokens Python writes."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _json_metrics(text: str) -> dict[str, float] | None:
    try:
        row = loads_json(text)
    except (ValueError, RecursionError):
        return None
    if type(row) is not dict:
        return None
    if "data" in row or "metrics" in row:
        row = flatten_json_row(row)
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
    if not pairs or not text.startswith(pairs[0][0]):
        # only lines that *are* key=value lists, not prose that mentions one
        if not any(key in _STEP_KEYS for key, _ in pairs):
            return None
    out: dict[str, float] = {}
    for key, raw in pairs:
        number = number_from_text(raw)
        if number is not None:
            out[key] = number
    return out or None


def parse_line(text: str) -> dict[str, float] | None:
    """One log line -> {source key: value}, or None when it carries no metrics."""
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
            if brace == 0 or text[brace - 1] == "]":
                return _pydict_metrics(body)
            return None
        if brace == 0:
            return _json_metrics(body)
    if text.startswith("step:"):
        return _verl_metrics(text)
    if "=" in text:
        return _kv_metrics(text)
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


def step_of(raw: dict[str, float]) -> tuple[float | None, dict[str, float]]:
    """Canonicalise one raw dict: (step or None, {canonical name: value})."""
    names, negated = _schema_plan(tuple(raw))
    metrics = dict(zip(names, raw.values()))
    for position in negated:
        metrics[names[position]] = -metrics[names[position]]
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


class LineParser:
    """Feed lines one at a time; get canonical Records with steps filled in."""

    MAX_REJECTIONS = 100

    def __init__(self) -> None:
        self.n_lines = 0
        self.n_records = 0
        self.n_rejected = 0
        self.rejections: list[str] = []
        self.last_step: int | None = None
        # ranks count their own steps: rank1's first stepless line is step 0, not last + 1
        self._last_by_origin: dict[str, int] = {}

    def feed(self, line: str) -> Record | None:
        self.n_lines += 1
        raw = parse_line(line)
        if raw is None:
            if looks_like_metrics(line):
                self.reject("looks like a metric line but could not be parsed")
            return None
        step, metrics = step_of(raw)
        origin = line_origin(line) if line[:1] in ("(", "[", " ", "\x1b") else None
        previous = self.last_step if origin is None else self._last_by_origin.get(origin)
        if step is not None and abs(step) < MAX_STEP:  # NaN/inf/1e30 are no usable step
            current = int(step)
        else:
            current = 0 if previous is None else previous + 1
        if origin is not None:
            self._last_by_origin[origin] = current
        self.last_step = current
        self.n_records += 1
        return Record(current, metrics, origin)

    def reject(self, reason: str) -> None:
        self.n_rejected += 1
        if len(self.rejections) < self.MAX_REJECTIONS:
            self.rejections.append(f"line {self.n_lines}: {reason}")
