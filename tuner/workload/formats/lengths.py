"""Formats that give token counts, not text: Mooncake/Dynamo JSON lines, Azure and BurstGPT CSV logs.

Their prompts are synthesized to the exact length (tuner.workload.synth); Mooncake's
``hash_ids`` make records that share prefix blocks share that prefix text.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tuner.workload.formats.base import (RawRecord, Skipped, TraceFormat, bad, csv_rows, json_lines, need_int,
                                         need_number)


class Mooncake(TraceFormat):
    name = "mooncake"
    containers = ("lines",)
    description = ('Mooncake/Dynamo JSON lines: {"timestamp" (ms), "input_length", "output_length", '
                   '"hash_ids" (one per 512-token block)}')

    def sniff(self, first) -> bool:
        return isinstance(first, dict) and "input_length" in first and "output_length" in first

    def read(self, path: Path, container: str) -> Iterator[RawRecord]:
        for where, obj in json_lines(path):
            ids = obj.get("hash_ids", [])
            if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in ids):
                raise bad(path, where, "hash_ids", f"a list of integers must hold, found {ids!r}"[:200])
            ts = need_number(obj, "timestamp", path, where, optional=True)
            yield RawRecord(where, prompt_tokens=need_int(obj, "input_length", path, where, low=1),
                            output_tokens=need_int(obj, "output_length", path, where, low=1),
                            timestamp=None if ts is None else ts / 1000.0, hash_ids=tuple(ids))


def _csv_lengths(path: Path, where: str, row: dict, ts: float, prompt_key: str, out_key: str):
    prompt, out = need_int(row, prompt_key, path, where), need_int(row, out_key, path, where)
    if prompt < 1:
        return Skipped(where, f"no prompt tokens ({prompt_key} 0)")
    if out < 1:
        return Skipped(where, f"no output tokens ({out_key} 0)")
    return RawRecord(where, prompt_tokens=prompt, output_tokens=out, timestamp=ts)


class _CsvWithColumns(TraceFormat):
    """A CSV format known by its header: every name in ``columns`` present."""
    containers = ("csv",)
    columns: tuple[str, ...] = ()

    def sniff(self, first) -> bool:
        return isinstance(first, list) and all(c in first for c in self.columns)


class AzureCsv(_CsvWithColumns):
    name = "azure"
    description = "Azure LLM inference CSV: TIMESTAMP, ContextTokens, GeneratedTokens"
    columns = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

    @staticmethod
    def seconds(text: str, path: Path, where: str) -> float:
        """'2023-11-16 18:15:46.6805900' (seconds with up to 7 decimals) -> POSIX seconds."""
        head, _, frac = text.strip().partition(".")
        malformed = bad(path, where, "TIMESTAMP", f"a date 'YYYY-MM-DD hh:mm:ss[.fff]' must hold, found {text!r}"[:200])
        try:
            when = datetime.fromisoformat(head)
            whole = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
        except ValueError:
            raise malformed from None
        if frac and not frac.isdigit():
            raise malformed
        return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)

    def read(self, path: Path, container: str) -> Iterator[RawRecord | Skipped]:
        for where, row in csv_rows(path, self.columns):
            yield _csv_lengths(path, where, row, self.seconds(row["TIMESTAMP"], path, where),
                               "ContextTokens", "GeneratedTokens")


class BurstGptCsv(_CsvWithColumns):
    """BurstGPT logs failed requests with 0 response tokens: those are skipped and counted."""
    name = "burstgpt"
    description = "BurstGPT CSV: Timestamp (s), Model, Request tokens, Response tokens, Total tokens, Log Type"
    columns = ("Timestamp", "Request tokens", "Response tokens")

    def read(self, path: Path, container: str) -> Iterator[RawRecord | Skipped]:
        for where, row in csv_rows(path, self.columns):
            yield _csv_lengths(path, where, row, need_number(row, "Timestamp", path, where),
                               "Request tokens", "Response tokens")
