"""Each stream event gets its own time as it is parsed, never one per network read (docs/metrics.md).

The servers here write several events in ONE write, the way a server that fell behind flushes
what it had (vLLM's API process on 2 cores): the client reads them in one go, yet each event is
its own ITL sample, and gaps between writes show up as they were spaced.
"""
import asyncio
import json
import time

from aiohttp import web

from serving.replay import LLMServingProtocol, ReplayOptions, Replayer
from serving.replay.llm_serving import scan_line
from serving.replay.openai import OpenAIProtocol
from serving.replay.protocol import arrived_lines
from serving.workload import TraceRequest
from tests.serving.replay.servers import serve
from tuner.runtime.metrics import read_lag_figures, score

WRITES, PER_WRITE, GAP = 3, 3, 0.03


def llm_line(tok: int, reason=None) -> bytes:
    data = [{"generated_text": " w", "tokens": {"id": tok, "text": " w"}, "finish_reason": reason}]
    return (json.dumps({"event": "message", "data": data}) + "\n").encode()


def sse(obj) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def oai_chunk(ids: list[int], reason=None) -> dict:
    return {"id": "c", "object": "text_completion", "model": "m", "usage": None,
            "choices": [{"index": 0, "text": " w", "finish_reason": reason, "token_ids": ids}]}


async def llm_batched(request):
    """WRITES writes GAP s apart, each holding PER_WRITE token lines."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    n = WRITES * PER_WRITE
    for w in range(WRITES):
        await asyncio.sleep(GAP)
        await resp.write(b"".join(llm_line(k, "length" if k == n - 1 else None)
                                  for k in range(w * PER_WRITE, (w + 1) * PER_WRITE)))
    return resp


async def oai_batched(request):
    """vLLM falling behind: chunks of 2 tokens each (token_ids), GAP s apart."""
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    n = body["max_tokens"]
    ids = iter(range(n))
    chunks = [[next(ids), next(ids)] for _ in range(n // 2)]
    for c in chunks:
        await asyncio.sleep(GAP)
        await resp.write(sse(oai_chunk(c, "length" if c[-1] == n - 1 else None)))
    usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
    await resp.write(sse({"id": "c", "choices": [], "usage": usage}) + sse(b"[DONE]"))
    return resp


async def replay_one(route, handler, protocol, output_len):
    async with serve({route: handler}) as url:
        plan = [(0.0, TraceRequest(0, "p", output_len, 1))]
        return await Replayer(url, protocol, ReplayOptions(request_timeout=10)).run(plan, deadline=15)


def test_events_of_one_write_get_their_own_times():
    [rec] = asyncio.run(replay_one("/models/llama2/generate_stream", llm_batched, LLMServingProtocol(),
                                   WRITES * PER_WRITE))
    assert rec.ok and rec.n_tokens == WRITES * PER_WRITE
    times = rec.token_times                 # one token per event here
    assert all(a < b for a, b in zip(times, times[1:])), "events read together must not share one time"
    assert rec.chunk_times == times
    gaps = [b - a for a, b in zip(times, times[1:])]
    # the write boundaries show up as GAP, the events within a write as tiny but real gaps
    assert sorted(gaps)[-(WRITES - 1):][0] >= GAP * 0.8
    m = score([rec])
    assert m["itl_p50"] > 0.0
    assert m["tpot_p50"] > 0.0 and rec.last_token == times[-1] <= rec.done


def test_itl_is_per_content_chunk_not_per_token():
    """vLLM's bench serve: one ITL sample per chunk, however many tokens it carries; TPOT per token."""
    n = 8
    [rec] = asyncio.run(replay_one("/v1/completions", oai_batched, OpenAIProtocol("m", token_ids=True), n))
    assert rec.ok and rec.n_tokens == n
    m = score([rec])
    assert m["itl_p50"] > GAP / 2, "half the per-token gaps are 0: ITL must be per chunk"
    assert len(rec.chunk_times) == n // 2 and len(rec.token_times) == n
    assert all(a < b for a, b in zip(rec.chunk_times, rec.chunk_times[1:]))
    gaps = [b - a for a, b in zip(rec.chunk_times, rec.chunk_times[1:])]
    assert m["itl_mean"] == sum(gaps) / len(gaps)
    # TPOT = (E2E - TTFT) / (tokens - 1), E2E ending at the last content chunk (not at [DONE])
    assert m["tpot_p50"] == (rec.chunk_times[-1] - rec.first_token) / (n - 1)
    assert m["e2e_p50"] == rec.chunk_times[-1] - rec.sent


class BusyReader(LLMServingProtocol):
    """A client that cannot keep up: 40 ms of blocking work per stream line (a saturated event loop)."""

    async def read_stream(self, resp, rec, now):
        async for lines in arrived_lines(resp):
            for line in lines:
                time.sleep(0.04)
                seen = scan_line(line)
                if seen and seen[0]:
                    rec.add_chunk(now())


def test_a_busy_client_loop_shows_as_read_lag():
    """What the records cannot show (every event is stamped late alike) the loop's own timer does."""
    async def go():
        async with serve({"/models/llama2/generate_stream": llm_batched}) as url:
            plan = [(0.0, TraceRequest(0, "p", WRITES * PER_WRITE, 1))]
            rp = Replayer(url, BusyReader(), ReplayOptions(request_timeout=10))
            await rp.run(plan, deadline=15)
            return rp.read_lags
    fig = read_lag_figures(asyncio.run(go()))
    assert fig["read_lag_max"] >= 0.03 and fig["read_lag_p99"] > 0.025
