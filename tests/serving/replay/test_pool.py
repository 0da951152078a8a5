"""Sender pool: processes started once and reused by every replay, the same records as one process,
a live stop in every sender, nothing left running, and a dead sender an error, never a hang."""
import asyncio
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from aiohttp import web

from serving.replay import LLMServingProtocol, ReplayOptions, Replayer, SenderPool
from serving.replay.client import run_loop
from serving.stacks.base import RunningStack
from serving.workload import TraceRequest
from tests.serving.replay.test_client import full_handler, stream_handler

OPTS = ReplayOptions(request_timeout=5)
pytestmark = pytest.mark.xdist_group("sender_pool")  # one worker runs the module: its server and pool are made once


@pytest.fixture(scope="module")
def server_url():
    """The replay tests' double server, on its own thread and loop (a pool's replay is blocking)."""
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


@pytest.fixture(scope="module")
def pool():
    with SenderPool(2) as p:
        yield p


def plan_of(modes, gap=0.002):
    return [(gap * i, TraceRequest(i, m, 3, 1)) for i, m in enumerate(modes)]


def gone(pids) -> bool:
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    return not alive


def test_every_replay_reuses_the_same_senders_and_keeps_every_record_in_plan_order(server_url, pool):
    modes = ["ok", "http500", "garbage", "ok", "summary", "ok", "noreason"] * 6
    one = run_loop(Replayer(server_url, LLMServingProtocol(), OPTS).run(plan_of(modes), deadline=10))
    pids = pool.pids
    assert len(set(pids)) == 2 and os.getpid() not in pids and pool.start_s > 0
    for _ in range(3):
        done = []
        par = pool.replay(server_url, LLMServingProtocol(), OPTS, plan_of(modes), done.append, deadline=10)
        assert pool.pids == pids
        assert [r.index for r in par] == list(range(len(modes)))
        for a, b in zip(par, one):
            assert (a.scheduled, a.n_tokens, a.finish_reason, a.ok, (a.error or "")[:8]) == \
                   (b.scheduled, b.n_tokens, b.finish_reason, b.ok, (b.error or "")[:8])
            assert a.sent is not None and a.sent >= a.scheduled          # the send lag stays measurable
            assert len(a.token_times) == a.n_tokens
            assert len(a.chunk_times) == len(b.chunk_times)               # per-event times come back too
        assert sorted(r.index for r in done) == list(range(len(modes)))   # on_done once per request
        assert pool.read_lags and min(pool.read_lags) >= 0               # every sender's loop was timed


class AfterN:
    """Stop once n requests have ended."""
    poll, fired = 0.02, False

    def __init__(self, n):
        self.n = n

    def check(self, elapsed, records):
        return sum(r.done is not None for r in records) >= self.n


def test_a_stop_condition_ends_every_sender(server_url, pool):
    plan = plan_of(["ok"] * 400, gap=0.01)               # 4 s of sends if never stopped
    stop = AfterN(20)
    recs = pool.replay(server_url, LLMServingProtocol(), OPTS, plan, deadline=30, stop=stop)
    assert stop.fired and len(recs) == 400
    for worker in range(2):                              # each sender's part was cut, not only one
        part = recs[worker::2]
        cut = [r for r in part if r.error and r.error.startswith("cancelled")]
        assert len(cut) > 150 and all(r.done is None for r in cut)
    again = pool.replay(server_url, LLMServingProtocol(), OPTS, plan_of(["ok"] * 10), deadline=10)
    assert all(r.ok for r in again)                      # a stopped pool replays again


def test_a_sender_that_dies_mid_replay_fails_its_requests_and_is_replaced(server_url):
    with SenderPool(2) as pool:
        victim = pool.pids[0]
        done = []

        def kill_after_20(rec):
            done.append(rec)
            if len(done) == 20:
                os.kill(victim, signal.SIGKILL)

        recs = pool.replay(server_url, LLMServingProtocol(), OPTS, plan_of(["ok"] * 200, gap=0.01), kill_after_20,
                           deadline=30)
        died = [r for r in recs[0::2] if r.error and "died" in r.error]
        assert died and all(r.error == f"client: sender process {victim} died (exit code -9)" for r in died)
        assert all(r.ok for r in recs[1::2])             # the other sender finished its part
        assert sorted(r.index for r in done) == sorted(r.index for r in recs if r.sent is not None)
        assert all(r.ok for r in pool.replay(server_url, LLMServingProtocol(), OPTS, plan_of(["ok"] * 10), deadline=10))
        assert victim not in pool.pids and len(pool.pids) == 2     # replaced before that replay


def test_closing_the_pool_leaves_no_process():
    pool = SenderPool(2)
    pids = pool.pids
    assert all(psutil.pid_exists(p) for p in pids)
    pool.close()
    assert gone(pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.replay("http://127.0.0.1:9", LLMServingProtocol(), OPTS, plan_of(["ok"]))


def test_senders_end_when_their_parent_is_killed():
    code = "from serving.replay import SenderPool\nimport time\np = SenderPool(2)\nprint(*p.pids, flush=True)\ntime.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    finally:
        parent.kill()       # ours, by its handle
        parent.wait(10)
    assert gone(pids)


class Loopback(RunningStack):
    """A running stack that is only a URL: the real RunningStack.replay and its sender pool."""
    pgids = []
    protocol = LLMServingProtocol()

    def __init__(self, url):
        self.url, self.stopped = url, False

    def alive(self):
        return True

    def log_tail(self, max_chars=4000):
        return ""

    def _stop(self):
        self.stopped = True


def test_a_stack_keeps_its_senders_across_replays_and_its_stop_ends_them(server_url):
    rs = Loopback(server_url)
    fast = plan_of(["ok"] * 60, gap=0.001)                # 1,000 req/s: several senders
    first = rs.replay(fast, OPTS, deadline=10)
    pids = rs.senders(len(rs._senders.pids)).pids
    assert len(pids) > 1 or (os.cpu_count() or 1) == 1
    second = rs.replay(fast, OPTS, deadline=10)
    assert rs._senders.pids == pids and all(r.ok for r in first.records + second.records)
    rs.stop()
    assert rs.stopped and rs._senders is None and gone(pids)
