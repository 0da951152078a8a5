"""Replay from several sender processes: the same records as one process, live stop, nothing lost."""
import asyncio
import os
import threading

import pytest
from aiohttp import web

from serving.replay import LLMServingProtocol, ParallelReplayer, ReplayOptions, Replayer, workers_for
from serving.replay.client import run_loop
from serving.workload import TraceRequest
from tests.serving.replay.test_client import full_handler, stream_handler

pytestmark = pytest.mark.xdist_group("parallel_replay")  # one worker runs the module: its server is made once


@pytest.fixture(scope="module")
def server_url():
    """The replay tests' double server, on its own thread and loop (the parallel replayer is blocking)."""
    started = threading.Event()
    box = {}

    def serve():
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/models/llama2/generate_stream", stream_handler)
        app.router.add_post("/models/llama2/generate", full_handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        box["loop"], box["runner"] = loop, runner
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    assert started.wait(10)
    yield box["url"]
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    th.join(10)


def plan_of(modes, gap=0.002):
    return [(gap * i, TraceRequest(i, m, 3, 1)) for i, m in enumerate(modes)]


def test_several_senders_keep_every_record_in_plan_order(server_url):
    modes = ["ok", "http500", "garbage", "ok", "summary", "ok", "noreason"] * 6
    done = []
    opts = ReplayOptions(request_timeout=5)
    par = ParallelReplayer(server_url, LLMServingProtocol(), opts, on_done=done.append, workers=3).run(
        plan_of(modes), deadline=10)
    one = run_loop(Replayer(server_url, LLMServingProtocol(), opts).run(plan_of(modes), deadline=10))
    assert [r.index for r in par] == list(range(len(modes)))
    for a, b in zip(par, one):
        assert (a.scheduled, a.n_tokens, a.finish_reason, a.ok, (a.error or "")[:8]) == \
               (b.scheduled, b.n_tokens, b.finish_reason, b.ok, (b.error or "")[:8])
        assert a.sent is not None and a.sent >= a.scheduled
        assert len(a.token_times) == a.n_tokens
    assert sorted(r.index for r in done) == list(range(len(modes)))      # on_done once per request


class AfterN:
    """Stop once n requests have ended."""
    poll, fired = 0.02, False

    def __init__(self, n):
        self.n = n

    def check(self, elapsed, records):
        return sum(r.done is not None for r in records) >= self.n


def test_a_stop_condition_ends_every_sender(server_url):
    plan = plan_of(["ok"] * 400, gap=0.01)               # 4 s of sends if never stopped
    stop = AfterN(20)
    recs = ParallelReplayer(server_url, LLMServingProtocol(), ReplayOptions(request_timeout=5), workers=2).run(
        plan, deadline=30, stop=stop)
    assert stop.fired and len(recs) == 400
    cut = [r for r in recs if r.error and r.error.startswith("cancelled")]
    assert len(cut) > 300 and all(r.done is None for r in cut)
    assert max(r.sent for r in recs if r.sent is not None) < 2.0


def test_only_a_fast_large_plan_gets_several_senders():
    slow = [(i * 0.01, TraceRequest(i, "ok", 3, 1)) for i in range(1000)]    # 100 req/s
    fast = [(i * 0.001, TraceRequest(i, "ok", 3, 1)) for i in range(1000)]   # 1,000 req/s
    assert workers_for(slow) == 1 and workers_for(fast[:100]) == 1
    assert workers_for(fast) == max(1, min(os.cpu_count() or 1, 4)) and workers_for(fast, 3) == 3
