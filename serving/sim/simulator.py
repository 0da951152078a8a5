"""A heap-based event loop on a virtual clock that drives the engine's own Scheduler.

Events are arrivals, step starts and step ends (vidur's loop in miniature). The
Scheduler and BlockManager are serving.engine's classes, unchanged; only the
step time comes from a LatencyModel. Ordering at equal times follows the
embedded runner: requests that arrived are drained before a step is scheduled.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from serving.engine.block_manager import AllocStatus
from serving.engine.scheduler import SchedulerSettings, StepKind, StepPlan
from serving.engine.sequence import SamplingParams, Sequence
from serving.sim.latency import LatencyModel
from serving.workload import RequestRecord, TraceRequest

ARRIVE, STEP_END, STEP_START = 0, 1, 2   # tie order at one instant: drain arrivals first


# The simulator is configured exactly as the engine's scheduler is, without the model.
SimSettings = SchedulerSettings


@dataclass
class SimResult:
    records: list[RequestRecord]
    steps: int = 0
    preemptions: int = 0
    step_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    step_compute: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def usage(self, window: float = 0.25) -> dict[str, float]:
        """Busy % (compute time over wall time) in ``window``-second samples, as a probe would poll it."""
        sent = [r.sent for r in self.records if r.sent is not None]
        done = [r.done for r in self.records if r.done is not None]
        out = {"sim_busy_mean": float("nan"), "sim_busy_peak": float("nan"), "sim_busy_samples": 0.0}
        if sent and done and max(done) > min(sent):
            t0, t1 = min(sent), max(done)
            edges = np.append(np.arange(t0, t1, window), t1)
            busy = np.diff(self._busy_until(edges))
            frac = 100.0 * busy / np.diff(edges)
            out = {"sim_busy_mean": float(100.0 * busy.sum() / (t1 - t0)), "sim_busy_peak": float(frac.max()),
                   "sim_busy_samples": float(len(frac))}
        return out | {"sim_steps": float(self.steps), "sim_preemptions": float(self.preemptions)}

    def _busy_until(self, t: np.ndarray) -> np.ndarray:
        """Compute seconds spent before each time in ``t`` (steps never overlap)."""
        s, c = self.step_starts, self.step_compute
        if s.size == 0:
            return np.zeros_like(t)
        cum = np.concatenate([[0.0], np.cumsum(c)])
        k = np.searchsorted(s, t, side="right")       # steps started by t
        j = np.maximum(k - 1, 0)
        part = np.clip(t - s[j], 0.0, c[j])
        return np.where(k > 0, cum[j] + part, 0.0)


class Simulator:
    def __init__(self, settings: SimSettings, latency: LatencyModel):
        self.settings, self.latency = settings, latency
        # llm-serving's PA path prefills one prompt per step, whatever prefill_batch_size says
        built = replace(settings, prefill_batch_size=(1,)) if latency.single_prefill else settings
        self.blocks, self.scheduler = built.build()
        self.token = 3 if settings.end_token != 3 else 4   # any token but EOS: lengths come from the trace
        self.now = 0.0
        self._heap: list = []
        self._next = None           # the latest event, kept out of the heap while it is the earliest
        self._n = 0
        self._busy = False          # a step is in flight or queued to start
        self._recs: dict[int, RequestRecord] = {}
        self._starts: list[float] = []
        self._compute: list[float] = []
        self._on_done: Callable[[RequestRecord], None] | None = None
        self._delivery = latency.delivery_delay
        self._arrived = 0           # requests taken in since the step in flight began
        self._waiting = None        # closed loop: requests not sent yet, in send order

    def push(self, t: float, kind: int, payload=None) -> None:
        # Steps mostly follow one another with no arrival in between, so the newest event
        # waits in a one-slot buffer in front of the heap instead of a push and a pop.
        self._n += 1
        ev = (t, kind, self._n, payload)
        if self._next is None:
            self._next = ev
        elif ev < self._next:
            heapq.heappush(self._heap, self._next)
            self._next = ev
        else:
            heapq.heappush(self._heap, ev)

    def run(self, plan: list[tuple[float, TraceRequest]],
            on_request: Callable[[RequestRecord], None] | None = None) -> SimResult:
        self._on_done = on_request
        records = [RequestRecord(r.index, r.prompt_len, r.output_len, off) for off, r in plan]
        cap = getattr(plan, "concurrency", None)
        first = records if cap is None else records[:cap]
        if cap is not None:         # closed loop: the rest go one per finished request (_finish)
            self._waiting = iter(records[cap:])
        for rec in first:
            self._send(rec, rec.scheduled)
        handlers = {ARRIVE: self.on_arrival, STEP_START: self.on_step_start, STEP_END: self.on_step_end}
        heap, pop = self._heap, heapq.heappop
        while True:                                     # the earlier of the slot and the heap top, inline
            ev = self._next
            if ev is not None and (not heap or ev < heap[0]):
                self._next = None
            elif heap:
                ev = pop(heap)
            else:
                break
            self.now = ev[0]
            handlers[ev[1]](ev[3])
        return SimResult(records, len(self._starts), self.scheduler.num_preemptions,
                         np.asarray(self._starts), np.asarray(self._compute))

    def _send(self, rec: RequestRecord, at: float) -> None:
        rec.scheduled = rec.sent = at
        self.push(at + self.latency.arrival_delay, ARRIVE, rec)

    # -- events -------------------------------------------------------------
    def on_arrival(self, rec: RequestRecord) -> None:
        if self._busy:
            self._arrived += 1                          # the step in flight shares the host with it
        n_ids = rec.prompt_len + 1                      # the tokenizer adds BOS
        reason = None
        if n_ids <= 1:
            reason = "prompt_token_ids_empty"
        elif n_ids + rec.output_len >= self.settings.seq_length[-1]:
            reason = "prompt_out_of_range"              # llm-serving's Error202, checked before queueing
        else:
            seq = Sequence([1] * n_ids, SamplingParams(max_new_tokens=rec.output_len, ignore_eos=True),
                           arrival_time=self.now)
            if self.scheduler.add(seq) is AllocStatus.NEVER:
                reason = seq.finish_reason              # the KV pool can never hold it
            else:
                self._recs[seq.seq_id] = rec
        if reason:
            self._finish(rec, reason, error=f"server: {reason}")
        elif not self._busy:
            self._busy = True
            self.push(self.now, STEP_START)

    def on_step_start(self, _=None) -> None:
        plan = self.scheduler.schedule()
        if plan is None:
            self._busy, self._arrived = False, 0        # idle until the next arrival
            return
        if not plan.seqs:                               # only swapped requests out; schedule again at once
            self.push(self.now, STEP_START)
            return
        seqs = plan.seqs
        sizes = [len(s.prompt_ids) + len(s.output_ids) for s in seqs]   # Sequence.num_tokens, without the call
        if plan.kind is StepKind.PREFILL:
            compute, host = self.latency.prefill(len(seqs), plan.bucket, max(sizes))
        else:
            compute, host = self.latency.decode(len(seqs), plan.bucket, sum(sizes))
        self._starts.append(self.now)
        self._compute.append(compute)
        self.push(self.now + compute, STEP_END, (plan, host))

    def on_step_end(self, payload: tuple[StepPlan, float]) -> None:
        if self._arrived:                               # requests arrived meanwhile: the step ends later
            extra, self._arrived = self._arrived * self.latency.arrival_cost, 0
            if extra > 0:
                self._compute[-1] += extra
                self.push(self.now + extra, STEP_END, payload)
                return
        plan, host = payload
        seqs = plan.seqs
        self.scheduler.postprocess(plan, [self.token] * len(seqs))
        seen = self.now + self._delivery
        recs = self._recs
        for seq in seqs:
            rec = recs[seq.seq_id]
            if rec.n_tokens == 0:
                rec.first_token = seen
            rec.token_times.append(seen)
            rec.n_tokens += 1
            if seq.finish_reason is not None:
                del recs[seq.seq_id]
                self._finish(rec, seq.finish_reason)
        self.push(self.now + host, STEP_START)

    def _finish(self, rec: RequestRecord, reason: str, error: str | None = None) -> None:
        rec.done = self.now + self.latency.delivery_delay
        if rec.first_token is None:                     # the error line is the first (and only) line
            rec.first_token = rec.done
        rec.finish_reason, rec.error = reason, error
        if self._on_done:
            self._on_done(rec)
        if self._waiting is not None:   # closed loop: the client sends the next one as it sees this end
            nxt = next(self._waiting, None)
            if nxt is not None:
                self._send(nxt, max(nxt.scheduled, rec.done))


def simulate(settings: SimSettings, latency: LatencyModel, plan: list[tuple[float, TraceRequest]],
             on_request: Callable[[RequestRecord], None] | None = None) -> SimResult:
    return Simulator(settings, latency).run(plan, on_request)
