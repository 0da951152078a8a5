"""A stop signal during a replay cancels it inside the loop and is raised once the loop has closed
(serving.replay.client.run_loop): raised inside the loop, a SIGINT once left `tune` waiting for ever."""
import asyncio
import os
import signal
import threading
import time

import pytest
from aiohttp import web

from serving.replay.client import Replayer, run_loop
from serving.replay.openai import OpenAIProtocol
from serving.workload import Plan, TraceRequest
from tests.serving.replay.servers import serve


async def slow_stream(request):
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(200):
        await resp.write(b'data: {"choices": [{"text": "x"}]}\n\n')
        await asyncio.sleep(0.05)
    await resp.write(b"data: [DONE]\n\n")
    return resp


@pytest.fixture
def server():
    """The server on a loop of its own thread (the replay owns the main thread's loop)."""
    loop, ready, stop = asyncio.new_event_loop(), threading.Event(), threading.Event()
    box = {}

    async def main():
        async with serve({"/v1/completions": slow_stream}) as url:
            box["url"] = url
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)
    yield box["url"]
    stop.set()
    t.join(10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_mid_replay_ends_it_and_is_raised_after_the_loop(server, sig):
    from tuner.study.signals import StopSignal, stop_signals_interrupt
    plan = Plan([(0.01 * i, TraceRequest(i, "p", 200, 1)) for i in range(500)])   # 5 s of sends, 10 s streams
    replayer = Replayer(server, OpenAIProtocol("m"))
    # as a terminal has them (a test worker may run with SIGINT ignored, which tune leaves ignored)
    before = signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    try:
        threading.Timer(0.5, os.kill, args=(os.getpid(), sig)).start()
        t = time.monotonic()
        with stop_signals_interrupt():
            handler = signal.getsignal(sig)
            with pytest.raises(StopSignal):
                run_loop(replayer.run(plan))
            assert signal.getsignal(sig) is handler       # tune's handler back in place for the next replay
        took = time.monotonic() - t
    finally:
        signal.signal(sig, before)
    assert took < 3, took
    sent = [r for r in replayer.records if r.sent is not None]
    assert 0 < len(sent) < len(plan)                  # no send after the stop
    assert all(r.error is not None for r in replayer.records if r.done is None)


def test_without_a_python_handler_the_loop_leaves_signals_alone(server):
    """SIG_IGN stays ignored (nohup): the replay runs to its end."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        plan = Plan([(0.0, TraceRequest(0, "p", 3, 1))])
        threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGHUP)).start()
        recs = run_loop(Replayer(server, OpenAIProtocol("m")).run(plan, deadline=0.6))
        assert len(recs) == 1 and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)
