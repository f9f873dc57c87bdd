"""W&B run folders read offline (optional extra `wandb`).

A run folder (`wandb/run-*/` or `wandb/offline-run-*/`) keeps its history in
`run-<id>.wandb`: W&B's transaction log, a LevelDB-style log of 32 KiB blocks whose
chunks carry serialized `wandb.proto.wandb_internal_pb2.Record`s. Current wandb releases
read it from Go only, so the framing is walked here (a few lines, CRC-checked) and each
record is decoded with wandb's own protobuf classes. Only history rows are used.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator

from rldk_engine.errors import missing_extra_message
from rldk_engine.ingest.parse import parse_int

HEADER = struct.Struct("<4sHB")  # ident ":W&B", magic 0xBEE1, version 0
HEADER_IDENT = b":W&B"
HEADER_MAGIC = 0xBEE1
CHUNK = struct.Struct("<IHB")  # crc32 (seeded with the type byte), length, type
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# W&B bookkeeping keys: wall time is no training metric; `_step` is the step.
_SKIP_KEYS = frozenset({"_timestamp", "_runtime"})


class WandbError(Exception):
    """The .wandb file cannot be read at all (reason in the message)."""


def is_wandb_run_dir(folder: str, files: list[str] | None = None) -> bool:
    """A W&B run folder: `run-*` / `offline-run-*` with a .wandb file or files/*."""
    name = os.path.basename(os.path.normpath(folder))
    if not name.startswith(("run-", "offline-run-")):
        return False
    if files is None:
        try:
            files = os.listdir(folder)
        except OSError:
            return False
    if any(f.endswith(".wandb") for f in files):
        return True
    return any(os.path.isfile(os.path.join(folder, "files", f)) for f in ("wandb-summary.json", "output.log"))


def history_file(folder: str) -> str | None:
    found = sorted(glob.glob(os.path.join(glob.escape(folder), "*.wandb")))
    return found[0] if found else None


def _record_class():
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise WandbError(missing_extra_message("wandb", "a W&B .wandb history file")) from None
    # the generated protobuf module builds its message classes at import time (no .pyi)
    return wandb_internal_pb2.Record  # type: ignore[attr-defined]


def _payloads(data: bytes, skip: Callable[[str], None]) -> Iterator[bytes]:
    """The records of a W&B transaction log; a torn or corrupt tail is noted and ends it."""
    if len(data) < HEADER.size:
        raise WandbError("too short for a W&B history file")
    ident, magic, _version = HEADER.unpack_from(data)
    if ident != HEADER_IDENT or magic != HEADER_MAGIC:
        raise WandbError("not a W&B history file (bad header)")
    pos = HEADER.size
    parts: list[bytes] = []
    while pos < len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK.size:  # block trailer: zero padding
            pos += room
            continue
        if pos + CHUNK.size > len(data):
            skip(f"byte {pos}: history ends inside a record header (run still writing or killed)")
            return
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if crc == 0 and length == 0 and kind == 0:  # preallocated zeros past the last record
            return
        body = data[pos + CHUNK.size : pos + CHUNK.size + length]
        if len(body) < length:
            skip(f"byte {pos}: history ends inside a record (run still writing or killed)")
            return
        if zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            skip(f"byte {pos}: corrupt history record (checksum); kept the records before it")
            return
        pos += CHUNK.size + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            parts = [body]
        elif kind == MIDDLE and parts:
            parts.append(body)
        elif kind == LAST and parts:
            parts.append(body)
            yield b"".join(parts)
            parts = []


def history_rows(path: str, skip: Callable[[str], None]) -> Iterator[dict[str, object]]:
    """Raw rows ({key: decoded JSON value}, `_step` included) of one .wandb file."""
    record_class = _record_class()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise WandbError(exc.strerror or str(exc)) from None
    for index, payload in enumerate(_payloads(data, skip)):
        record = record_class()
        try:
            record.ParseFromString(payload)
        except Exception:  # protobuf's DecodeError; the framing was fine, the body is not
            skip(f"record {index}: undecodable, skipped")
            continue
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, object] = {}
        for item in record.history.item:
            key = item.key or ".".join(item.nested_key)
            if key in _SKIP_KEYS:
                continue
            try:
                row[key] = json.loads(item.value_json, parse_int=parse_int)
            except (ValueError, RecursionError):
                continue
        if "_step" not in row and record.history.HasField("step"):
            row["_step"] = record.history.step.num
        yield row


def summary_row(folder: str) -> dict[str, object] | None:
    """files/wandb-summary.json as one row (the last logged values), flattened."""
    path = os.path.join(folder, "files", "wandb-summary.json")
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh, parse_int=parse_int)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    row: dict[str, object] = {}
    for key, value in doc.items():
        if key in _SKIP_KEYS or key == "_wandb":
            continue
        if isinstance(value, dict):  # nested logs, like history's dotted keys
            for inner, inner_value in value.items():
                row[f"{key}.{inner}"] = inner_value
        else:
            row[key] = value
    return row
