"""Trace formats, told apart by their content (or named with ``trace_format``).

A trace may be gzip, bz2 or xz compressed (told by its magic bytes, tuner.workload.formats.base).
``detect(path)`` reads the file's head: a JSON array, JSON lines or CSV, then the first
record's keys (or the CSV header) pick the format. ``read(path, name)`` yields the
records lazily; see each module for its fields.
"""
from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path

from serving.config.errors import ConfigError
from tuner.workload.formats.base import BLOCK_TOKENS, RawRecord, Skipped, TraceFormat, compression, open_bytes
from tuner.workload.formats.lengths import AzureCsv, BurstGptCsv, Mooncake
from tuner.workload.formats.sharegpt import ShareGPT
from tuner.workload.formats.text import Alpaca, ProjectLines, VllmCustom

__all__ = ["BLOCK_TOKENS", "FORMATS", "RawRecord", "Skipped", "TraceFormat", "compression", "detect", "read",
           "format_names"]

#: in sniffing order: the first whose ``sniff`` accepts the first record wins
FORMATS: dict[str, TraceFormat] = {f.name: f for f in (ShareGPT(), Alpaca(), Mooncake(), ProjectLines(),
                                                       VllmCustom(), AzureCsv(), BurstGptCsv())}
HEAD_BYTES = 1 << 16


def format_names() -> list[str]:
    return ["auto", *FORMATS]


def _head(path: Path) -> str:
    """The first bytes (decompressed) as text; binary data and non-UTF-8 bytes are refused here, in one line."""
    if not path.is_file():
        raise ConfigError("trace file not found", path)
    with open_bytes(path) as f:
        raw = f.read(HEAD_BYTES)
    if b"\x00" in raw:
        raise ConfigError("a text trace (JSON, JSON lines or CSV) must be given, found binary data", path)
    try:  # incremental: a character cut at the end of the head is not an error
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=len(raw) < HEAD_BYTES)
    except UnicodeDecodeError as err:
        raise ConfigError(f"UTF-8 text must hold, found undecodable bytes at byte {err.start}", path) from None
    if not text.strip():
        raise ConfigError("trace holds no requests (the file is empty)", path)
    return text


def container_of(path: Path) -> tuple[str, str]:
    text = _head(path).lstrip()
    return ("array" if text[0] == "[" else "lines" if text[0] == "{" else "csv"), text


def _first(container: str, text: str, path: Path):
    """The first record (a dict) or the CSV header (column names), from the head."""
    if container == "csv":
        import csv
        return next(csv.reader([text.splitlines()[0]]))
    start = text.index("{") if "{" in text else -1
    if start < 0:
        raise ConfigError("a JSON object must start the records, found none", path)
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
        return obj
    except json.JSONDecodeError:
        # the first record is longer than the head: its keys are still there to see
        return {k: None for k in ("conversations", "instruction", "input_length", "output_length", "prompt",
                                  "output_len") if f'"{k}"' in text}


def detect(path: str | Path) -> tuple[TraceFormat, str]:
    """(format, container) of the trace at ``path``."""
    path = Path(path)
    container, text = container_of(path)
    first = _first(container, text, path)
    for fmt in FORMATS.values():
        if container in fmt.containers and fmt.sniff(first):
            return fmt, container
    what = f"columns {first}" if container == "csv" else f"keys {sorted(first)}" if isinstance(first, dict) else \
        type(first).__name__
    raise ConfigError(f"a known trace format must hold (one of {', '.join(FORMATS)}), found {container} with "
                      f"{what}"[:400] + "; name the format with trace_format= (tune trace: --format)", path)


def read(path: str | Path, name: str = "auto") -> tuple[TraceFormat, Iterator[RawRecord | Skipped]]:
    """The format and a lazy iterator over the records of the trace at ``path``."""
    path = Path(path)
    if name == "auto":
        fmt, container = detect(path)
    else:
        if name not in FORMATS:
            raise ConfigError(f"trace_format must be one of {format_names()}, found {name!r}")
        fmt = FORMATS[name]
        container, _ = container_of(path)
        if container not in fmt.containers:
            raise ConfigError(f"trace_format={name} reads {' or '.join(fmt.containers)}, the file is {container}", path)
    return fmt, fmt.read(path, container)
