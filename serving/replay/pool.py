"""Sender processes started once and reused by every replay, so the client is never the limit of a fast stack.

One event loop spends ~0.5 ms of CPU per streamed request (bench/replay.py): 2,000 req/s would
take all of one core, and its send lag would grow long before that. A capacity search replays
ten times or more on one running stack. So a SenderPool starts its ``workers`` processes once
(~1-2 s: fresh interpreters importing aiohttp, side by side) and every replay deals its plan
round-robin to them. Each worker keeps its event loop and one HTTP session per base URL
(keep-alive connections included) between replays, and replays its part with
serving.replay.client.Replayer on a clock shared by all: time 0 is one time.monotonic()
instant, which is system-wide.

While a replay runs, each worker sends what changed (a request sent, a request ended) every
``flush`` seconds, so the parent keeps one live view of the records: it calls ``on_done``,
polls the stop condition and tells every worker to stop when it fires. A worker sends its full
records (per-event and per-token times included) when its part ends.

Nothing is left running and nothing hangs: ``close()`` (or leaving the ``with`` block) ends the
workers; a worker whose parent dies sees its pipe close and ends; a worker that dies during a
replay makes its unfinished requests error records (``client: sender process ... died``) and
is replaced before the next replay; one that stops answering is killed once the replay's
deadline is ``GRACE`` seconds past.
"""
from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Callable

from serving.replay.client import Replayer, StopCondition, open_session, run_loop
from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import RequestRecord, TraceRequest

__all__ = ["SenderPool"]

READY_TIMEOUT = 60.0   # s for a worker to start, or to take its part of a plan
GRACE = 30.0           # s past a replay's deadline before a silent worker is killed
CLOSE_WAIT = 5.0       # s a closing worker has to end before it is killed
START_MARGIN = 0.05    # s from "go" to time 0: every worker is awake and waiting by then

#: a live update: (position in the plan, sent, first_token, done, n_tokens, finish_reason, error)
Update = tuple[int, float | None, float | None, float | None, int, str | None, str | None]


def _update(pos: int, rec: RequestRecord) -> Update:
    return pos, rec.sent, rec.first_token, rec.done, rec.n_tokens, rec.finish_reason, rec.error


class _Worker:
    """One sender process: waits for jobs on its pipe, replays each on its own event loop."""

    def __init__(self, conn: Connection, flush: float):
        self.conn, self.flush = conn, flush
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.replayer: Replayer | None = None

    def _read(self) -> None:
        """The pipe is readable: a stop or close ends the running replay; EOF means the parent is gone."""
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            msg = ("close",)
        if msg[0] in ("stop", "close") and self.replayer is not None:
            self.replayer.abort()
        if msg[0] != "stop":
            self.inbox.put_nowait(msg)

    def _send(self, msg: tuple) -> bool:
        try:
            self.conn.send(msg)
            return True
        except (BrokenPipeError, OSError):   # the parent is gone: nobody to report to
            return False

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._read)
        orphaned = loop.create_task(self._watch_parent(os.getppid()))
        sessions = {}
        self._send(("ready", os.getpid()))
        try:
            while (msg := await self.inbox.get())[0] == "job":
                _, url, protocol, options, positions, plan, deadline = msg
                if url not in sessions:
                    sessions[url] = open_session()
                if not await self._job(sessions[url], url, protocol, options, positions, plan, deadline):
                    return
        finally:
            orphaned.cancel()
            for session in sessions.values():
                await session.close()

    async def _watch_parent(self, ppid: int) -> None:
        """Also end when the parent is gone but the pipe is not closed (a forked copy of it holds it)."""
        while os.getppid() == ppid:
            await asyncio.sleep(1.0)
        if self.replayer is not None:
            self.replayer.abort()
        self.inbox.put_nowait(("close",))

    async def _job(self, session, url: str, protocol: WireProtocol, options: ReplayOptions,
                   positions: list[int], plan: list[tuple[float, TraceRequest]], deadline: float | None) -> bool:
        """Replay this worker's part of a plan once the parent says go; False when the parent is gone."""
        changed: dict[int, RequestRecord] = {}
        where: dict[int, int] = {}     # id of a record -> its position in the whole plan

        def note(rec: RequestRecord) -> None:
            changed[where[id(rec)]] = rec

        rp = self.replayer = Replayer(url, protocol, options, on_done=note, on_sent=note)
        start_at = asyncio.get_running_loop().create_future()
        run = asyncio.create_task(rp.run(plan, deadline, start_at=start_at, session=session))
        await asyncio.sleep(0)         # run() has made its records and bodies and waits for time 0
        where.update({id(r): p for p, r in zip(positions, rp.records)})
        go = await self.inbox.get() if self._send(("taken",)) else ("close",)
        if go[0] != "go":
            run.cancel()
            self.replayer = None
            return False
        start_at.set_result(go[1])

        async def flusher() -> None:
            while True:
                await asyncio.sleep(self.flush)
                if changed:
                    batch = [_update(p, r) for p, r in changed.items()]
                    changed.clear()
                    if not self._send(("changed", batch)):
                        rp.abort()
                        return

        fl = asyncio.create_task(flusher())
        try:
            records = await run
        finally:
            fl.cancel()
            self.replayer = None
        return self._send(("end", [(*_update(p, r), r.token_times, r.chunk_times)
                                   for p, r in zip(positions, records)], rp.read_lags))


def _serve(conn: Connection, flush: float) -> None:
    """A worker process's entry point."""
    # a terminal's Ctrl-C and hang-up reach its whole process group: the parent handles them and
    # closes the pool in its clean-up, so a replay it still records is not cut here first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run_loop(_Worker(conn, flush).main())
    conn.close()


class SenderPool:
    """``workers`` sender processes, started at once and reused by every ``replay`` until ``close``."""

    def __init__(self, workers: int, flush: float = 0.05):
        self.size, self.flush = max(1, workers), flush
        self._ctx = mp.get_context("spawn")   # no fork: the parent may run threads (the probe sampler)
        self._procs: list = []
        self._conns: list[Connection] = []
        self.records: list[RequestRecord] = []
        self.read_lags: list[float] = []       # the last replay's loop-lag samples, every worker's
        self.t0 = 0.0                          # time.monotonic() of the last replay's time 0
        started = time.monotonic()
        try:
            for _ in range(self.size):   # all started before any is awaited: they start side by side
                proc, conn = self._spawn()
                self._procs.append(proc)
                self._conns.append(conn)
            for k in range(self.size):
                self._await(k, "ready", READY_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.start_s = time.monotonic() - started   # what the pool cost to start, once

    @property
    def closed(self) -> bool:
        return not self._procs

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.flush), daemon=True, name="replay-sender")
        proc.start()
        child.close()
        return proc, parent

    def _await(self, k: int, kind: str, timeout: float) -> tuple:
        conn, proc = self._conns[k], self._procs[k]
        if wait([conn, proc.sentinel], timeout) and conn.poll():
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("gone",)
            if msg[0] == kind:
                return msg
        raise RuntimeError(f"replay sender process {proc.pid} did not answer '{kind}' within {timeout:g} s "
                           f"(exit code {proc.exitcode})")

    def _revive(self) -> None:
        """Replace every worker that died since it was started (its replay was already failed)."""
        for k, proc in enumerate(self._procs):
            if not proc.is_alive():
                self._conns[k].close()
                proc.join(0)
                self._procs[k], self._conns[k] = self._spawn()
                self._await(k, "ready", READY_TIMEOUT)

    def replay(self, base_url: str, protocol: WireProtocol, options: ReplayOptions,
               plan: list[tuple[float, TraceRequest]], on_done: Callable[[RequestRecord], None] | None = None,
               deadline: float | None = None, stop: StopCondition | None = None) -> list[RequestRecord]:
        """The Replayer's contract (one record per request in plan order, every outcome kept), sent by the pool."""
        if self.closed:
            raise RuntimeError("the sender pool is closed")
        self.records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        self.read_lags = []
        owner = [k % self.size for k in range(len(plan))]
        try:
            self._revive()
            for k, conn in enumerate(self._conns):
                positions = list(range(k, len(plan), self.size))
                conn.send(("job", base_url, protocol, options, positions, [plan[p] for p in positions], deadline))
            for k in range(self.size):
                self._await(k, "taken", READY_TIMEOUT)
            start_at = self.t0 = time.monotonic() + START_MARGIN   # every worker has its part, ready to send
            for conn in self._conns:
                conn.send(("go", start_at))
        except (RuntimeError, OSError) as err:
            self.close()      # workers half into a replay are of no use to the next one
            raise RuntimeError(f"the sender pool could not start the replay: {err}") from err
        dead = self._collect(start_at, deadline, stop, on_done)
        for pos, rec in enumerate(self.records):
            if owner[pos] in dead and rec.done is None and rec.error is None:
                proc = self._procs[owner[pos]]
                rec.error = f"client: sender process {proc.pid} died (exit code {proc.exitcode})"
                if rec.sent is not None and on_done:
                    on_done(rec)      # sent but cut off: reported once, as failed
        return self.records

    def _collect(self, start_at: float, deadline: float | None, stop: StopCondition | None,
                 on_done: Callable[[RequestRecord], None] | None) -> set[int]:
        """Merge what the workers send until each has ended; returns the workers that died instead."""
        live = {conn: k for k, conn in enumerate(self._conns)}
        dead: set[int] = set()
        reported: set[int] = set()
        give_up = start_at + deadline + GRACE if deadline is not None else math.inf
        next_poll = time.monotonic() + (stop.poll if stop else math.inf)
        while live:
            now = time.monotonic()
            if now >= give_up:
                for k in live.values():    # silent past the deadline: ours to kill, by its handle
                    self._procs[k].kill()
                    self._procs[k].join(5)
                dead |= set(live.values())
                break
            sentinels = {self._procs[k].sentinel: conn for conn, k in live.items()}
            until = min(next_poll, give_up)
            for obj in wait([*live, *sentinels], timeout=None if math.isinf(until) else max(0.0, until - now)):
                conn = sentinels.get(obj, obj)
                if conn not in live or (obj is not conn and conn.poll()):
                    continue               # a dead worker's last messages are read first
                try:
                    kind, batch, *lags = conn.recv() if obj is conn else ("died", ())
                except (EOFError, OSError):
                    kind, batch, lags = "died", (), []
                if lags:
                    self.read_lags.extend(lags[0])
                for item in batch:
                    self._merge(item, reported, on_done)
                if kind in ("end", "died"):
                    if kind == "died":
                        dead.add(live[conn])
                    del live[conn]
            if stop is not None and not stop.fired and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + stop.poll
                sent = [r.sent for r in self.records if r.sent is not None]
                if sent and stop.check(time.monotonic() - start_at - min(sent), self.records):
                    stop.fired = True
                    for conn in live:
                        try:
                            conn.send(("stop",))
                        except OSError:
                            pass
        return dead

    def _merge(self, item: tuple, reported: set[int], on_done) -> None:
        pos, sent, first, done, n_tokens, finish, error = item[:7]
        rec = self.records[pos]
        rec.sent, rec.first_token, rec.done, rec.n_tokens, rec.finish_reason, rec.error = \
            sent, first, done, n_tokens, finish, error
        if len(item) > 7:
            rec.token_times, rec.chunk_times = item[7], item[8]
        if (done is not None or error is not None) and sent is not None and pos not in reported:
            reported.add(pos)
            if on_done:
                on_done(rec)

    def close(self) -> None:
        """End every worker (asked first, killed after CLOSE_WAIT s); the pool cannot replay after this."""
        for conn in self._conns:
            try:
                conn.send(("close",))
            except OSError:
                pass
        until = time.monotonic() + CLOSE_WAIT
        for proc, conn in zip(self._procs, self._conns):
            # what a worker still sends is read, so one blocked writing its records can end
            while proc.is_alive() and (left := until - time.monotonic()) > 0:
                if conn in wait([conn, proc.sentinel], left):
                    try:
                        conn.recv()
                    except (EOFError, OSError):
                        proc.join(max(0.0, until - time.monotonic()))
            if proc.is_alive():
                proc.kill()   # our own child, by its handle
            proc.join(5)
            conn.close()
        self._procs, self._conns = [], []

    def __enter__(self) -> "SenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
