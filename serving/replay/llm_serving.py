"""llm-serving's API (also the embedded engine's): ``/models/llama2/generate[_stream]``.

The stream is JSON lines (``data:`` prefix optional), each ``{"event", "data": [{...}]}``.
A line whose data carries ``tokens`` as one token object is one generated token; with
``return_full_text: true`` upstream ends with a summary line whose ``tokens`` is the whole
list and which carries ``finish_reason``: that line is not a token. With
``return_full_text: false`` no line carries ``finish_reason``: the stream's end is the
connection closing, and what arrived is counted.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import aiohttp

from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import RequestRecord, TraceRequest

__all__ = ["LLMServingProtocol", "parse_line"]


def parse_line(line: bytes) -> dict:
    text = line.decode("utf-8").strip()
    if text.startswith("data:"):
        text = text[5:].strip()
    obj = json.loads(text)
    data = obj.get("data", obj) if isinstance(obj, dict) else None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        raise ValueError(f"unexpected stream line {text[:80]!r}")
    return data


class LLMServingProtocol(WireProtocol):
    error_reasons = frozenset({"predict_failed", "prompt_out_of_range", "prompt_token_ids_empty"})

    def __init__(self, model_route: str = "/models/llama2"):
        self.model_route = model_route

    def route(self, stream: bool) -> str:
        return self.model_route + ("/generate_stream" if stream else "/generate")

    def body(self, req: TraceRequest, opts: ReplayOptions) -> dict[str, Any]:
        params = dict(opts.parameters, max_new_tokens=req.output_len)
        return {"inputs": req.prompt, "parameters": params, "stream": opts.stream}

    async def read_stream(self, resp: aiohttp.ClientResponse, rec: RequestRecord,
                          now: Callable[[], float]) -> None:
        async for line in resp.content:
            if not line.strip():
                continue
            t = now()
            data = parse_line(line)
            if rec.first_token is None:
                rec.first_token = t  # performance_serving: first non-empty line
            tokens = data.get("tokens")
            if tokens and not isinstance(tokens, list):  # the summary line's list is no new token
                rec.token_times.append(t)
                rec.n_tokens += 1
            if data.get("finish_reason"):
                rec.finish_reason = data["finish_reason"]
        # no finish_reason (return_full_text: false): the closed connection ends the stream

    def read_full(self, data: Any, rec: RequestRecord) -> None:
        if isinstance(data, list):
            data = data[0] if data else {}
        rec.finish_reason = data.get("finish_reason")
        rec.n_tokens = int(data.get("generated_tokens") or len(data.get("tokens") or []))
