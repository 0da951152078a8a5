"""Trace replay over HTTP (aiohttp), streamed responses, in the stack's wire protocol.

Open loop: each request is sent at its scheduled offset whatever the server is doing (like
performance_serving's one thread per request). Closed loop (a plan with ``concurrency`` N,
serving.workload.Plan): at most N requests are in flight, the next goes when one ends
(its ``scheduled`` becomes that moment, so send lag still measures the client alone).
While it replays, the client also times its own event loop: every ``LAG_TICK`` s a timer notes
how late it woke (``read_lags``). A loop that wakes late reads late: an answer's events wait in
the socket while the loop is busy, and would be stamped late (docs/metrics.md, read lag).
Every outcome is recorded: a
timeout, a dropped connection or an unparsable line is an error on the record,
never a silently missing row. A request still streaming when the replay ends (its
deadline, or a stop condition) is an error too, never a success.
"""
from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import deque
from typing import Callable, Protocol

import aiohttp
from yarl import URL

from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import RequestRecord, TraceRequest

__all__ = ["Replayer", "StopCondition", "replay", "open_session"]

JSON = {"Content-Type": "application/json"}
LAG_TICK = 0.01      # s between the loop-lag timer's wake-ups (100/s: a few ms of CPU per second)
#: s a kept connection may idle and still be reused. Below every server's own keep-alive (uvicorn's,
#: so vLLM's and llm-serving's, is 5 s): a connection the server closes while a request is being
#: written on it fails that request (ServerDisconnectedError), and aiohttp's default is 15 s. Seen
#: on real vLLM: a second replay of a 96-request burst, 1-2 s after the first, lost requests so.
KEEPALIVE = 2.0


def open_session() -> aiohttp.ClientSession:
    """An HTTP session for replays: keep-alive connections without a cap, and none of the per-request
    work a replay does not need (cookies; decompression, so no Accept-Encoding is offered either);
    each request brings its own timeout; a connection idle over ``KEEPALIVE`` is not reused."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE), headers=JSON,
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                 skip_auto_headers=("Accept-Encoding",))


STOPPED = "cancelled: replay stopped early"   # a request a stop condition cut off


class StopCondition(Protocol):
    """Ends a replay early (e.g. early stopping); polled on the replay's event loop."""
    poll: float
    fired: bool

    def check(self, elapsed: float, records: list[RequestRecord]) -> bool:
        """True to stop now; ``elapsed`` is seconds since the first send."""


class Replayer:
    def __init__(self, base_url: str, protocol: WireProtocol, options: ReplayOptions | None = None,
                 on_done: Callable[[RequestRecord], None] | None = None,
                 on_sent: Callable[[RequestRecord], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.protocol = protocol
        self.opt = options or ReplayOptions()
        self.on_done, self.on_sent = on_done, on_sent
        self.t0 = 0.0
        self.records: list[RequestRecord] = []
        self.read_lags: list[float] = []    # s each loop-lag timer woke late, during the last run()
        self._abort: asyncio.Event | None = None
        self._post_kw: dict = {}     # run() adds its timeout; Replayer.send keeps the session's

    def now(self) -> float:
        return time.monotonic() - self.t0

    def abort(self) -> None:
        """End the replay now (from the replay's event loop): what is unfinished is marked stopped."""
        if self._abort is not None:
            self._abort.set()

    async def run(self, plan: list[tuple[float, TraceRequest]], deadline: float | None = None,
                  stop: StopCondition | None = None, start_at: float | asyncio.Future | None = None,
                  session: aiohttp.ClientSession | None = None) -> list[RequestRecord]:
        """Replay ``plan``; ``start_at`` (a time.monotonic() value, or a future of one awaited once the
        requests are ready) fixes time 0 of the schedule, so replayers in several processes share one
        clock (serving.replay.pool); ``session`` (from open_session) keeps its connections for the
        next replay, else one is opened for this one."""
        if session is None:
            async with open_session() as own:
                return await self.run(plan, deadline, stop, start_at, own)
        self.records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        self._abort = asyncio.Event()
        # the hot path only posts bytes: the URL is parsed and every body encoded before time 0
        url = URL(self.base_url + self.protocol.route(self.opt.stream))
        bodies = [json.dumps(self.protocol.body(req, self.opt)).encode() for _, req in plan]
        # one total timeout per request (a read timeout would re-arm a timer on every read)
        self._post_kw = {"timeout": aiohttp.ClientTimeout(total=self.opt.request_timeout)}
        loop = asyncio.get_running_loop()
        if isinstance(start_at, asyncio.Future):
            start_at = await start_at
        self.t0 = time.monotonic() if start_at is None else start_at
        tasks: list[asyncio.Task] = []
        cap = getattr(plan, "concurrency", None)
        all_sent = asyncio.Event()
        timers: list[asyncio.TimerHandle] = []
        if not plan:
            all_sent.set()

        def launch(i: int) -> None:
            tasks.append(loop.create_task(self._post(session, self.records[i], url, bodies[i])))
            if len(tasks) == len(plan):
                all_sent.set()

        if cap is None:
            # Open loop: each request's task is created at its send time by a timer of the loop:
            # N tasks made at t0 would all take their first step together and delay the earliest
            # sends (bench/replay.py), and one timer each costs less than a coroutine sleeping
            # between sends.
            base = loop.time() - (time.monotonic() - self.t0)
            timers = [loop.call_at(base + rec.scheduled, launch, i) for i, rec in enumerate(self.records)]
        slots = asyncio.Semaphore(cap) if cap else None
        freed: deque[float] = deque()   # when each slot came free, in order

        async def in_slot(i: int) -> None:
            try:
                await self._post(session, self.records[i], url, bodies[i])
            finally:
                freed.append(self.now())
                slots.release()

        async def dispatch() -> None:
            if slots is None:
                await all_sent.wait()
            # Closed loop: at most ``cap`` in flight, the next one sent when a slot comes free.
            for k, rec in enumerate(self.records if slots is not None else ()):
                delay = rec.scheduled - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                if k >= cap:                # due once the (k - cap + 1)th slot came free
                    rec.scheduled = max(rec.scheduled, freed.popleft())
                tasks.append(asyncio.create_task(in_slot(k)))
            await asyncio.gather(*tasks, return_exceptions=True)

        self.read_lags = []
        watch = loop.create_task(self._watch_loop())
        waiters = [asyncio.create_task(dispatch()), asyncio.create_task(self._abort.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(self._watch(stop)))
        try:
            await asyncio.wait(waiters, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reason = STOPPED if self._abort.is_set() else "timeout: replay deadline"
            watch.cancel()
            for h in timers:
                h.cancel()
            for t in (*waiters, *tasks):
                t.cancel()
            await asyncio.gather(*waiters, *tasks, return_exceptions=True)
            for rec in self.records:
                if rec.done is None and rec.error is None:
                    rec.error = reason
                    if rec.sent is not None and self.on_done:
                        self.on_done(rec)  # sent but cut off: reported once, as failed
        return self.records

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            self.read_lags.append(max(0.0, loop.time() - due))

    async def _watch(self, stop: StopCondition) -> None:
        while True:
            await asyncio.sleep(stop.poll)
            sent = [r.sent for r in self.records if r.sent is not None]
            if sent and stop.check(self.now() - min(sent), self.records):
                stop.fired = True
                self._abort.set()
                return

    async def send(self, session: aiohttp.ClientSession, rec: RequestRecord, req: TraceRequest) -> None:
        """Send ``req`` at ``rec.scheduled`` (at once if that is past) and record every outcome in ``rec``."""
        delay = rec.scheduled - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps(self.protocol.body(req, self.opt)).encode()
        await self._post(session, rec, URL(self.base_url + self.protocol.route(self.opt.stream)), body)

    async def _post(self, session: aiohttp.ClientSession, rec: RequestRecord, url: URL, body: bytes) -> None:
        completed = False
        try:
            rec.sent = self.now()
            if self.on_sent:
                self.on_sent(rec)
            async with session.post(url, data=body, **self._post_kw) as resp:
                if resp.status != 200:
                    rec.error = f"http {resp.status}: {(await resp.text())[:200]}"
                elif self.opt.stream:
                    await self.protocol.read_stream(resp, rec, self.now)
                else:
                    data = await resp.json(content_type=None)
                    rec.first_token = rec.done = self.now()
                    self.protocol.read_full(data, rec)
            completed = True
        except asyncio.TimeoutError:
            rec.error = f"timeout: no complete response in {self.opt.request_timeout:g} s"
        except (aiohttp.ClientError, ConnectionError) as err:
            rec.error = f"connection: {type(err).__name__}: {err}"
        except (ValueError, UnicodeDecodeError) as err:
            rec.error = f"bad_response: {err}"
        except Exception as err:  # a fault of the client itself is still a record, never a lost row
            rec.error = f"client: {type(err).__name__}: {err}"
        finally:
            # A stream cut by the deadline or a stop raises CancelledError here: it stays
            # unfinished (run() marks it) and is never counted as a success.
            if completed and rec.error is None:
                rec.done = rec.done or self.now()
                if rec.finish_reason in self.protocol.error_reasons:
                    rec.error = f"server: {rec.finish_reason}"
                elif rec.n_tokens == 0:
                    rec.error = "bad_response: no tokens in the response"
            if self.on_done and (completed or rec.error is not None):
                self.on_done(rec)


def replay(base_url: str, protocol: WireProtocol, plan: list[tuple[float, TraceRequest]],
           options: ReplayOptions | None = None, deadline: float | None = None, on_done=None) -> list[RequestRecord]:
    return run_loop(Replayer(base_url, protocol, options, on_done).run(plan, deadline))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_loop(coro):
    """Run ``coro`` on a fresh event loop (the one place that picks the loop, sender processes included).

    asyncio's own: uvloop, measured with bench/replay.py on this 2-core host (load 4-8), cut CPU per
    request by as much as it cut bare aiohttp's (0.70 -> 0.60 ms against 0.67 -> 0.60), and the
    sender pool's workers died under it in the rate ladder, so it is not used.

    A stop signal (INT, TERM, HUP) whose Python handler is set (Ctrl-C's, or tune's that turns each
    into KeyboardInterrupt) cancels the coroutine while the loop runs, and that handler is called once
    the loop has closed. Raised inside the loop, the exception could land in the loop's own
    bookkeeping and leave ``asyncio.run`` waiting for ever on a task that lost its wake-up (seen: a
    SIGINT mid-replay left ``tune`` in Runner.close for 84 minutes)."""
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(coro)
    got: list[int] = []
    previous: dict[int, Callable] = {}

    async def guarded():
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def on_signal(sig: int) -> None:
            if not got:   # the first one wins, as tune's own handler has it
                got.append(sig)
                task.cancel()

        for sig in STOP_SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                previous[sig] = handler
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await coro
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)   # remove_signal_handler alone leaves SIG_DFL

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if not got:
            raise
        result = None
    if got:   # also one that came as the coroutine ended: never swallowed
        previous[got[0]](got[0], None)      # outside the loop now: tune's handler raises here
        raise KeyboardInterrupt
    return result
