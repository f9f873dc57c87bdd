"""File readers: every stored log format -> `Run`, streamed in one pass.

Formats are detected from content (a sample of the first lines), never trusted from
the file name alone, and can be forced with `fmt=`. gzip is transparent. A directory
expands to one run per log file (TensorBoard: one run per folder of event files).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from rldk_engine.errors import InputError, describe_os_error
from rldk_engine.ingest.parse import (
    clean_line,
    flatten_json_row,
    loads_json,
    number_from_text,
    parse_line,
)
from rldk_engine.ingest.run import ColumnBuilder, Run

FORMATS = (
    "jsonl",
    "json_array",
    "hf_trainer_state",
    "csv",
    "tsv",
    "verl_console",
    "stdout",
    "tensorboard",
    "wandb",
)
_SAMPLE_BYTES = 256 * 1024
_SAMPLE_LINES = 400
_GZIP_MAGIC = b"\x1f\x8b"
# Files in a log folder that are never logs: configs, code, media, checkpoints.
_NOT_LOGS = {
    ".md", ".rst", ".py", ".pyc", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini",
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".html", ".pt", ".pth", ".bin",
    ".safetensors", ".ckpt", ".pkl", ".pickle", ".npz", ".npy", ".lock", ".whl", ".zip",
}
# Side files that run folders carry next to their logs (fixture labels, configs).
_NOT_LOG_NAMES = {
    "labels.json", "config.json", "status.json", "alerts.jsonl", "control.jsonl",
    "monitor.log",  # a monitor run folder: run.jsonl already holds its canonical rows
}


@dataclass(frozen=True)
class Source:
    """One run to read: a file, or the event files of one TensorBoard folder."""

    run_id: str
    paths: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.paths[0] if len(self.paths) == 1 else os.path.dirname(self.paths[0])


# ---------------------------------------------------------------- opening and sniffing


def _is_tfevents(path: str) -> bool:
    return "tfevents" in os.path.basename(path)


def open_binary(path: str):
    """Open a log for reading bytes; gzip is detected by its magic number."""
    try:
        handle = open(path, "rb")
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, describe_os_error(exc)) from None
    magic = handle.read(2)
    handle.seek(0)
    if magic == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if path.endswith(".gz"):
        handle.close()
        raise InputError(path, "named .gz but is not a gzip file")
    return handle


def _read_sample(path: str) -> bytes:
    """The first bytes of a log; a gzip cut short yields what it holds before the cut."""
    parts: list[bytes] = []
    size = 0
    with open_binary(path) as handle:
        while size < _SAMPLE_BYTES:
            try:
                part = handle.read(8192)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                if not parts:
                    raise InputError(path, f"corrupt gzip stream ({exc})") from None
                break
            if not part:
                break
            parts.append(part)
            size += len(part)
    return b"".join(parts)


def _is_binary(sample: bytes) -> bool:
    """Mostly control bytes -> not a text log (NUL runs inside text logs are fine)."""
    if not sample:
        return False
    text_like = sum(
        1 for b in sample[:8192] if b >= 0x20 or b in (0x09, 0x0A, 0x0D, 0x1B, 0x00)
    )
    if text_like < 0.85 * min(len(sample), 8192):
        return True
    stripped = sample[:8192].replace(b"\x00", b"")
    try:
        stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a cut multi-byte char at the end of the sample is fine; garbage is not
        return exc.start < len(stripped) - 4 and _mostly_invalid_utf8(stripped)
    return len(stripped) < 0.1 * min(len(sample), 8192)


def _mostly_invalid_utf8(data: bytes) -> bool:
    decoded = data.decode("utf-8", errors="replace")
    return decoded.count("\ufffd") > 0.1 * max(len(decoded), 1)


def _classify_line(line: str) -> str:
    text = clean_line(line)
    if not text:
        return "blank"
    if text.startswith("{"):
        return "jsonl" if text.startswith('{"') and parse_line(text) is not None else "dict"
    if text.startswith("step:") and " - " in text:
        return "verl_console"
    if parse_line(text) is not None:
        return "stdout"
    return "other"


def detect_format(path: str, sample: bytes | None = None) -> str:
    """Guess the format of one file from its first bytes."""
    if _is_tfevents(path):
        return "tensorboard"
    if path.endswith(".wandb"):
        return "wandb"
    if sample is None:
        sample = _read_sample(path)
    if not sample.strip(b"\x00 \t\r\n"):
        raise InputError(path, "empty file")
    if _is_binary(sample):
        raise InputError(path, "binary file, not a text log")
    text = sample.decode("utf-8", errors="replace").replace("\x00", "")
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return "json_array"
    first_line = head.split("\n", 1)[0].strip()
    if head.startswith("{") and (first_line == "{" or '"log_history"' in head[:65536]):
        return "hf_trainer_state" if '"log_history"' in text else "json_array"
    lines = head.splitlines()[:_SAMPLE_LINES]
    if len(lines) > 1 and _looks_tabular(lines):
        return "tsv" if lines[0].count("\t") > lines[0].count(",") else "csv"
    counts: dict[str, int] = {}
    for line in lines:
        kind = _classify_line(line)
        counts[kind] = counts.get(kind, 0) + 1
    metric_kinds = {k: v for k, v in counts.items() if k in ("jsonl", "verl_console", "stdout", "dict")}
    if not metric_kinds:
        return "stdout"  # maybe metrics come later; the reader reports if none do
    if counts.get("verl_console"):
        return "verl_console"
    noise = counts.get("other", 0) + counts.get("dict", 0) + counts.get("stdout", 0)
    if counts.get("jsonl") and noise == 0:
        return "jsonl"
    return "stdout"


def _looks_tabular(lines: list[str]) -> bool:
    header = lines[0].strip()
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    if header.count(delimiter) < 1 or header.startswith(("{", "[")):
        return False
    fields = next(csv.reader([header], delimiter=delimiter))
    if any(number_from_text(f) is not None for f in fields if f.strip()):
        return False  # a header row has names, not numbers
    return all(ch not in header for ch in ("{", "=")) and not header.startswith("step:")


# ---------------------------------------------------------------- per-format readers


def _iter_lines(path: str, builder: ColumnBuilder) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a possibly gzipped file; a cut gzip is noted, not fatal."""
    number = 0
    with open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, 1):
                yield number, raw
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            builder.skip(f"line {number + 1}: gzip stream ends early ({exc}); read {number} lines")


_JSONL_CHUNK_BYTES = 1 << 18  # bytes of lines parsed per orjson call (cache-sized)
_GZIP_CHUNK_LINES = 2048


def _line_chunks(handle) -> Iterator[list[bytes]]:
    """Lists of raw lines. Plain files: `readlines(hint)`. gzip: line by line, so that a
    stream cut short still hands over every line before the cut, then raises."""
    if not isinstance(handle, gzip.GzipFile):
        while lines := handle.readlines(_JSONL_CHUNK_BYTES):
            yield lines
        return
    chunk: list[bytes] = []
    try:
        for line in handle:
            chunk.append(line)
            if len(chunk) >= _GZIP_CHUNK_LINES:
                yield chunk
                chunk = []
    except (EOFError, zlib.error, gzip.BadGzipFile):
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _read_jsonl(path: str, builder: ColumnBuilder) -> None:
    # The hot path of offline ingest: one orjson call per chunk of lines;
    # a chunk holding anything unusual (a bad line, NaN tokens, a non-object) is redone
    # line by line, with line numbers, by `_json_rows`.
    loads = orjson.loads
    done = 0  # lines of the chunks handed over so far
    with open_binary(path) as handle:
        try:
            for lines in _line_chunks(handle):
                try:
                    # the chunk as one JSON array: one parser call; a chunk whose lines do
                    # not each hold exactly one object fails these checks and goes slowly
                    rows = loads(b"[" + b",".join(lines) + b"]")
                    clean = len(rows) == len(lines) and set(map(type, rows)) == {dict}
                except orjson.JSONDecodeError:
                    clean = False
                builder.extend(rows if clean else _json_rows(lines, done, builder))
                done += len(lines)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            builder.skip(f"line {done + 1}: gzip stream ends early ({exc}); read {done} lines")


def _json_rows(lines: list[bytes], done: int, builder: ColumnBuilder) -> list[dict]:
    rows = []
    for number, raw in enumerate(lines, done + 1):
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            row = _lenient_json_line(raw, number, builder)
            if row is None:
                continue
        if type(row) is dict:
            rows.append(row)
        else:
            builder.skip(f"line {number}: JSON {type(row).__name__}, not an object (skipped)")
    return rows


def _lenient_json_line(raw: bytes, number: int, builder: ColumnBuilder) -> object | None:
    """Python's json writes NaN/Infinity tokens that orjson refuses; blank lines are fine."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        if raw.strip(b"\x00 \t\r\n"):
            builder.skip(f"line {number}: not valid JSON (skipped)")
        return None


def _read_text(path: str, builder: ColumnBuilder) -> None:
    """Trainer stdout: any mix of JSON, Python-dict, verl and key=value lines."""
    for number, raw in _iter_lines(path, builder):
        line = raw.decode("utf-8", errors="replace")
        metrics = parse_line(line)
        if metrics is not None:
            builder.add(metrics)
        elif clean_line(line).startswith(("{\"", "step:")):
            builder.skip(f"line {number}: looks like a metric line but could not be parsed (skipped)")


def _rows_of_document(path: str) -> list:
    with open_binary(path) as handle:
        try:
            data = handle.read()
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            raise InputError(path, f"corrupt gzip stream ({exc})") from None
    try:
        doc = loads_json(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(path, f"not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if isinstance(doc, dict) and isinstance(doc.get("log_history"), list):
        return doc["log_history"]
    if isinstance(doc, list):
        return doc
    raise InputError(path, "JSON document without a 'log_history' list or a list of rows")


def _is_summary_row(row: dict) -> bool:
    """HF's last log_history entry summarises training; it is not a step."""
    return "train_runtime" in row or "total_flos" in row


def _read_json_document(path: str, builder: ColumnBuilder) -> None:
    for index, row in enumerate(_rows_of_document(path)):
        if not isinstance(row, dict):
            builder.skip(f"row {index}: {type(row).__name__}, not an object (skipped)")
        elif _is_summary_row(row):
            continue
        else:
            builder.add(flatten_json_row(row))


def _read_table(path: str, builder: ColumnBuilder, delimiter: str) -> None:
    lines = (raw.decode("utf-8", errors="replace").replace("\x00", "") for _, raw in _iter_lines(path, builder))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(path, "empty file") from None
    except csv.Error as exc:
        raise InputError(path, f"unreadable header ({exc})") from None
    width = len(header)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            builder.skip(f"line {reader.line_num}: {exc} (skipped)")
            continue
        if not cells or not any(c.strip() for c in cells):
            continue
        if len(cells) != width:
            builder.skip(f"line {reader.line_num}: {len(cells)} fields, header has {width} (skipped)")
            continue
        row = {}
        for key, cell in zip(header, cells):
            if cell.strip():  # a blank cell is missing, not NaN
                number = number_from_text(cell)
                if number is not None:
                    row[key] = number
        builder.add(row)


def _read_tensorboard(paths: Iterable[str], builder: ColumnBuilder) -> None:
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        first = next(iter(paths))
        raise InputError(
            first, "TensorBoard event file, but the 'tensorboard' extra is not installed "
            "(pip install 'rldk[tensorboard]')"
        ) from None
    by_step: dict[int, dict[str, float]] = {}
    for path in paths:
        try:
            for event in _tb_events(path, EventFileLoader):
                if not event.HasField("summary"):
                    continue
                row = by_step.setdefault(int(event.step), {})
                for value in event.summary.value:
                    number = _tb_scalar(value, tensor_util)
                    if number is not None:
                        row[value.tag] = number
        except Exception as exc:  # the reader raises many types on corrupt records
            builder.skip(f"{path}: event file ends in a corrupt record ({type(exc).__name__}); kept what was read")
    for step in sorted(by_step):
        builder.add({"step": step, **by_step[step]})


def _tb_events(path: str, loader_class) -> Iterator:
    """Events of one file. TensorBoard's loader reads plain files only, so a gzipped event
    file (SPEC: gzip of any input) is unpacked to a temporary file first; a gzip cut short
    keeps what it holds and the loader stops at the torn record."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    if not gzipped:
        yield from loader_class(path).Load()
        return
    cut = False
    with tempfile.NamedTemporaryFile(suffix=".tfevents") as plain:
        with open_binary(path) as handle:
            try:
                shutil.copyfileobj(handle, plain)
            except (EOFError, zlib.error, gzip.BadGzipFile):
                cut = True  # the loader still reads the whole records before the cut
        plain.flush()
        yield from loader_class(plain.name).Load()
    if cut:
        raise EOFError("gzip stream ends early")


def _tb_scalar(value, tensor_util) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception:
            return None
        if array.size == 1 and array.dtype.kind in "fiub":
            return float(array.reshape(()))
    return None


def _read_wandb(path: str, builder: ColumnBuilder) -> None:
    """A W&B run folder (or its .wandb file): the history; else output.log, else the summary."""
    from rldk_engine.ingest import wandb_history as wb

    history = wb.history_file(path) if os.path.isdir(path) else path
    if history is not None:
        try:
            for row in wb.history_rows(history, builder.skip):
                builder.add(row)
        except wb.WandbError as exc:
            raise InputError(history, str(exc)) from None
        return
    output = os.path.join(path, "files", "output.log")
    if os.path.isfile(output):
        _read_text(output, builder)
        return
    row = wb.summary_row(path)
    if row is None:
        raise InputError(path, "W&B run folder without a .wandb file, files/output.log or files/wandb-summary.json")
    builder.add(row)


# ---------------------------------------------------------------- public API


def read_run(source: Source | str | os.PathLike, fmt: str | None = None) -> Run:
    """Read one run; raises InputError with a one-line reason when nothing is readable."""
    if not isinstance(source, Source):
        path = str(source)
        if os.path.isdir(path):
            found, errors = discover_sources([path])
            if len(found) != 1:
                raise InputError(path, errors[0].split(": ", 1)[-1] if errors else f"holds {len(found)} runs, not one")
            source = found[0]
        else:
            source = Source(run_id=os.path.basename(path), paths=(path,))
    path = source.paths[0]
    if fmt is not None and fmt not in FORMATS:
        raise InputError(path, f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    fmt = fmt or ("wandb" if os.path.isdir(path) else detect_format(path))
    builder = ColumnBuilder()
    try:
        if fmt == "tensorboard":
            _read_tensorboard(source.paths, builder)
        elif fmt == "wandb":
            _read_wandb(path, builder)
        elif fmt == "jsonl":
            _read_jsonl(path, builder)
        elif fmt in ("hf_trainer_state", "json_array"):
            _read_json_document(path, builder)
        elif fmt in ("csv", "tsv"):
            _read_table(path, builder, "\t" if fmt == "tsv" else ",")
        else:
            _read_text(path, builder)
    except OSError as exc:
        raise InputError(path, describe_os_error(exc)) from None
    except MemoryError:
        raise InputError(path, "too large to hold in memory") from None
    builder.flush()
    if builder.n_rows == 0:
        detail = f"; {builder.n_skipped} lines skipped, first: {builder.errors[0]}" if builder.errors else ""
        raise InputError(path, f"no metric rows found (read as {fmt}){detail}")
    return builder.build(run_id=source.run_id, source=source.path, format=fmt)


def discover_sources(paths: Iterable[str | os.PathLike]) -> tuple[list[Source], list[str]]:
    """Expand files and directories into runs; problems become one-line error strings."""
    sources: list[Source] = []
    errors: list[str] = []
    for given in paths:
        path = str(given)
        if not os.path.exists(path):
            errors.append(f"{path}: no such file or directory")
        elif os.path.isdir(path):
            found = list(_walk_runs(path, errors))
            if not found and not any(e.startswith(path) for e in errors):
                errors.append(f"{path}: directory holds no log files")
            sources.extend(found)
        else:
            sources.append(Source(run_id=os.path.basename(path), paths=(path,)))
    return sources, errors


def _walk_runs(root: str, errors: list[str]) -> Iterator[Source]:
    def on_error(exc: OSError) -> None:
        errors.append(f"{exc.filename}: {describe_os_error(exc)}")

    from rldk_engine.ingest.wandb_history import is_wandb_run_dir

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if is_wandb_run_dir(folder, files):  # a W&B run folder is one run, read whole
            dirs[:] = []
            yield Source(run_id=_run_id(root, folder), paths=(folder,))
            continue
        if os.path.basename(os.path.normpath(folder)) == "wandb":  # W&B's own debug logs hold no metrics
            files = [f for f in files if not f.startswith("debug")]
        events: list[str] = []
        for name in sorted(files):
            full = os.path.join(folder, name)
            if _is_tfevents(name):
                events.append(full)
            elif not (name.startswith(".") or name in _NOT_LOG_NAMES or Path(name).suffix.lower() in _NOT_LOGS):
                yield Source(run_id=_run_id(root, full), paths=(full,))
        if events:
            # a folder of event files is one run; named after the file when it is alone
            name = os.path.basename(events[0]) if len(events) == 1 and folder == root else _run_id(root, folder)
            yield Source(run_id=name, paths=tuple(events))


def _run_id(root: str, path: str) -> str:
    rel = os.path.relpath(path, root)
    return os.path.basename(os.path.abspath(root)) if rel == "." else rel


def load_runs(paths: Iterable[str | os.PathLike], fmt: str | None = None) -> tuple[list[Run], list[str]]:
    """Every readable run under `paths`, and one error line per unreadable one."""
    sources, errors = discover_sources(paths)
    runs: list[Run] = []
    for source in sources:
        try:
            runs.append(read_run(source, fmt=fmt))
        except InputError as exc:
            errors.append(str(exc))
    return runs, errors
