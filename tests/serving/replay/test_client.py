"""Replay client against a test double server (the real engine is replayed in test_trial.py)."""
import asyncio
import json

import pytest
from aiohttp import web

from serving.replay import LLMServingProtocol, ReplayOptions, Replayer
from serving.workload import TraceRequest
from tests.serving.replay.servers import serve


def line(tok, reason=None):
    data = [{"generated_text": " w", "tokens": {"id": tok, "text": " w"} if tok else None, "finish_reason": reason}]
    return (json.dumps({"event": "message", "data": data}) + "\n").encode()


async def stream_handler(request):
    body = await request.json()
    mode = body["inputs"]
    if mode == "http500":
        raise web.HTTPInternalServerError(text="boom")
    resp = web.StreamResponse()
    await resp.prepare(request)
    n = body["parameters"]["max_new_tokens"]
    for i in range(n):
        if mode == "garbage" and i == 1:
            await resp.write(b"not json\n")
        if mode == "hang" and i == 1:
            await asyncio.sleep(2.5)
        await resp.write(line(10 + i, "length" if (i == n - 1 and mode != "noreason") else None))
        await asyncio.sleep(0.001)
    if mode == "sse":
        await resp.write(b"data: " + line(None, "length"))
    if mode == "summary":  # llm-serving with return_full_text: the whole token list, not one more token
        data = [{"generated_text": "all", "tokens": [{"id": 10 + i} for i in range(n)], "finish_reason": "length"}]
        await resp.write((json.dumps({"event": "message", "data": data}) + "\n").encode())
    if mode == "slow":
        await asyncio.sleep(10)
    return resp


async def full_handler(request):
    return web.json_response({"generated_tokens": 3, "finish_reason": "length"})


async def run_against(modes, timeout=5.0, stream=True, deadline=None, on_done=None):
    plan = [(0.01 * i, TraceRequest(i, m, 3, 1)) for i, m in enumerate(modes)]
    opts = ReplayOptions(stream=stream, request_timeout=timeout)
    routes = {"/models/llama2/generate_stream": stream_handler, "/models/llama2/generate": full_handler}
    async with serve(routes) as url:
        return await Replayer(url, LLMServingProtocol(), opts, on_done).run(
            plan, deadline=timeout + 2 if deadline is None else deadline)


def test_stream_records_every_token_and_timestamps_in_order():
    (r,) = asyncio.run(run_against(["ok"]))
    assert r.ok and r.n_tokens == 3 and r.finish_reason == "length"
    assert r.sent <= r.first_token <= r.token_times[0] <= r.token_times[-1] <= r.done


def test_every_failure_is_a_record_with_its_cause():
    recs = asyncio.run(run_against(["ok", "garbage", "noreason", "http500", "hang"], timeout=1.0))
    errors = {r.index: r.error for r in recs}
    assert recs[0].ok
    assert errors[1].startswith("bad_response")
    assert errors[2] is None and recs[2].n_tokens == 3  # no finish_reason: the closed stream ends it
    assert errors[3].startswith("http 500")
    assert errors[4].startswith("timeout")
    assert len(recs) == 5


def test_sse_data_prefix_is_accepted():
    (r,) = asyncio.run(run_against(["sse"]))
    assert r.ok and r.n_tokens == 3


def test_non_stream_mode():
    (r,) = asyncio.run(run_against(["ok"], stream=False))
    assert r.ok and r.n_tokens == 3 and r.first_token == r.done


def test_connection_refused_is_recorded():
    async def go():
        return await Replayer("http://127.0.0.1:9", LLMServingProtocol(), ReplayOptions(request_timeout=2)).run(
            [(0.0, TraceRequest(0, "x", 2, 1))], deadline=5)
    (r,) = asyncio.run(go())
    assert r.error.startswith("connection")


def test_final_summary_line_is_not_counted_as_a_token():
    (r,) = asyncio.run(run_against(["summary"]))
    assert r.ok and r.n_tokens == 3 and len(r.token_times) == 3 and r.finish_reason == "length"


def test_stream_cut_off_by_the_replay_deadline_is_not_a_success():
    done = []
    (r,) = asyncio.run(run_against(["slow"], timeout=30, deadline=1.0, on_done=done.append))
    assert not r.ok and r.error.startswith("timeout: replay deadline") and r.done is None
    assert done == [r]  # reported once, as failed


def test_stream_lines_are_scanned_as_their_json_says():
    from serving.replay.llm_serving import scan_line
    token = line(5)
    assert scan_line(token) == (True, None) and scan_line(b"data: " + token) == (True, None)
    assert scan_line(line(None, "length")) == (False, "length")
    summary = b'data:{"generated_text": "a", "finish_reason": "stop", "tokens": [{"id": 1}, {"id": 2}]}'
    assert scan_line(summary) == (False, "stop")
    # a key written inside generated text is escaped there: never taken for the line's own key
    quoted = json.dumps({"generated_text": '"tokens": {"id": 1}', "tokens": None}).encode()
    assert scan_line(quoted) == (False, None)
    assert scan_line(b'{"tokens": {}, "finish_reason": ""}') == (False, None)
    assert scan_line(b'{"tokens": 7}') == (True, None)          # an unusual value: parsed in full
    assert scan_line(b"   \r") is None
    for bad in (b"not json", b'{"tokens": 7', b"[1, 2]"):
        with pytest.raises(ValueError):
            scan_line(bad)


def test_requests_offer_no_compression_the_client_would_not_undo():
    seen = []

    async def handler(request):
        seen.append(request.headers.get("Accept-Encoding"))
        return await stream_handler(request)

    async def go():
        async with serve({"/models/llama2/generate_stream": handler}) as url:
            return await Replayer(url, LLMServingProtocol(), ReplayOptions(request_timeout=5)).run(
                [(0.0, TraceRequest(0, "ok", 3, 1))], deadline=10)
    (r,) = asyncio.run(go())
    assert r.ok and seen == [None]


def test_a_connection_idle_past_keepalive_is_not_reused_so_a_server_closing_it_loses_no_request(monkeypatch):
    """uvicorn (vLLM's server) closes a kept connection after 5 s idle; a request written on it as it
    closes fails (ServerDisconnectedError: a real vLLM's second replay lost requests so). The server
    here closes every connection it is sent a second request on, as if its keep-alive timer fired."""
    from serving.replay import client
    monkeypatch.setattr(client, "KEEPALIVE", 0.2)
    seen: dict[int, int] = {}     # requests per connection (by the transport's client port)

    async def closes_reused(request):
        port = request.transport.get_extra_info("peername")[1]
        seen[port] = seen.get(port, 0) + 1
        if seen[port] > 1:
            request.transport.close()
            await asyncio.sleep(1)
        return await stream_handler(request)

    async def go(idle: float, handler):
        plan = [(0.0, TraceRequest(0, "ok", 3, 1))]
        async with serve({"/models/llama2/generate_stream": handler}) as url, client.open_session() as session:
            rep = Replayer(url, LLMServingProtocol(), ReplayOptions(request_timeout=5))
            first = await rep.run(plan, deadline=10, session=session)
            await asyncio.sleep(idle)
            return first + await rep.run(plan, deadline=10, session=session)

    a, b = asyncio.run(go(0.5, closes_reused))      # idle past KEEPALIVE: a fresh connection
    assert a.ok and b.ok and sorted(seen.values()) == [1, 1]
    seen.clear()
    a, b = asyncio.run(go(0.0, stream_handler_counting(seen)))   # back to back: the connection is kept
    assert a.ok and b.ok and list(seen.values()) == [2]
    assert client.KEEPALIVE < 5       # uvicorn's timeout_keep_alive (vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE)


def stream_handler_counting(seen: dict[int, int]):
    async def handler(request):
        port = request.transport.get_extra_info("peername")[1]
        seen[port] = seen.get(port, 0) + 1
        return await stream_handler(request)
    return handler
