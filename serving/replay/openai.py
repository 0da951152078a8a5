"""The OpenAI completions API (vLLM and others): ``POST /v1/completions``, streamed as SSE.

A stream is lines ``data: {json}`` ending with ``data: [DONE]``. Tokens are counted per chunk,
never from its ``text`` (a tiny or dummy model often yields tokens that decode to nothing): a
chunk is one token, unless the server says how many it carries. vLLM does when asked
(``return_token_ids``, ``token_ids=True`` here): under load its API process falls behind the
engine and sends several tokens in one chunk (seen on 2 CPU cores: 30 chunks for 60 tokens);
those tokens get the chunk's time. Each chunk with choices is one content event, stamped when
it is parsed (as vLLM's ``bench serve`` does): its ITL is per chunk (docs/metrics.md). With
``stream_options.include_usage`` the server adds a last chunk with ``choices: []`` and ``usage``:
its ``completion_tokens`` is the token count. When the chunks and the usage disagree, the
record gets an error saying so (TTFT and ITL would otherwise be skewed without anyone noticing).

``ignore_eos`` with ``max_tokens`` = ``min_tokens`` = the trace's output length makes every
configuration generate the same tokens. Sampling: ``do_sample: false`` in the space's
``load.parameters`` becomes ``temperature: 0``; OpenAI sampling keys there pass through.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import aiohttp

from serving.replay.protocol import ReplayOptions, WireProtocol, arrived_lines
from serving.workload import RequestRecord, TraceRequest

__all__ = ["OpenAIProtocol", "SAMPLING_KEYS"]

#: keys of ``load.parameters`` sent as they are (the others are llm-serving's)
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "seed", "repetition_penalty",
                           "presence_penalty", "frequency_penalty"})
DONE = "[DONE]"


class OpenAIProtocol(WireProtocol):
    error_reasons = frozenset({"abort", "error"})

    def __init__(self, model: str, token_ids: bool = False):
        self.model, self.token_ids = model, token_ids   # token_ids: ask for each chunk's ids (vLLM's extension)

    def route(self, stream: bool) -> str:
        return "/v1/completions"

    def body(self, req: TraceRequest, opts: ReplayOptions) -> dict[str, Any]:
        params = opts.parameters or {}
        body: dict[str, Any] = {"model": self.model, "prompt": req.prompt, "max_tokens": req.output_len,
                                "min_tokens": req.output_len, "ignore_eos": True, "stream": opts.stream}
        if params.get("do_sample") is False:
            body["temperature"] = 0.0
        body.update({k: v for k, v in params.items() if k in SAMPLING_KEYS})
        if opts.stream:
            body["stream_options"] = {"include_usage": True}
            if self.token_ids:
                body["return_token_ids"] = True
        return body

    async def read_stream(self, resp: aiohttp.ClientResponse, rec: RequestRecord,
                          now: Callable[[], float]) -> None:
        usage: int | None = None
        done = False
        async for lines in arrived_lines(resp):
            for raw in lines:
                line = raw.decode("utf-8").strip()
                if not line or line.startswith(":"):  # blank separators and SSE comments
                    continue
                if not line.startswith("data:"):
                    continue  # other SSE fields (event:, id:) carry no token
                payload = line[5:].strip()
                if payload == DONE:
                    done = True
                    break
                chunk = _parse(payload)
                t = now()                   # this event, as parsed
                if chunk.get("error"):
                    raise ValueError(f"server error in stream: {str(chunk['error'])[:160]}")
                for choice in chunk.get("choices") or []:
                    ids = choice.get("token_ids")
                    n = len(ids) if isinstance(ids, list) else 1
                    if n:
                        rec.add_chunk(t, n)
                    if choice.get("finish_reason"):
                        rec.finish_reason = choice["finish_reason"]
                if chunk.get("usage"):
                    usage = int(chunk["usage"].get("completion_tokens") or 0)
            if done:
                break
        if not done:
            raise ValueError("stream ended without data: [DONE]")
        if usage is not None and usage != rec.n_tokens:
            rec.error = f"bad_response: {rec.n_tokens} streamed chunks but usage says {usage} completion tokens"
            rec.n_tokens = usage

    def read_full(self, data: Any, rec: RequestRecord) -> None:
        if not isinstance(data, dict) or not data.get("choices"):
            raise ValueError(f"no choices in the answer {str(data)[:120]!r}")
        rec.finish_reason = data["choices"][0].get("finish_reason")
        rec.n_tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)


def _parse(payload: str) -> dict:
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError(f"unexpected stream line {payload[:80]!r}")
    return obj
