"""File readers: every stored log format -> `Run`, streamed in one pass.

Formats are detected from content (a sample of the first lines), never trusted from
the file name alone, and can be forced with `fmt=`. gzip is transparent. A directory
expands to one run per log file (TensorBoard: one run per folder of event files).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from rldk_engine.errors import InputError, describe_os_error
from rldk_engine.ingest.parse import (
    MAX_LINE_CHARS,
    SUMMARY_KEYS,
    LineParser,
    clean_line,
    event_row,
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
    "events",
)
_SAMPLE_BYTES = 256 * 1024
_SAMPLE_LINES = 400
_GZIP_MAGIC = b"\x1f\x8b"
# Bounds that keep memory flat on hostile input (issue 16): a line longer than
# MAX_LINE_BYTES is cut there (the rest counted, never held); a gzip stream may expand to
# GZIP_MAX_RATIO times its size, and at least GZIP_MIN_LIMIT bytes; a JSON document
# (trainer_state.json) is read whole only up to MAX_DOCUMENT_BYTES.
MAX_LINE_BYTES = MAX_LINE_CHARS
GZIP_MAX_RATIO = 100
GZIP_MIN_LIMIT = 256 << 20
MAX_DOCUMENT_BYTES = 512 << 20
_BLOCK_BYTES = 1 << 18
_BLANK_RUNS = re.compile(rb"\n{3,}")
# Files in a log folder that are never logs: configs, code, media, checkpoints.
_NOT_LOGS = {
    ".md", ".rst", ".py", ".pyc", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini",
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".html", ".pt", ".pth", ".bin",
    ".safetensors", ".ckpt", ".pkl", ".pickle", ".npz", ".npy", ".lock", ".whl", ".zip",
}
# Side files that run folders carry next to their logs (fixture labels, configs), and the
# model/tokenizer/config JSON files of a Hugging Face output_dir: skipped silently.
_NOT_LOG_NAMES = {
    "labels.json", "label.json", "config.json", "status.json", "alerts.jsonl", "control.jsonl",
    "monitor.log",  # a monitor run folder: run.jsonl already holds its canonical rows
    "index.json",  # the original kit's per-run metadata beside run.jsonl
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "vocab.json", "added_tokens.json", "adapter_config.json",
    "preprocessor_config.json", "chat_template.json", "training_args.json",
    "all_results.json", "train_results.json", "eval_results.json", "scheduler.json",
    "rng_state.json", "merges.txt", "vocab.txt", "README.md", "LICENSE",
    "params.json", "result.json.lock", "experiment_state.json", "wandb-metadata.json",
    "requirements.txt", "conda-environment.yaml", "PROVENANCE.md",
}
_NOT_LOG_SUFFIXES = (".safetensors.index.json", ".bin.index.json", ".model", ".tiktoken")


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


def refuse_special(path: str) -> None:
    """FIFOs, sockets and devices would block a read (or never end): refused up front."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, describe_os_error(exc)) from None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise InputError(path, f"is {kind}, not a regular file (refused: reading it could block); "
                     "pipe a live stream to `rldk-engine monitor -` instead")


class GzipTooLarge(Exception):
    pass


class _LimitedGzip(gzip.GzipFile):
    """A GzipFile that stops once it has produced more than `limit` bytes (gzip bombs)."""

    limit = GZIP_MIN_LIMIT
    produced = 0

    def read(self, size=-1):
        data = super().read(size if size is not None and size >= 0 else _BLOCK_BYTES)
        self.produced += len(data)
        if self.produced > self.limit:
            raise GzipTooLarge(self.limit)
        return data

    def read1(self, size=-1):
        data = super().read1(size if size is not None and size >= 0 else _BLOCK_BYTES)
        self.produced += len(data)
        if self.produced > self.limit:
            raise GzipTooLarge(self.limit)
        return data

    def readline(self, size=-1):
        data = super().readline(size if size is not None and size >= 0 else MAX_LINE_BYTES)
        self.produced += len(data)
        if self.produced > self.limit:
            raise GzipTooLarge(self.limit)
        return data


def gzip_limit(compressed_size: int) -> int:
    return max(GZIP_MIN_LIMIT, GZIP_MAX_RATIO * compressed_size)


def open_binary(path: str):
    """Open a log for reading bytes; gzip is detected by its magic number and streamed
    with an expansion limit (`GzipTooLarge` past it)."""
    refuse_special(path)
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
        stream = _LimitedGzip(fileobj=handle, mode="rb")
        stream.limit = gzip_limit(os.fstat(handle.fileno()).st_size)
        return stream
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
            except (EOFError, zlib.error, gzip.BadGzipFile, GzipTooLarge) as exc:
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
        if text.startswith('{"') and parse_line(text) is not None:
            return "events" if _is_event_line(text) else "jsonl"
        return "dict"
    if text.startswith("step:") and " - " in text:
        return "verl_console"
    if parse_line(text) is not None:
        return "stdout"
    return "other"


def _is_event_line(text: str) -> bool:
    if '"name"' not in text or '"value"' not in text:
        return False
    try:
        row = loads_json(text)
    except (ValueError, RecursionError):
        return False
    return type(row) is dict and event_row(row) is not None


def detect_format(path: str, sample: bytes | None = None) -> str:
    """Guess the format of one file from its first lines that carry data (progress bars,
    banners and warnings before the metrics do not decide it)."""
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
    table = find_table_header(lines)
    if table is not None:
        return "tsv" if table[1] == "\t" else "csv"
    counts: dict[str, int] = {}
    for line in lines:
        kind = _classify_line(line)
        counts[kind] = counts.get(kind, 0) + 1
    metric_kinds = {k: v for k, v in counts.items() if k in ("jsonl", "events", "verl_console", "stdout", "dict")}
    if not metric_kinds:
        return "stdout"  # maybe metrics come later (SB3 tables); the reader reports if none do
    if counts.get("verl_console"):
        return "verl_console"
    noise = counts.get("other", 0) + counts.get("dict", 0) + counts.get("stdout", 0)
    if counts.get("events") and not counts.get("jsonl") and noise == 0:
        return "events"
    if counts.get("jsonl") and noise == 0 and not counts.get("events"):
        return "jsonl"
    return "stdout"


def _header_fields(line: str) -> tuple[list[str], str] | None:
    header = line.strip()
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    if header.count(delimiter) < 1 or header.startswith(("{", "[")):
        return None
    if any(ch in header for ch in ("{", "=", "|")) or header.startswith("step:"):
        return None  # dicts, key=value lines and tqdm bars (`10%|###| 1/10 [...]`) are no headers
    try:
        fields = next(csv.reader([header], delimiter=delimiter))
    except csv.Error:
        return None
    if not all(f.strip() for f in fields) or any(number_from_text(f) is not None for f in fields):
        return None  # a header row has names, every one of them, and no numbers
    return fields, delimiter


def _is_numeric_row(line: str, width: int, delimiter: str) -> bool:
    try:
        cells = next(csv.reader([line.strip()], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return False
    if len(cells) != width:
        return False
    values = [c for c in cells if c.strip()]
    # most filled cells numbers: prose with a thousands comma ("30,000 examples") is no row
    return bool(values) and 2 * sum(number_from_text(c) is not None for c in values) > len(values)


def find_table_header(lines: list[str]) -> tuple[int, str] | None:
    """(index of the header line, delimiter) when the first line that carries data is a
    CSV/TSV header followed by a numeric row; None otherwise. Lines before it that are
    blank, progress bars, banners or warnings (no delimiter, or not followed by a row)
    are skipped, so a tqdm bar on line 1 never makes a log CSV."""
    for index, line in enumerate(lines[:50]):
        text = line.strip()
        if not text:
            continue
        header = _header_fields(text)
        if header is None:
            if text.startswith(("{", "step:")) or parse_line(text) is not None:
                return None  # the first data line is a metric line, not a table
            continue
        fields, delimiter = header
        following = next((x for x in lines[index + 1:index + 4] if x.strip()), None)
        if following is not None and _is_numeric_row(following, len(fields), delimiter):
            return index, delimiter
        if following is None and index == 0 and len(lines) == 1:
            return index, delimiter  # a header-only CSV: read, then "no metric rows"
    return None


# ---------------------------------------------------------------- per-format readers


def _iter_lines(path: str, builder: ColumnBuilder) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a possibly gzipped file, each line at most
    MAX_LINE_BYTES (longer ones cut, the excess counted); a cut gzip is noted, not fatal."""
    number = 0
    with open_binary(path) as handle:
        for lines in _line_blocks(handle, builder):
            for raw in lines:
                number += 1
                yield number, raw


def _line_blocks(handle, builder: ColumnBuilder) -> Iterator[list[bytes]]:
    """Lists of complete lines (without the newline); see `_byte_blocks`."""
    for block, _ in _byte_blocks(handle, builder):
        yield block.split(b"\n")


def _byte_blocks(handle, builder: ColumnBuilder) -> Iterator[tuple[bytes, int]]:
    """(block, number of lines): complete lines joined by newlines, read in bounded
    blocks. A line longer than MAX_LINE_BYTES is cut there and the rest is skipped
    without being held (counted in the run's errors); a gzip stream cut short or
    expanding past its limit still hands over every line before that point, then notes it."""
    # read1: one decompression step at a time for gzip, so a stream cut short still hands
    # over everything before the cut (read() would drop a partly filled block)
    read = handle.read1 if isinstance(handle, gzip.GzipFile) else handle.read
    partial = b""
    dropping = 0  # bytes of an over-long line being skipped
    done = 0
    collapsed = 0
    try:
        while True:
            chunk = read(_BLOCK_BYTES)
            if not chunk:
                break
            if chunk.count(b"\n") > len(chunk) >> 3 and b"\n\n\n" in chunk:
                # a flood of blank lines (a gzip bomb of newlines): runs of them become
                # one, so they cost bytes, not millions of Python objects
                before = len(chunk)
                chunk = _BLANK_RUNS.sub(b"\n\n", chunk)
                collapsed += before - len(chunk)
            if dropping:
                cut = chunk.find(b"\n")
                if cut < 0:
                    dropping += len(chunk)
                    continue
                builder.skip(f"line {done}: longer than {MAX_LINE_BYTES} bytes; cut there "
                             f"({dropping + cut} bytes not read)")
                dropping = 0
                chunk = chunk[cut + 1:]
            data = partial + chunk if partial else chunk
            last = data.rfind(b"\n")
            if last < 0:
                partial = data
            else:
                block, partial = data[:last], data[last + 1:]
                lines = block.count(b"\n") + 1
                done += lines
                yield block, lines
            if len(partial) > MAX_LINE_BYTES:
                done += 1
                yield partial[:MAX_LINE_BYTES], 1
                dropping = len(partial) - MAX_LINE_BYTES
                partial = b""
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if partial:
            done += 1
            yield partial, 1
            partial = b""
        builder.skip(f"line {done + 1}: gzip stream ends early ({exc}); read {done} lines")
    except GzipTooLarge as exc:
        partial = b""
        builder.skip(f"gzip expands past {exc.args[0] >> 20} MB (more than {GZIP_MAX_RATIO}x its size); "
                     f"stopped after {done} lines")
    if collapsed:
        builder.skip(f"runs of blank lines ({collapsed} bytes) collapsed to one; later line numbers "
                     "count each run as one line")
    if dropping:
        builder.skip(f"line {done}: longer than {MAX_LINE_BYTES} bytes and no newline; cut there "
                     f"({dropping} bytes not read)")
    elif partial:
        yield partial, 1


def _read_jsonl(path: str, builder: ColumnBuilder) -> None:
    # The hot path of offline ingest: one orjson call per block of lines (the block's
    # newlines turned into commas: no per-line objects); a block holding anything unusual
    # (a bad or blank line, NaN tokens, a non-object) is redone line by line, with line
    # numbers, by `_json_rows`.
    loads = orjson.loads
    done = 0  # lines of the blocks handed over so far
    with open_binary(path) as handle:
        for block, n_lines in _byte_blocks(handle, builder):
            try:
                rows = loads(b"[" + block.replace(b"\n", b",") + b"]")
                clean = len(rows) == n_lines and set(map(type, rows)) == {dict}
            except orjson.JSONDecodeError:
                clean = False
            builder.extend(rows if clean else _json_rows(block.split(b"\n"), done, builder))
            done += n_lines


def _read_events(path: str, builder: ColumnBuilder) -> None:
    """Long-format events, one metric per line: pivoted to one row per step (the run's
    merge-by-step joins the events of a step)."""
    for number, raw in _iter_lines(path, builder):
        if not raw.strip(b"\x00 \t\r\n"):
            continue
        try:
            row = loads_json(raw)
        except (ValueError, RecursionError):
            builder.skip(f"line {number}: not valid JSON (skipped)")
            continue
        if type(row) is not dict:
            builder.skip(f"line {number}: JSON {type(row).__name__}, not an object (skipped)")
            continue
        event = event_row(row)
        builder.add(event if event is not None else flatten_json_row(row))


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
    """Python's json writes NaN/Infinity tokens that orjson refuses, and integers beyond
    64 bits (±inf past 1e308); blank lines are fine."""
    try:
        return loads_json(raw)
    except (ValueError, RecursionError):
        if raw.strip(b"\x00 \t\r\n"):
            builder.skip(f"line {number}: not valid JSON (skipped)")
        return None


def _peek_lines(path: str, builder: ColumnBuilder) -> Iterator[str]:
    scratch = ColumnBuilder()  # problems are reported once, by the real pass
    for _, raw in _iter_lines(path, scratch):
        yield raw.decode("utf-8", errors="replace").replace("\x00", "")


def _read_text(path: str, builder: ColumnBuilder) -> None:
    """Trainer stdout: any mix of JSON, Python-dict, verl, key=value lines, SB3 tables,
    RLlib result blocks and console summaries, read by the same LineParser as the
    monitor (so a captured stdout file gives the rows the live run gave)."""
    parser = LineParser()
    for number, raw in _iter_lines(path, builder):
        line = raw.decode("utf-8", errors="replace")
        record = parser.feed(line)
        if record is not None:
            builder.add({"step": record.step, **record.metrics})
        elif parser.last_kind == "rejected" and clean_line(line).startswith(("{\"", "step:")):
            builder.skip(f"line {number}: looks like a metric line but could not be parsed (skipped)")
    last = parser.finish()
    if last is not None:
        builder.add({"step": last.step, **last.metrics})


def _rows_of_document(path: str) -> list:
    with open_binary(path) as handle:
        try:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            raise InputError(path, f"corrupt gzip stream ({exc})") from None
        except GzipTooLarge as exc:
            raise InputError(path, f"gzip expands past {exc.args[0] >> 20} MB (a gzip bomb?); not read") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(path, f"JSON document larger than {MAX_DOCUMENT_BYTES >> 20} MB; not read")
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
    return any(key in row for key in SUMMARY_KEYS)


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
    # banners and progress bars before the header (the sniffer skipped them) are skipped
    # here too: the header is the line the sniffer found
    sample = [x for _, x in zip(range(_SAMPLE_LINES), _peek_lines(path, builder))]
    found = find_table_header(sample)
    if found is not None:
        for _ in range(found[0]):
            next(lines, None)
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
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
        from tensorboard.util import tensor_util
    except ImportError:
        first = next(iter(paths))
        raise InputError(
            first, "TensorBoard event file, but the 'tensorboard' extra is not installed "
            "(pip install 'rldk[tensorboard]')"
        ) from None
    by_step: dict[int, dict[str, float]] = {}
    for path in paths:
        reader = _TfRecords(path, masked_crc32c)
        with open_binary(path) as handle:
            try:
                for data in reader.records(handle):
                    try:
                        event = event_pb2.Event.FromString(data)
                    except Exception:  # a record whose CRC held but whose proto does not parse
                        reader.lost += 1
                        continue
                    if not event.HasField("summary"):
                        continue
                    row = by_step.setdefault(int(event.step), {})
                    for value in event.summary.value:
                        number = _tb_scalar(value, tensor_util)
                        if number is not None:
                            row[value.tag] = number
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                builder.skip(f"{path}: gzip stream ends early ({exc}); kept the {reader.n_read} records before the cut")
            except GzipTooLarge as exc:
                builder.skip(f"{path}: gzip expands past {exc.args[0] >> 20} MB; kept the {reader.n_read} records before")
        for problem in reader.problems:
            builder.skip(f"{path}: {problem}")
    for step in sorted(by_step):
        builder.add({"step": step, **by_step[step]})


class _TfRecords:
    """TFRecord framing (uint64 length, masked CRC32C of it, data, masked CRC32C of the
    data), read as a stream from any file object, so a .tfevents.gz is never unpacked to
    disk. A record whose data CRC fails is skipped and counted; a broken length header
    is resynchronised by scanning for the next valid header, and the gap is reported."""

    RESYNC_WINDOW = 1 << 20  # bytes scanned for the next valid header after a framing error
    CHECK_DATA_CRC_BELOW = 1 << 16  # scalar events are ~100 bytes; huge graph/image records are not checked

    def __init__(self, path: str, crc) -> None:
        self.path = path
        self.crc = crc
        self.n_read = 0
        self.lost = 0
        self.problems: list[str] = []
        self._offset = 0

    def records(self, handle) -> Iterator[bytes]:
        pending = b""  # bytes already read back after a resync
        while True:
            header = pending[:12]
            pending = pending[12:]
            if len(header) < 12:
                header += handle.read(12 - len(header))
            if not header:
                return
            if len(header) < 12:
                self._torn(len(header))
                return
            length, length_crc = struct.unpack("<QI", header)
            if self.crc(header[:8]) != length_crc or length > (1 << 31):
                resumed = self._resync(header + pending, handle)
                if resumed is None:
                    return
                pending = resumed
                continue
            need = length + 4
            body = pending[:need]
            pending = pending[need:]
            if len(body) < need:
                body += handle.read(need - len(body))
            if len(body) < need:
                self._torn(12 + len(body))
                return
            data, data_crc = body[:length], struct.unpack("<I", body[length:])[0]
            self._offset += 12 + need
            if length < self.CHECK_DATA_CRC_BELOW and self.crc(data) != data_crc:
                self.lost += 1
                self.problems.append(f"record at byte {self._offset - 12 - need}: CRC mismatch; 1 record lost (skipped)")
                continue
            self.n_read += 1
            yield data

    def _torn(self, size: int) -> None:
        self.lost += 1
        self.problems.append(f"last record cut short at byte {self._offset} ({size} bytes); 1 record lost")

    def _resync(self, buffer: bytes, handle) -> bytes | None:
        """After a broken length header: the bytes from the next valid header on, or None."""
        start = self._offset
        buffer += handle.read(self.RESYNC_WINDOW)
        for shift in range(1, len(buffer) - 11):
            length, length_crc = struct.unpack_from("<QI", buffer, shift)
            if length <= (1 << 31) and self.crc(buffer[shift:shift + 8]) == length_crc:
                self.lost += 1
                self._offset += shift
                self.problems.append(
                    f"framing error at byte {start}: {shift} bytes skipped to the next valid record; "
                    "at least 1 record lost")
                return buffer[shift:]
        rest = len(buffer)
        while chunk := handle.read(1 << 20):
            rest += len(chunk)
        self.lost += 1
        self.problems.append(
            f"framing error at byte {start}: no valid record in the {rest} bytes after it; "
            f"at least 1 record lost, {self.n_read} records kept")
        return None


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
    summary = wb.summary_row(path)
    if summary is None:
        raise InputError(path, "W&B run folder without a .wandb file, files/output.log or files/wandb-summary.json")
    builder.add(summary)


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
    refuse_special(path)
    fmt = fmt or ("wandb" if os.path.isdir(path) else detect_format(path))
    builder = ColumnBuilder()
    try:
        if fmt == "tensorboard":
            _read_tensorboard(source.paths, builder)
        elif fmt == "wandb":
            _read_wandb(path, builder)
        elif fmt == "jsonl":
            _read_jsonl(path, builder)
        elif fmt == "events":
            _read_events(path, builder)
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
        elif not _is_readable_kind(path, errors):
            continue
        elif os.path.isdir(path):
            found = list(_walk_runs(path, errors))
            if not found and not any(e.startswith(path) for e in errors):
                errors.append(f"{path}: directory holds no log files")
            sources.extend(found)
        else:
            sources.append(Source(run_id=os.path.basename(path), paths=(path,)))
    return sources, errors


def _is_readable_kind(path: str, errors: list[str]) -> bool:
    try:
        refuse_special(path)
    except InputError as exc:
        errors.append(str(exc))
        return False
    return True


def _is_side_file(name: str) -> bool:
    """Configs, tokenizers, model indexes and labels that live beside logs."""
    return (
        name.startswith(".")
        or name in _NOT_LOG_NAMES
        or Path(name).suffix.lower() in _NOT_LOGS
        or name.endswith(_NOT_LOG_SUFFIXES)
    )


def _latest_trainer_state(folder: str, dirs: list[str], files: list[str]) -> str | None:
    """A Hugging Face output_dir (checkpoint-N/trainer_state.json folders) is one run:
    the newest trainer_state.json (the top-level one when newer, else the highest N)."""
    checkpoints = []
    for name in dirs:
        head, _, number = name.partition("-")
        if head == "checkpoint" and number.isdigit():
            state = os.path.join(folder, name, "trainer_state.json")
            if os.path.isfile(state):
                checkpoints.append((int(number), state))
    if not checkpoints:
        return None
    latest = max(checkpoints)[1]
    top = os.path.join(folder, "trainer_state.json")
    if "trainer_state.json" in files:
        try:
            if os.path.getmtime(top) >= os.path.getmtime(latest):
                latest = top
        except OSError:
            pass
    return latest


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
        state = _latest_trainer_state(folder, dirs, files)
        if state is not None:
            # one run for the whole output_dir; its checkpoints hold copies of the history
            dirs[:] = [d for d in dirs if not d.startswith("checkpoint-")]
            files = [f for f in files if f != "trainer_state.json"]
            yield Source(run_id=_run_id(root, folder), paths=(state,))
        events: list[str] = []
        for name in sorted(files):
            full = os.path.join(folder, name)
            if _is_tfevents(name):
                events.append(full)
            elif not _is_side_file(name):
                if _is_readable_kind(full, errors):
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
