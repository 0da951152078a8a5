"""Open-loop trace replay over HTTP (aiohttp), llm-serving's API shape, streamed responses.

Each request is sent at its scheduled offset whatever the server is doing (like
performance_serving's one thread per request), and every outcome is recorded: a
timeout, a dropped connection or an unparsable line is an error on the record,
never a silently missing row.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

from tuner.records import RequestRecord
from tuner.trace import TraceRequest

ERROR_REASONS = {"predict_failed", "prompt_out_of_range", "prompt_token_ids_empty"}


@dataclass
class ReplayOptions:
    stream: bool = True
    parameters: dict = field(default_factory=lambda: {"do_sample": False, "return_full_text": True})
    request_timeout: float = 600.0
    route: str = "/models/llama2"


def _parse_line(line: bytes) -> dict:
    text = line.decode("utf-8").strip()
    if text.startswith("data:"):
        text = text[5:].strip()
    obj = json.loads(text)
    data = obj.get("data", obj) if isinstance(obj, dict) else None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        raise ValueError(f"unexpected stream line {text[:80]!r}")
    return data


class Replayer:
    def __init__(self, base_url: str, options: ReplayOptions | None = None,
                 on_done: Callable[[RequestRecord], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.opt = options or ReplayOptions()
        self.on_done = on_done
        self.t0 = 0.0
        self.records: list[RequestRecord] = []
        self._abort = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def abort(self) -> None:
        """Stop the replay early (early stopping); unfinished requests are recorded as cancelled."""
        self._abort.set()

    async def run(self, plan: list[tuple[float, TraceRequest]], deadline: float | None = None) -> list[RequestRecord]:
        self.records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.opt.request_timeout, sock_read=self.opt.request_timeout)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            self.t0 = time.monotonic()
            tasks: list[asyncio.Task] = []

            async def dispatch() -> None:
                # Each request's task is created at its send time: N tasks made at t0 would all
                # take their first step together and delay the earliest sends (bench/replay.py).
                for rec, (_, req) in zip(self.records, plan):
                    delay = rec.scheduled - self.now()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(self.send(session, rec, req)))
                await asyncio.gather(*tasks, return_exceptions=True)

            main, waiter = asyncio.create_task(dispatch()), asyncio.create_task(self._abort.wait())
            try:
                await asyncio.wait([main, waiter], timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reason = "cancelled: replay stopped early" if self._abort.is_set() else "timeout: replay deadline"
                for t in (waiter, main, *tasks):
                    t.cancel()
                await asyncio.gather(main, *tasks, return_exceptions=True)
                for rec in self.records:
                    if rec.done is None and rec.error is None:
                        rec.error = reason
        return self.records

    async def send(self, session: aiohttp.ClientSession, rec: RequestRecord, req: TraceRequest) -> None:
        """Send ``req`` at ``rec.scheduled`` (at once if that is past) and record every outcome in ``rec``."""
        delay = rec.scheduled - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        params = dict(self.opt.parameters, max_new_tokens=req.output_len)
        body = {"inputs": req.prompt, "parameters": params, "stream": self.opt.stream}
        url = self.base_url + self.opt.route + ("/generate_stream" if self.opt.stream else "/generate")
        rec.sent = self.now()
        try:
            async with session.post(url, json=body) as resp:
                if resp.status != 200:
                    rec.error = f"http {resp.status}: {(await resp.text())[:200]}"
                elif self.opt.stream:
                    await self._read_stream(resp, rec)
                else:
                    self._read_full(await resp.json(content_type=None), rec)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            rec.error = f"timeout: no complete response in {self.opt.request_timeout:g} s"
        except (aiohttp.ClientError, ConnectionError) as err:
            rec.error = f"connection: {type(err).__name__}: {err}"
        except (ValueError, UnicodeDecodeError) as err:
            rec.error = f"bad_response: {err}"
        finally:
            if rec.error is None and rec.done is None:
                rec.done = self.now()
            if rec.error is None and rec.finish_reason in ERROR_REASONS:
                rec.error = f"server: {rec.finish_reason}"
            if rec.error is None and rec.n_tokens == 0:
                rec.error = "bad_response: no tokens in the response"
            if self.on_done:
                self.on_done(rec)

    async def _read_stream(self, resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        async for line in resp.content:
            if not line.strip():
                continue
            t = self.now()
            data = _parse_line(line)
            if rec.first_token is None:
                rec.first_token = t  # performance_serving: first non-empty line
            if data.get("tokens"):
                rec.token_times.append(t)
                rec.n_tokens += 1
            if data.get("finish_reason"):
                rec.finish_reason = data["finish_reason"]
        rec.done = self.now()
        if rec.finish_reason is None:
            rec.error = "bad_response: stream closed without a finish_reason"

    def _read_full(self, data: dict, rec: RequestRecord) -> None:
        if isinstance(data, list):
            data = data[0] if data else {}
        rec.done = rec.first_token = self.now()
        rec.finish_reason = data.get("finish_reason")
        rec.n_tokens = int(data.get("generated_tokens") or len(data.get("tokens") or []))


def replay(base_url: str, plan: list[tuple[float, TraceRequest]], options: ReplayOptions | None = None,
           deadline: float | None = None, on_done=None) -> list[RequestRecord]:
    return asyncio.run(Replayer(base_url, options, on_done).run(plan, deadline))
