"""llm-serving's API (also the embedded engine's): ``/models/llama2/generate[_stream]``.

The stream is JSON lines (``data:`` prefix optional), each ``{"event", "data": [{...}]}``.
A line whose data carries ``tokens`` as one token object is one generated token; with
``return_full_text: true`` upstream ends with a summary line whose ``tokens`` is the whole
list and which carries ``finish_reason``: that line is not a token. With
``return_full_text: false`` no line carries ``finish_reason``: the stream's end is the
connection closing, and what arrived is counted.

Lines are scanned, not parsed (the sender's CPU per request is what bounds the rates it can
send; a JSON parse per line cost more than the rest of the reading): a line shaped as a JSON
object is read for its ``tokens`` value's first character (``{``: one token; ``[``: the summary;
``null``: none) and its ``finish_reason`` string. A key cannot match inside a JSON string, where
quotes are escaped. A line of any other shape, or whose keys hold other values, is parsed in full
and rejected (``bad_response``) when it is not JSON.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import aiohttp

from serving.replay.protocol import ReplayOptions, WireProtocol, arrived_lines
from serving.workload import RequestRecord, TraceRequest

__all__ = ["LLMServingProtocol", "parse_line", "scan_line"]

_TOKENS = re.compile(rb'"tokens"\s*:\s*(\{\s*\}|[{\[n])')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*(?:null|"(\w*)")')


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


def scan_line(line: bytes) -> tuple[bool, str | None] | None:
    """(is one generated token, finish_reason or None) of a stream line; None for a blank line."""
    text = line.strip()
    if text.startswith(b"data:"):
        text = text[5:].lstrip()
    if not text:
        return None
    if text[:1] == b"{" and text[-1:] == b"}":
        tokens, finish = _TOKENS.search(text), _FINISH.search(text)
        if (tokens or b'"tokens"' not in text) and (finish or b'"finish_reason"' not in text):
            return (tokens is not None and tokens[1] == b"{",
                    finish[1].decode() if finish is not None and finish[1] else None)
    data = parse_line(text)
    value = data.get("tokens")
    return bool(value) and not isinstance(value, list), data.get("finish_reason") or None


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
        async for lines in arrived_lines(resp):
            for line in lines:
                seen = scan_line(line)
                if seen is None:
                    continue
                t = now()              # this event, as parsed
                token, finish = seen
                if token:              # the summary line's list is no new token
                    rec.add_chunk(t)
                elif rec.first_token is None:
                    rec.first_token = t  # performance_serving: the first non-empty line
                if finish:
                    rec.finish_reason = finish
        # no finish_reason (return_full_text: false): the closed connection ends the stream

    def read_full(self, data: Any, rec: RequestRecord) -> None:
        if isinstance(data, list):
            data = data[0] if data else {}
        rec.finish_reason = data.get("finish_reason")
        rec.n_tokens = int(data.get("generated_tokens") or len(data.get("tokens") or []))
