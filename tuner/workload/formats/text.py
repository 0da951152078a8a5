"""Formats that carry the prompt text: this project's JSON lines, vLLM's custom JSON lines, alpaca."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tuner.workload.formats.base import (RawRecord, Skipped, TraceFormat, json_array, json_lines, need_int,
                                         need_str, need_time)

#: vLLM's ``--custom-output-len`` default, used when a custom record has no ``output_tokens``
VLLM_DEFAULT_OUTPUT = 256


def _records(path: Path, container: str):
    return json_array(path) if container == "array" else json_lines(path)


class ProjectLines(TraceFormat):
    name = "jsonl"
    containers = ("lines",)
    description = 'this project\'s JSON lines: {"prompt", "output_len", optional "timestamp" (s)}'

    def sniff(self, first) -> bool:
        return isinstance(first, dict) and "prompt" in first and "output_len" in first

    def read(self, path: Path, container: str) -> Iterator[RawRecord]:
        for where, obj in json_lines(path):
            yield RawRecord(where, prompt=need_str(obj, "prompt", path, where),
                            output_tokens=need_int(obj, "output_len", path, where, low=1),
                            timestamp=need_time(obj, "timestamp", path, where, optional=True))


class VllmCustom(TraceFormat):
    name = "vllm"
    containers = ("lines",)
    description = f'vLLM custom JSON lines: {{"prompt", optional "output_tokens" (default {VLLM_DEFAULT_OUTPUT})}}'

    def sniff(self, first) -> bool:
        return isinstance(first, dict) and "prompt" in first

    def read(self, path: Path, container: str) -> Iterator[RawRecord]:
        for where, obj in json_lines(path):
            out = need_int(obj, "output_tokens", path, where, low=1, optional=True)
            yield RawRecord(where, prompt=need_str(obj, "prompt", path, where),
                            output_tokens=VLLM_DEFAULT_OUTPUT if out is None else out)


class Alpaca(TraceFormat):
    """prompt = instruction + ":" + input (performance_serving's join); output length = the output's tokens."""
    name = "alpaca"
    containers = ("array", "lines")
    description = 'alpaca JSON array or lines: {"instruction", optional "input", "output"}'

    def sniff(self, first) -> bool:
        return isinstance(first, dict) and "instruction" in first

    def read(self, path: Path, container: str) -> Iterator[RawRecord | Skipped]:
        for where, obj in _records(path, container):
            prompt = need_str(obj, "instruction", path, where) + ":" + (need_str(obj, "input", path, where,
                                                                                 optional=True) or "")
            given = need_int(obj, "output_len", path, where, low=1, optional=True)
            if given is not None:
                yield RawRecord(where, prompt=prompt, output_tokens=given)
                continue
            output = need_str(obj, "output", path, where)
            if not output.strip():
                yield Skipped(where, "empty output")
            else:
                yield RawRecord(where, prompt=prompt, output=output)
