"""What every trace format yields, and the readers and field checks they share.

A format reads its file lazily, one ``RawRecord`` (or ``Skipped``) at a time, so a
million-record trace is never held whole. A record gives a prompt as text or as a token
count (then a prompt is synthesized, tuner.workload.synth), an output as text or as a
token count, and optionally its arrival time and the ids of its 512-token prompt blocks.
A bad record raises a ConfigError naming the file, the record and the field.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.config.errors import ConfigError

#: tokens per ``hash_ids`` block (Mooncake's and Dynamo's traces)
BLOCK_TOKENS = 512
#: the most tokens one request's prompt or output may have: above any model's context today (10M),
#: and a 1e12 in a trace is refused here instead of becoming a terabyte allocation later
MAX_TOKENS = 10_000_000
#: the latest arrival time a trace may give, in seconds (year 5138 as a POSIX time)
MAX_TIMESTAMP = 1e11

#: stdlib compressions, told by their magic bytes (never by the file's name)
CODECS = {"gzip": (b"\x1f\x8b", gzip.GzipFile), "bz2": (b"BZh", bz2.BZ2File), "xz": (b"\xfd7zXZ\x00", lzma.LZMAFile),
          "lzma": (b"\x5d\x00\x00", lzma.LZMAFile)}
#: compressions and archives Python's stdlib cannot stream: named in the refusal
UNREAD = {b"\x28\xb5\x2f\xfd": "zstd-compressed (decompress it first: zstd -d)",
          b"PK\x03\x04": "a zip archive (unzip it first)", b"\x04\x22\x4d\x18": "lz4-compressed (lz4 -d it first)"}


@dataclass(slots=True)
class RawRecord:
    where: str                          # "line 12", "record 3": for messages about this record
    prompt: str | None = None           # text; None: synthesize ``prompt_tokens`` tokens
    prompt_tokens: int | None = None
    output: str | None = None           # text whose token count is the output length
    output_tokens: int | None = None
    timestamp: float | None = None      # arrival, seconds (the trace's own clock)
    hash_ids: tuple[int, ...] = ()      # one id per BLOCK_TOKENS prompt tokens; equal ids = shared prefix


@dataclass(slots=True)
class Skipped:
    """A record the format leaves out by its own rule (counted, never an error)."""
    where: str
    reason: str


class TraceFormat:
    name: str = ""
    #: "lines" (JSON lines), "array" (one JSON array), "csv"; a family may read two containers
    containers: tuple[str, ...] = ()
    description: str = ""

    def sniff(self, first: dict[str, Any] | list[str]) -> bool:
        """Whether a first record (JSON object) or CSV header (column names) is this format's."""
        return False

    def read(self, path: Path, container: str) -> Iterator[RawRecord | Skipped]:
        raise NotImplementedError


def bad(path: Path, where: str, field: str | None, message: str) -> ConfigError:
    return ConfigError(message, path, f"{where}, field {field!r}" if field else where)


def compression(path: Path) -> str | None:
    """The stdlib compression the file is in (``gzip``, ``bz2``, ``xz``, ``lzma``), None for plain bytes."""
    with open(path, "rb") as f:
        magic = f.read(6)
    for magic_prefix, what in UNREAD.items():
        if magic.startswith(magic_prefix):
            raise ConfigError(f"a plain, gzip, bz2 or xz trace must be given, found {what}", path)
    return next((name for name, (m, _) in CODECS.items() if magic.startswith(m)), None)


class _Guarded(io.RawIOBase):
    """A decompressing stream whose errors (a cut or corrupt file) become one ConfigError line."""

    def __init__(self, inner, codec: str, path: Path):
        self.inner, self.codec, self.path = inner, codec, path

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            return self.inner.readinto(b)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as err:
            raise ConfigError(f"{self.codec} data must be whole and intact, found: {err}", self.path) from None

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_bytes(path: Path):
    """The file's bytes, decompressed when it is gzip, bz2 or xz (told by its magic bytes)."""
    codec = compression(path)
    if codec is None:
        return open(path, "rb")
    return io.BufferedReader(_Guarded(CODECS[codec][1](path, "rb"), codec, path), 1 << 16)


def open_text(path: Path):
    """The file (decompressed) as UTF-8 text; a leading byte-order mark is dropped."""
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig", newline="")


def json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``line N``, object) for each non-blank line, read lazily."""
    with open_bytes(path) as f:     # bytes, decoded line by line: a bad byte is reported on its own line
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"UTF-8 text must hold, found undecodable bytes ({err.reason})", path,
                                  f"line {n}") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"a JSON object per line must hold: {err}", path, f"line {n}") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"a JSON object per line must hold, found {type(obj).__name__}", path, f"line {n}")
            yield f"line {n}", obj


def json_array(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``record N``, object) for each element of a JSON array, decoded one element at a time from a
    sliding buffer, so a ShareGPT dump of hundreds of MB is never parsed whole.

    Not ijson: tried (3.3, its C backend), it parses a whole buffer before yielding any element of it,
    so a bad element 1,000 records in was reported as "record 0" and the records before it were lost;
    its pure-Python backend keeps the order but took 1.57 s where this takes 0.09 s (as fast as ijson's
    C backend) on a 33 MB ShareGPT-like array of 20,000 records."""
    decoder = json.JSONDecoder()
    with open_text(path) as f:
        def more() -> str:
            try:
                return f.read(chunk)
            except UnicodeDecodeError as err:
                raise ConfigError(f"UTF-8 text must hold, found undecodable bytes ({err.reason})", path,
                                  f"record {i}") from None

        i, buf, pos, eof = 0, "", 0, False

        def skip(seps: str) -> str:
            """The next character that is not whitespace or in ``seps`` ("" at the end of the file)."""
            nonlocal buf, pos, eof
            while True:
                while pos < len(buf) and (buf[pos].isspace() or buf[pos] in seps):
                    pos += 1
                if pos < len(buf) or eof:
                    return buf[pos] if pos < len(buf) else ""
                buf, pos = more(), 0
                eof = not buf

        if skip("") != "[":
            raise ConfigError("a JSON array of records must hold, found no opening '['", path)
        pos += 1
        expect_comma = False
        while True:
            c = skip("")
            if c == "]":
                return
            if c == "":
                raise ConfigError("a JSON array must hold, found the end of the file before its closing ']'", path,
                                  f"record {i}")
            if expect_comma:
                if c != ",":
                    raise ConfigError(f"a JSON array must hold, found {c!r} where ',' or ']' belongs", path,
                                      f"record {i}")
                pos += 1
                skip("")
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as err:
                    if eof:
                        raise ConfigError(f"a JSON array must hold: {err.msg}", path, f"record {i}") from None
                    nxt = more()            # the element may run past the buffer: read on and decode again
                    eof = not nxt
                    buf, pos = buf[pos:] + nxt, 0
            if not isinstance(obj, dict):
                raise ConfigError(f"each element must be a JSON object, found {type(obj).__name__}", path, f"record {i}")
            yield f"record {i}", obj
            i, pos, expect_comma = i + 1, end, True


def csv_rows(path: Path, needed: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """(``line N``, row) of a CSV file with a header naming at least ``needed``."""
    with open_text(path) as f:
        try:
            reader = csv.DictReader(f)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"a CSV header with columns {list(needed)} must hold, missing {missing}", path,
                                  "line 1")
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row or any(row[c] is None for c in needed):
                    raise ConfigError(f"{len(reader.fieldnames)} columns must hold as in the header", path, where)
                yield where, row
        except UnicodeDecodeError as err:
            raise ConfigError(f"UTF-8 text must hold, found undecodable bytes ({err.reason})", path) from None
        except csv.Error as err:
            raise ConfigError(f"valid CSV must hold: {err}", path) from None


def need_str(obj: dict, key: str, path: Path, where: str, optional: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise bad(path, where, key, "required field missing")
    v = obj[key]
    if not isinstance(v, str):
        raise bad(path, where, key, f"a string must hold, found {v!r}"[:200])
    return v


def need_int(obj: dict, key: str, path: Path, where: str, low: int = 0, optional: bool = False,
             high: int = MAX_TOKENS) -> int | None:
    """An integer field in [``low``, ``high``] (a JSON integer; CSV text like "12" or "12.0"); the
    default ``high`` is MAX_TOKENS, as every integer field of a trace is a token count."""
    if key not in obj or obj[key] is None or obj[key] == "":
        if optional:
            return None
        raise bad(path, where, key, "required field missing")
    v = obj[key]
    if isinstance(v, str):      # CSV cells are text: "12" (or "12.0") is 12; a JSON 12.0 stays a float
        try:
            f = float(v)
            v = int(f) if f.is_integer() else v
        except (ValueError, OverflowError):
            pass
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise bad(path, where, key, f"an integer >= {low} must hold, found {obj[key]!r}"[:200])
    if v > high:
        raise bad(path, where, key, f"an integer >= {low} and <= {high:,} (tokens one request may have) must "
                                    f"hold, found {obj[key]!r}"[:200])
    return v


def need_number(obj: dict, key: str, path: Path, where: str, optional: bool = False) -> float | None:
    if key not in obj or obj[key] is None or obj[key] == "":
        if optional:
            return None
        raise bad(path, where, key, "required field missing")
    v = obj[key]
    try:
        f = float(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None
    except ValueError:
        f = None
    if f is None or f != f or f in (float("inf"), float("-inf")):
        raise bad(path, where, key, f"a finite number must hold, found {v!r}"[:200])
    return f


def need_time(obj: dict, key: str, path: Path, where: str, unit: float = 1.0, optional: bool = False) -> float | None:
    """An arrival time in seconds (the field holds ``unit`` seconds: 0.001 for milliseconds), in
    [0, MAX_TIMESTAMP]: a negative time would be sent before the replay starts."""
    v = need_number(obj, key, path, where, optional)
    if v is None:
        return None
    return check_time(v * unit, obj[key], path, where, key)


def check_time(seconds: float, given, path: Path, where: str, key: str) -> float:
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise bad(path, where, key, f"a time >= 0 and <= {MAX_TIMESTAMP:g} s must hold, found {given!r}"[:200])
    return seconds
