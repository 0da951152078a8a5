"""Arrival bound: the last send plus that request's unloaded service time, measured alone."""
import asyncio
import math

from aiohttp import web

from tuner.runtime.bound import alone, last_arrival, service_time, unloaded_service_times
from tuner.space.compose import load_space
from tuner.runtime.metrics import score
from serving.workload import RequestRecord
from serving.replay import ReplayOptions
from serving.replay import LLMServingProtocol
from serving.stacks import ReplayResult, RunningStack
from tuner.study.run import StudyRun
from serving.workload import TraceRequest
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial


def rec(i, sent, done=None, error=None, n=3):
    return RequestRecord(i, 5, n, sent, sent=sent, first_token=done, done=done, n_tokens=n, error=error)


def test_last_arrival_is_the_latest_send_and_none_when_nothing_was_sent():
    recs = [rec(0, 0.0, 1.0), rec(1, 2.5, 3.0), rec(2, 1.0, 9.0)]
    assert last_arrival(recs) == 1
    assert last_arrival([RequestRecord(0, 1, 1, 0.0)]) is None


def test_service_time_is_nan_for_a_failed_request():
    assert service_time(rec(0, 1.0, 1.5)) == 0.5
    assert math.isnan(service_time(rec(0, 1.0, 1.5, error="timeout: x")))


class FakeSim(RunningStack):
    """A RunningStack (the real interface) serving each request in 0.25 s per output token."""
    pgids = []

    def __init__(self, alive=True):
        self._alive, self.plans = alive, []

    def alive(self):
        return self._alive

    def log_tail(self, max_chars=4000):
        return ""

    def _stop(self):
        pass

    def replay(self, plan, options, on_request=None, deadline=None, stop=None):
        self.plans.append(plan)
        (_, req), = plan
        return ReplayResult([rec(req.index, 0.0, 0.25 * req.output_len, n=req.output_len)], {})


class UrlStack(FakeSim):
    """The default HTTP replay of RunningStack against ``url``."""
    replay = RunningStack.replay
    protocol = LLMServingProtocol()

    def __init__(self, url):
        super().__init__()
        self.url = url


def test_the_last_sent_request_is_served_alone_and_scored():
    plan = [(0.0, TraceRequest(7, "a b", 2, 2)), (1.0, TraceRequest(8, "c", 4, 1))]
    recs = [rec(7, 0.0, 5.0), rec(8, 1.0, 6.0)]
    sim = FakeSim()
    service = unloaded_service_times(sim, plan, recs, ReplayOptions())
    assert service == {8: 1.0} and sim.plans == [[(0.0, plan[1][1])]]
    m = score(recs, service)
    assert m["arrival_bound"] == 1.0 + 1.0 and m["efficiency"] == 2.0 / 6.0


def test_an_unmeasurable_bound_is_nan_but_present():
    plan = [(0.0, TraceRequest(3, "a", 2, 1))]
    recs = [rec(3, 0.0, 2.0)]
    service = unloaded_service_times(FakeSim(alive=False), plan, recs, ReplayOptions())
    assert list(service) == [3] and math.isnan(service[3])
    m = score(recs, service)
    assert math.isnan(m["arrival_bound"]) and math.isnan(m["efficiency"])


async def _alone_against_slow_server(delay):
    async def handler(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        await asyncio.sleep(delay)
        await resp.write(b'{"data": [{"tokens": {"id": 5}, "finish_reason": "length"}]}\n')
        return resp

    app = web.Application()
    app.router.add_post("/models/llama2/generate_stream", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        running = UrlStack(f"http://127.0.0.1:{port}")
        return await asyncio.to_thread(alone, running, TraceRequest(0, "x", 1, 1), ReplayOptions(), 2)
    finally:
        await runner.cleanup()


def test_alone_takes_the_fastest_lone_replay():
    t = asyncio.run(_alone_against_slow_server(0.05))
    assert 0.05 <= t < 1.0


def test_every_embedded_trial_carries_arrival_bound_and_efficiency(project_root, tiny_config):
    space = load_space("pa_batching", project_root, ["load.qps=20", "load.duration=0.3", f"base_config={tiny_config}"])
    plan = StudyRun(space, project_root, "").plan()
    params = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
              "pa_config.num_blocks": 256, "pa_config.block_size": 16}
    out = run_trial(TrialContext(space, project_root, project_root / "trials/b/0", plan), params)
    assert out.ok, out.fail_detail
    m = out.metrics
    last_sent = max(r.sent for r in out.records) - min(r.sent for r in out.records)
    assert last_sent < m["arrival_bound"] <= m["total_time"] * 1.5  # noise may lift it a little over 1
    assert m["efficiency"] == m["arrival_bound"] / m["total_time"]
