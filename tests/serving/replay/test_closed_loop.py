"""Closed-loop replay (Plan.concurrency) against a test double server; the embedded engine
is replayed closed loop end to end in tests/tuner/workload/test_closed_loop_trial.py."""
import asyncio
import json

from aiohttp import web

from serving.replay import LLMServingProtocol, ReplayOptions, Replayer
from tests.serving.replay.servers import serve
from serving.workload import Plan, TraceRequest


def in_flight_peak(records) -> int:
    events = sorted([(r.sent, 1) for r in records] + [(r.done, -1) for r in records], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


async def replay(plan, seconds=0.05):
    live = {"now": 0, "peak": 0}

    async def handler(request):
        body = await request.json()
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        resp = web.StreamResponse()
        await resp.prepare(request)
        await asyncio.sleep(seconds)
        data = [{"generated_text": " w", "tokens": {"id": 5, "text": " w"}, "finish_reason": "length"}]
        await resp.write((json.dumps({"event": "message", "data": data}) + "\n").encode())
        live["now"] -= 1
        return resp

    async with serve({"/models/llama2/generate_stream": handler}) as url:
        recs = await Replayer(url, LLMServingProtocol(), ReplayOptions()).run(plan, deadline=30)
    return recs, live["peak"]


def _plan(n, concurrency=None, gap=0.0):
    return Plan([(i * gap, TraceRequest(i, "a b", 1, 2)) for i in range(n)], concurrency)


def test_closed_loop_keeps_at_most_n_in_flight_and_sends_the_next_as_one_ends():
    recs, peak = asyncio.run(replay(_plan(12, concurrency=3)))
    assert all(r.ok for r in recs) and peak == 3 and in_flight_peak(recs) <= 3
    done = sorted(r.done for r in recs)
    for k, r in enumerate(recs[3:]):     # the (k+4)th goes once the (k+1)th end is seen
        assert r.sent >= done[k] - 1e-3 and r.scheduled >= done[k] - 1e-3 and r.sent - r.scheduled < 0.05


def test_open_loop_sends_everything_at_its_time():
    recs, peak = asyncio.run(replay(_plan(12)))
    assert all(r.ok for r in recs) and peak == 12


def test_a_capped_rate_waits_for_its_time_and_for_a_slot():
    recs, peak = asyncio.run(replay(_plan(6, concurrency=2, gap=0.2), seconds=0.02))
    assert peak == 1 and [round(r.scheduled, 1) for r in recs] == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
