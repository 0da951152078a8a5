"""Open-loop replay from several sender processes, so the client is never the limit of a fast stack.

One Python event loop sends ~1,000 requests/s at most (bench/replay.py); a plan faster than that
is dealt round-robin to ``workers`` processes, each with its own event loop and HTTP session
(serving.replay.client.Replayer) on one shared clock: every worker's time 0 is the same
time.monotonic() instant, which is system-wide. Each worker streams what changed (a request
sent, a request ended) to the parent every ``flush`` seconds, so the parent keeps one live view
of the records: it calls ``on_done``, polls the stop condition and tells every worker to stop
when it fires. Each worker sends its full records back when it ends.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection, wait
from typing import Callable

from serving.replay.client import Replayer, StopCondition, run_loop
from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import RequestRecord, TraceRequest

__all__ = ["ParallelReplayer", "workers_for", "PARALLEL_RATE"]

#: a plan whose mean rate is above this (req/s) gets more than one sender process
PARALLEL_RATE = 300.0
#: and at least this many requests (a worker costs ~0.5 s to start)
PARALLEL_MIN = 500
READY_TIMEOUT = 60.0


def workers_for(plan: list[tuple[float, TraceRequest]], requested: int | None = None) -> int:
    """Sender processes for ``plan``: 1 for a closed-loop plan (one process keeps its concurrency cap),
    else ``requested`` if given, else 1 for a small or slow plan and one per CPU (at most 4) for a fast one."""
    if getattr(plan, "concurrency", None) is not None:
        return 1
    if requested is not None:
        return max(1, requested)
    if len(plan) < PARALLEL_MIN:
        return 1
    span = plan[-1][0] - plan[0][0]
    rate = len(plan) / span if span > 0 else math.inf
    return 1 if rate < PARALLEL_RATE else max(1, min(os.cpu_count() or 1, 4))


def _worker(conn: Connection, base_url: str, protocol: WireProtocol, options: ReplayOptions,
            part: list[tuple[int, float, TraceRequest]], flush: float) -> None:
    """One sender: replays its slice of the plan on its own event loop, reporting changes as it goes."""
    import asyncio

    changed: list[tuple[int, RequestRecord]] = []
    pos = [p for p, _, _ in part]

    def note(rec: RequestRecord) -> None:
        changed.append((rec._pos, rec))  # noqa: SLF001  (set below: the record's place in the whole plan)

    async def main() -> list[RequestRecord]:
        rp = Replayer(base_url, protocol, options, on_done=note, on_sent=note)
        conn.send(("ready",))
        _, start_at, deadline = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        loop = asyncio.get_running_loop()

        def stop_requested() -> None:
            if conn.poll():
                conn.recv()
                rp.abort()

        loop.add_reader(conn.fileno(), stop_requested)

        async def flusher() -> None:
            while True:
                await asyncio.sleep(flush)
                if changed:
                    batch = [(p, _light(r)) for p, r in changed]
                    changed.clear()
                    conn.send(("changed", batch))

        run = loop.create_task(rp.run([(off, req) for _, off, req in part], deadline, start_at=start_at))
        await asyncio.sleep(0)
        for p, rec in zip(pos, rp.records):
            rec._pos = p  # noqa: SLF001
        fl = loop.create_task(flusher())
        try:
            return await run
        finally:
            fl.cancel()
            loop.remove_reader(conn.fileno())

    records = run_loop(main())
    conn.send(("end", list(zip(pos, records))))
    conn.close()


def _light(rec: RequestRecord) -> RequestRecord:
    """What the parent needs live (times, counts, error), without the per-token times."""
    return RequestRecord(rec.index, rec.prompt_len, rec.output_len, rec.scheduled, rec.sent, rec.first_token,
                         rec.done, [], rec.n_tokens, rec.finish_reason, rec.error)


class ParallelReplayer:
    """The Replayer's contract (one record per request, every outcome kept) from ``workers`` processes."""

    def __init__(self, base_url: str, protocol: WireProtocol, options: ReplayOptions | None = None,
                 on_done: Callable[[RequestRecord], None] | None = None, workers: int = 2, flush: float = 0.05):
        self.base_url, self.protocol = base_url, protocol
        self.opt = options or ReplayOptions()
        self.on_done, self.workers, self.flush = on_done, workers, flush
        self.records: list[RequestRecord] = []
        self.t0 = 0.0                      # time.monotonic() of the schedule's time 0

    def run(self, plan: list[tuple[float, TraceRequest]], deadline: float | None = None,
            stop: StopCondition | None = None) -> list[RequestRecord]:
        self.records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        ctx = mp.get_context("spawn")  # no fork: the parent may run threads (the probe sampler)
        parts = [[(i, off, req) for i, (off, req) in enumerate(plan) if i % self.workers == w]
                 for w in range(self.workers)]
        conns, procs = [], []
        try:
            for part in parts:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(child, self.base_url, self.protocol, self.opt, part,
                                                      self.flush), daemon=True)
                p.start()
                child.close()
                conns.append(parent)
                procs.append(p)
            for c in conns:
                if not c.poll(READY_TIMEOUT) or c.recv()[0] != "ready":
                    raise RuntimeError(f"a replay worker did not start within {READY_TIMEOUT:g} s")
            start_at = self.t0 = time.monotonic() + 0.05
            for c in conns:
                c.send(("go", start_at, deadline))
            self._collect(conns, start_at, stop)
        finally:
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.terminate()  # our own child, by its handle
                    p.join(5)
            for c in conns:
                c.close()
        for rec in self.records:
            if rec.sent is None and rec.error is None:   # a worker that died: its requests are failures
                rec.error = "client: replay worker ended without a record"
        return self.records

    def _collect(self, conns: list[Connection], start_at: float, stop: StopCondition | None) -> None:
        live = list(conns)
        reported: set[int] = set()
        next_poll = time.monotonic() + (stop.poll if stop else math.inf)
        while live:
            ready = wait(live, timeout=max(0.0, min(next_poll - time.monotonic(), 0.5)))
            for c in ready:
                try:
                    kind, batch = c.recv()
                except (EOFError, OSError):
                    live.remove(c)
                    continue
                for pos, rec in batch:
                    self._merge(pos, rec, reported, final=kind == "end")
                if kind == "end":
                    live.remove(c)
            if stop is not None and not stop.fired and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + stop.poll
                sent = [r.sent for r in self.records if r.sent is not None]
                if sent and stop.check(time.monotonic() - start_at - min(sent), self.records):
                    stop.fired = True
                    for c in live:
                        try:
                            c.send(("stop",))
                        except OSError:
                            pass

    def _merge(self, pos: int, rec: RequestRecord, reported: set[int], final: bool) -> None:
        if not final and self.records[pos].token_times and not rec.token_times:
            return                                   # never replace a full record by a light one
        self.records[pos] = rec
        ended = rec.done is not None or rec.error is not None
        if ended and pos not in reported and (rec.sent is not None):
            reported.add(pos)
            if self.on_done:
                self.on_done(rec)
