"""ShareGPT conversations: the first human turn is the prompt, the gpt turn after it the output."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tuner.workload.formats.base import RawRecord, Skipped, TraceFormat, bad, json_array, json_lines

HUMAN = frozenset({"human", "user"})
GPT = frozenset({"gpt", "assistant", "chatgpt"})


class ShareGPT(TraceFormat):
    name = "sharegpt"
    containers = ("array", "lines")
    description = 'ShareGPT JSON (array or lines): {"conversations": [{"from": "human"|"gpt", "value"}]}'

    def sniff(self, first) -> bool:
        return isinstance(first, dict) and "conversations" in first

    def read(self, path: Path, container: str) -> Iterator[RawRecord | Skipped]:
        records = json_array(path) if container == "array" else json_lines(path)
        for where, obj in records:
            turns = obj.get("conversations")
            if not isinstance(turns, list):
                raise bad(path, where, "conversations", f"a list of turns must hold, found {turns!r}"[:200])
            for k, t in enumerate(turns):
                if not isinstance(t, dict) or not isinstance(t.get("from"), str) or not isinstance(t.get("value"), str):
                    raise bad(path, where, f"conversations[{k}]",
                              f'a turn {{"from": str, "value": str}} must hold, found {t!r}'[:200])
            if len(turns) < 2:
                yield Skipped(where, "fewer than 2 turns")
                continue
            first = next((k for k, t in enumerate(turns) if t["from"] in HUMAN), None)
            if first is None or first + 1 >= len(turns) or turns[first + 1]["from"] not in GPT:
                yield Skipped(where, "no gpt turn after the first human turn")
            elif not turns[first + 1]["value"].strip():
                yield Skipped(where, "empty output")
            else:
                yield RawRecord(where, prompt=turns[first]["value"], output=turns[first + 1]["value"])
