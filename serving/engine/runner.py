"""Runs the engine's step loop on its own thread and hands tokens to asyncio handlers.

The HTTP side (event loop) and the compute side (this thread) are split like
llm-serving's server and agent, so a long step does not stall request intake.
"""
from __future__ import annotations

import asyncio
import queue
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Callable

from serving.engine.engine import LLMEngine
from serving.engine.sequence import SamplingParams, Sequence


@dataclass
class TokenEvent:
    token: int | None            # None on a final event that carries no token
    finish_reason: str | None


class EngineRunner:
    def __init__(self, engine: LLMEngine, loop: asyncio.AbstractEventLoop,
                 on_fatal: Callable[[], None] | None = None):
        self.engine = engine
        self.loop = loop
        self.on_fatal = on_fatal  # called on the loop once the compute thread has died
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[int, asyncio.Queue] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(("wake", None))
        self._thread.join(timeout=5)

    def submit(self, prompt_ids: list[int], sampling: SamplingParams) -> tuple[Sequence, asyncio.Queue]:
        seq = Sequence(prompt_ids, sampling)
        q: asyncio.Queue = asyncio.Queue()
        if self.error is not None or not self._thread.is_alive():  # nobody would ever answer it
            q.put_nowait(TokenEvent(None, "predict_failed"))
            return seq, q
        self._streams[seq.seq_id] = q
        self._inbox.put(("add", seq))
        return seq, q

    def abort(self, seq: Sequence) -> None:
        self._inbox.put(("abort", seq))

    def _drain(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.05) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, seq = item
            if kind == "add":
                self.engine.admit(seq)
                if seq.is_finished:  # rejected: can never fit the KV pool
                    self._emit([(seq, TokenEvent(None, seq.finish_reason))])
            elif kind == "abort" and not seq.is_finished:
                self.engine.scheduler.abort(seq)
                self._streams.pop(seq.seq_id, None)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                idle = not self.engine.has_work()
                if idle:
                    self.engine.note_idle()
                self._drain(block=idle)
                if not self.engine.has_work():
                    continue
                _, produced = self.engine.step()
                if produced:
                    self._emit([(s, TokenEvent(t, s.finish_reason)) for s, t in produced])
        except BaseException as err:  # a dead engine must fail every open request and stop the server, not hang
            self.error = err
            where = traceback.extract_tb(err.__traceback__)[-1]
            print(f"engine: the compute thread died ({type(err).__name__}: {err} at {where.filename}:{where.lineno});"
                  f" the server stops", file=sys.stderr, flush=True)
            self.loop.call_soon_threadsafe(self._fail_all, repr(err))
            if self.on_fatal:
                self.loop.call_soon_threadsafe(self.on_fatal)

    def _emit(self, events: list[tuple[Sequence, TokenEvent]]) -> None:
        self.loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: list[tuple[Sequence, TokenEvent]]) -> None:
        for seq, ev in events:
            q = self._streams.get(seq.seq_id)
            if q is not None:
                q.put_nowait(ev)
                if ev.finish_reason:
                    self._streams.pop(seq.seq_id, None)

    def _fail_all(self, why: str) -> None:
        for q in self._streams.values():
            q.put_nowait(TokenEvent(None, "predict_failed"))
        self._streams.clear()
