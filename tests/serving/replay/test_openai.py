"""OpenAIProtocol through the real replay client against a small aiohttp double of vLLM's
/v1/completions stream (real vLLM is replayed in tests/serving/stacks/test_vllm_real.py)."""
import asyncio
import json

from aiohttp import web

from serving.replay import ReplayOptions, Replayer
from serving.replay.openai import OpenAIProtocol
from tests.serving.replay.servers import serve
from serving.workload import TraceRequest

MODEL = "/models/tiny"
BODIES = web.AppKey("bodies", list)


def sse(obj) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def chunk(text, reason=None, ids=None):
    return {"id": "cmpl-1", "object": "text_completion", "model": MODEL,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason, "token_ids": ids}],
            "usage": None}


async def completions(request):
    body = await request.json()
    request.app[BODIES].append(body)
    mode, n = body["prompt"], body["max_tokens"]
    if mode == "http500":
        return web.json_response({"error": {"message": "EngineCore encountered an issue"}}, status=500)
    if not body["stream"]:
        return web.json_response({"choices": [{"text": "x" * n, "finish_reason": "length"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": n}})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    per_chunk = 2 if mode == "batched" else 1
    for i in range(0, n, per_chunk):
        await asyncio.sleep(0.01)
        # a dummy model's tokens often decode to "": still one token each
        ids = list(range(i, i + per_chunk)) if body.get("return_token_ids") else None
        await resp.write(sse(chunk("" if i % 2 else " w", "length" if i + per_chunk >= n else None, ids)))
    if mode == "garbage":
        await resp.write(b"data: {not json\n\n")
    usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
    await resp.write(sse({"id": "cmpl-1", "choices": [], "usage": usage}))
    if mode != "nodone":
        await resp.write(sse(b"[DONE]"))
    return resp


async def run_against(prompts, stream=True, parameters=None, token_ids=False):
    app = web.Application()
    app[BODIES] = []
    plan = [(0.0, TraceRequest(i, p, 6, 1)) for i, p in enumerate(prompts)]
    opts = ReplayOptions(stream=stream, request_timeout=10,
                         parameters=parameters if parameters is not None else {"do_sample": False})
    async with serve({"/v1/completions": completions}, app) as url:
        records = await Replayer(url, OpenAIProtocol(MODEL, token_ids), opts).run(plan, deadline=20)
        return records, app[BODIES]


def test_body_forces_the_trace_output_length_and_asks_for_usage():
    _, [body] = asyncio.run(run_against(["ok"], parameters={"do_sample": False, "return_full_text": True,
                                                            "seed": 3}))
    assert body == {"model": MODEL, "prompt": "ok", "max_tokens": 6, "min_tokens": 6, "ignore_eos": True,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0, "seed": 3}


def test_every_chunk_is_a_token_even_with_empty_text():
    [rec], _ = asyncio.run(run_against(["ok"]))
    assert rec.ok and rec.error is None
    assert rec.n_tokens == 6 and len(rec.token_times) == 6
    assert rec.first_token == rec.token_times[0] and rec.sent < rec.first_token <= rec.done
    assert rec.token_times == sorted(rec.token_times) and rec.finish_reason == "length"


def test_chunks_disagreeing_with_usage_is_an_error_not_hidden():
    [rec], _ = asyncio.run(run_against(["batched"]))
    assert not rec.ok
    assert rec.error == "bad_response: 3 streamed chunks but usage says 6 completion tokens"
    assert rec.n_tokens == 6


def test_chunks_carrying_several_tokens_count_each_when_the_server_names_them():
    [rec], [body] = asyncio.run(run_against(["batched"], token_ids=True))
    assert body["return_token_ids"] is True
    assert rec.ok and rec.n_tokens == 6 and len(rec.token_times) == 6
    assert rec.token_times[0] == rec.token_times[1] < rec.token_times[2]   # one chunk, one arrival time


def test_bad_streams_and_http_errors_are_recorded():
    recs, _ = asyncio.run(run_against(["garbage", "nodone", "http500"]))
    assert [r.ok for r in recs] == [False, False, False]
    assert recs[0].error.startswith("bad_response:")
    assert recs[1].error == "bad_response: stream ended without data: [DONE]"
    assert recs[2].error.startswith("http 500:") and "EngineCore" in recs[2].error


def test_unstreamed_answer_takes_the_usage_count():
    [rec], [body] = asyncio.run(run_against(["ok"], stream=False))
    assert rec.ok and rec.n_tokens == 6 and rec.finish_reason == "length"
    assert "stream_options" not in body and body["stream"] is False
