"""Trace replay over HTTP (aiohttp), streamed responses, in the stack's wire protocol.

Open loop: each request is sent at its scheduled offset whatever the server is doing (like
performance_serving's one thread per request). Closed loop (a plan with ``concurrency`` N,
serving.workload.Plan): at most N requests are in flight, the next goes when one ends
(its ``scheduled`` becomes that moment, so send lag still measures the client alone).
Every outcome is recorded: a
timeout, a dropped connection or an unparsable line is an error on the record,
never a silently missing row. A request still streaming when the replay ends (its
deadline, or a stop condition) is an error too, never a success.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable, Protocol

import aiohttp

from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import RequestRecord, TraceRequest

__all__ = ["Replayer", "StopCondition", "replay"]


class StopCondition(Protocol):
    """Ends a replay early (e.g. early stopping); polled on the replay's event loop."""
    poll: float
    fired: bool

    def check(self, elapsed: float, records: list[RequestRecord]) -> bool:
        """True to stop now; ``elapsed`` is seconds since the first send."""


class Replayer:
    def __init__(self, base_url: str, protocol: WireProtocol, options: ReplayOptions | None = None,
                 on_done: Callable[[RequestRecord], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.protocol = protocol
        self.opt = options or ReplayOptions()
        self.on_done = on_done
        self.t0 = 0.0
        self.records: list[RequestRecord] = []
        self._abort: asyncio.Event | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, plan: list[tuple[float, TraceRequest]], deadline: float | None = None,
                  stop: StopCondition | None = None) -> list[RequestRecord]:
        self.records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        self._abort = asyncio.Event()
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.opt.request_timeout, sock_read=self.opt.request_timeout)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            self.t0 = time.monotonic()
            tasks: list[asyncio.Task] = []
            cap = getattr(plan, "concurrency", None)
            slots = asyncio.Semaphore(cap) if cap else None
            freed: deque[float] = deque()   # when each slot came free, in order

            async def in_slot(rec: RequestRecord, req: TraceRequest) -> None:
                try:
                    await self.send(session, rec, req)
                finally:
                    freed.append(self.now())
                    slots.release()

            async def dispatch() -> None:
                # Each request's task is created at its send time: N tasks made at t0 would all
                # take their first step together and delay the earliest sends (bench/replay.py).
                for k, (rec, (_, req)) in enumerate(zip(self.records, plan)):
                    delay = rec.scheduled - self.now()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if slots is None:
                        tasks.append(asyncio.create_task(self.send(session, rec, req)))
                        continue
                    await slots.acquire()
                    if k >= cap:                # due once the (k - cap + 1)th slot came free
                        rec.scheduled = max(rec.scheduled, freed.popleft())
                    tasks.append(asyncio.create_task(in_slot(rec, req)))
                await asyncio.gather(*tasks, return_exceptions=True)

            waiters = [asyncio.create_task(dispatch()), asyncio.create_task(self._abort.wait())]
            if stop is not None:
                waiters.append(asyncio.create_task(self._watch(stop)))
            try:
                await asyncio.wait(waiters, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reason = "cancelled: replay stopped early" if self._abort.is_set() else "timeout: replay deadline"
                for t in (*waiters, *tasks):
                    t.cancel()
                await asyncio.gather(*waiters, *tasks, return_exceptions=True)
                for rec in self.records:
                    if rec.done is None and rec.error is None:
                        rec.error = reason
                        if rec.sent is not None and self.on_done:
                            self.on_done(rec)  # sent but cut off: reported once, as failed
        return self.records

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
        completed = False
        try:
            body = self.protocol.body(req, self.opt)
            url = self.base_url + self.protocol.route(self.opt.stream)
            rec.sent = self.now()
            async with session.post(url, json=body) as resp:
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
    return asyncio.run(Replayer(base_url, protocol, options, on_done).run(plan, deadline))
