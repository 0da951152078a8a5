"""Formats that give token counts, not text: Mooncake/Dynamo JSON lines, Azure and BurstGPT CSV logs.

Their prompts are synthesized to the exact length (tuner.workload.synth); Mooncake's
``hash_ids`` make records that share prefix blocks share that prefix text.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tuner.workload.formats.base import (RawRecord, Skipped, TraceFormat, bad, check_time, csv_rows, json_lines,
                                         need_int, need_time)

#: Azure's dates: 2023 '2023-11-16 18:15:46.6805900' (7 decimals, UTC), 2024 '2024-05-10 00:00:00.331306+00:00'
_AZURE_DATE = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?")


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
            yield RawRecord(where, prompt_tokens=need_int(obj, "input_length", path, where, low=1),
                            output_tokens=need_int(obj, "output_length", path, where, low=1),
                            timestamp=need_time(obj, "timestamp", path, where, unit=0.001, optional=True),
                            hash_ids=tuple(ids))


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
        """Azure's 2023 ('2023-11-16 18:15:46.6805900', UTC) and 2024 ('2024-05-10 00:00:00.331306+00:00')
        dates -> POSIX seconds; the fraction is read apart, as datetime keeps only 6 of 2023's 7 digits."""
        m = _AZURE_DATE.fullmatch(text.strip())
        malformed = bad(path, where, "TIMESTAMP", "a date 'YYYY-MM-DD hh:mm:ss[.fffffff][+hh:mm]' must hold, found "
                                                  f"{text!r}"[:200])
        if m is None:
            raise malformed
        head, frac, zone = m.groups()
        try:
            when = datetime.fromisoformat(head + ("+00:00" if zone in (None, "Z") else zone))
        except ValueError:
            raise malformed from None
        seconds = when.astimezone(timezone.utc).timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)
        return check_time(seconds, text, path, where, "TIMESTAMP")

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
            yield _csv_lengths(path, where, row, need_time(row, "Timestamp", path, where),
                               "Request tokens", "Response tokens")
