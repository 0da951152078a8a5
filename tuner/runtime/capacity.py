"""Capacity under SLOs: the highest arrival rate a running stack sustains with its SLOs met.

One launch, then a rate search on the running stack (the trial pipeline calls ``search``
instead of one replay when the objective is ``capacity_rps``):
  1. saturation probe: ``saturation_requests`` sent at once; its throughput bounds the rate from
     above (a stack cannot sustain more than it completes flat out; a short replay above it may
     still meet the SLOs only because its queue had no time to grow) and is the first rate tried;
  2. a bracketing search between the highest rate that met the SLOs and the lowest that broke
     them (regula falsi on the SLO load, the worst percentile over its bound, with a bisection
     step whenever one end moved twice in a row), each rate a short open-loop replay of ``requests`` requests, stopped as soon as its verdict
     is a certain FAIL (tuner.runtime.slo.SloStop), until (high - low) / high < ``tolerance``.
Every rate replays the same requests with the same unit-rate Poisson gaps scaled by 1/rate
(common random numbers), so a deterministic stack (the simulator) answers monotonically.
The capacity is the highest rate that passed; [low, high] is its uncertainty.

A capacity measured by a client that fell behind its schedule is the client's, not the stack's:
every rate's send-lag p99 is checked against ``max_send_lag`` and the search fails with
``client_overloaded`` when it is over.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from serving.replay import ReplayOptions
from serving.stacks import RunningStack
from serving.workload import RequestRecord, TraceRequest
from tuner.runtime import slo as slo_mod
from tuner.space.capacity import CapacitySpec

CLIENT_OVERLOADED = "client_overloaded"
#: what each rate tried keeps (the trial's ``capacity_probes`` user attr, the report's curve)
PROBE_KEYS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2e_p99", "itl_p99", "throughput_rps",
              "send_lag_p50", "send_lag_p99")


class ClientOverloaded(RuntimeError):
    """The replay client could not send on schedule: the search measured the client."""


@dataclass
class Probe:
    rate: float                       # req/s asked for (inf: all at once)
    verdict: str                      # slo.PASS | slo.FAIL
    why: str                          # the bound that broke
    planned: int                      # requests in the plan
    replayed: int                     # requests sent before the verdict was certain
    stopped_early: bool               # the live stop ended the replay
    wall_s: float
    metrics: dict[str, float]
    records: list[RequestRecord] = field(repr=False, default_factory=list)
    usage: dict[str, float] = field(repr=False, default_factory=dict)

    def row(self) -> dict:
        """JSON-able summary (user attrs); NaN as None."""
        m = {k: (None if math.isnan(v) else round(v, 6)) for k in PROBE_KEYS
             if isinstance(v := self.metrics.get(k, math.nan), float)}
        return {"rate": None if math.isinf(self.rate) else round(self.rate, 4), "verdict": self.verdict,
                "why": self.why, "planned": self.planned, "replayed": self.replayed,
                "stopped_early": self.stopped_early, "wall_s": round(self.wall_s, 3), **m}


@dataclass
class CapacityResult:
    capacity: float                   # highest rate that met the SLOs (0: none did)
    low: float
    high: float                       # lowest rate that broke them, or the saturation bound
    saturation_rps: float
    probes: list[Probe]

    @property
    def best(self) -> Probe:
        """The probe that stands for the capacity: the highest passing rate, else the lowest rate tried."""
        passed = [p for p in self.probes if p.verdict == slo_mod.PASS and not math.isinf(p.rate)]
        if passed:
            return max(passed, key=lambda p: p.rate)
        return min(self.probes, key=lambda p: p.rate)

    def metrics(self) -> dict:
        replayed = sum(p.replayed for p in self.probes)
        return {"capacity_rps": self.capacity, "capacity_low": self.low,
                "capacity_high": None if math.isinf(self.high) else self.high,
                "capacity_uncertainty": (self.high - self.low) / 2 if not math.isinf(self.high) else None,
                "capacity_saturation_rps": self.saturation_rps, "capacity_rates_tried": float(len(self.probes)),
                "capacity_requests_replayed": float(replayed),
                "capacity_probes": [p.row() for p in self.probes]}


def unit_gaps(n: int, seed: int) -> np.ndarray:
    """Send offsets at 1 req/s (first at 0, exponential gaps); a rate r divides them by r."""
    gaps = np.random.default_rng(seed).exponential(1.0, size=max(n - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])


def rate_plan(requests: list[TraceRequest], rate: float, unit: np.ndarray) -> list[tuple[float, TraceRequest]]:
    n = len(unit)
    offs = np.zeros(n) if math.isinf(rate) else unit / rate
    return [(float(offs[i]), requests[i % len(requests)]) for i in range(n)]


def slo_load(metrics: dict[str, float], slo: dict[str, float]) -> float:
    """The largest latency percentile over its bound (1.0: at the SLO); NaN when none was measured."""
    ratios = [metrics.get(k, math.nan) / b for k, b in slo.items() if k != slo_mod.FAILED and b > 0]
    ratios = [r for r in ratios if not math.isnan(r)]
    return max(ratios) if ratios else math.nan


def next_rate(low: float, high: float, load_low: float | None, load_high: float | None, tol: float) -> float:
    """The next rate in (low, high): where the SLO load, interpolated linearly between the bracket's
    ends, reaches 1 (regula falsi), kept off the ends by a tenth of the bracket, and never closer to
    ``low`` than the tolerance allows (a pass there would not narrow the bracket enough); the middle
    when a load is unknown (a stopped replay's percentiles cover only what ended)."""
    w = high - low
    if load_low is None or load_high is None or math.isnan(load_low) or math.isnan(load_high) \
            or load_high <= load_low or load_high < 1.0:
        return low + w / 2
    r = low + w * (1.0 - load_low) / (load_high - load_low)
    # aim a little above the crossing: a pass just under the bound leaves the bracket wide
    r *= 1 + tol / 2
    return min(max(r, low + 0.1 * w), high - 0.1 * w)


class CapacitySearch:
    def __init__(self, running: RunningStack, requests: list[TraceRequest], slo: dict[str, float],
                 spec: CapacitySpec, options: ReplayOptions, seed: int = 0, deadline: float | None = None,
                 on_request: Callable[[RequestRecord], None] | None = None,
                 on_probe: Callable[[Probe], None] | None = None):
        self.running, self.requests, self.slo, self.spec = running, requests, slo, spec
        self.options, self.deadline, self.on_request, self.on_probe = options, deadline, on_request, on_probe
        self.unit = unit_gaps(spec.requests, seed)
        self.burst = np.zeros(spec.saturation_requests or spec.requests)
        self.probes: list[Probe] = []

    def probe(self, rate: float) -> Probe:
        plan = rate_plan(self.requests, rate, self.burst if math.isinf(rate) else self.unit)
        stop = None if math.isinf(rate) else slo_mod.SloStop(self.slo)
        t = time.monotonic()
        res = self.running.replay(plan, self.options, self.on_request, deadline=self.deadline, stop=stop)
        wall = time.monotonic() - t
        records = res.records
        v, why, metrics = slo_mod.verdict(records, self.slo)
        stopped = bool(stop and stop.fired)
        if stopped:
            v, why = slo_mod.FAIL, stop.reason
        at = None if stopped or stop is None or v == slo_mod.PASS else slo_mod.fail_time(records, self.slo)
        replayed = sum(1 for r in records if r.sent is not None and (at is None or r.sent <= at))
        p = Probe(rate, v, why, len(plan), replayed, stopped, wall, metrics, records, res.usage)
        self.probes.append(p)
        if self.on_probe:
            self.on_probe(p)
        lag = metrics.get("send_lag_p99", math.nan)
        if not math.isinf(rate) and lag > self.spec.max_send_lag:  # a burst has no schedule to keep
            raise ClientOverloaded(f"the replay client fell behind at {rate:g} req/s: send lag p99 "
                                   f"{lag * 1e3:.1f} ms over {self.spec.max_send_lag * 1e3:g} ms "
                                   "(capacity.max_send_lag); the capacity measured would be the client's")
        return p

    def run(self) -> CapacityResult:
        sat = self.probe(math.inf)
        thr = sat.metrics.get("throughput_rps", math.nan)
        if math.isnan(thr) or thr <= 0:
            return CapacityResult(0.0, 0.0, self.spec.min_rate, 0.0, self.probes)
        low, high = 0.0, thr
        if self.probe(thr).verdict == slo_mod.PASS:     # met at the bound: the capacity is the bound
            return CapacityResult(thr, thr, thr, thr, self.probes)
        load = {0.0: 0.0, thr: slo_load(self.probes[-1].metrics, self.slo)}
        moved: list[str] = []
        for _ in range(self.spec.max_probes - 1):
            if high - low <= self.spec.tolerance * high or high <= self.spec.min_rate:
                break
            if moved[-2:] in (["low", "low"], ["high", "high"]):   # interpolation stalls on one side
                rate = (low + high) / 2
            else:
                rate = next_rate(low, high, load.get(low), load.get(high), self.spec.tolerance)
            p = self.probe(rate)
            load[rate] = slo_load(p.metrics, self.slo)
            if p.verdict == slo_mod.PASS:
                low = rate
                moved.append("low")
            else:
                high = rate
                moved.append("high")
        if low < self.spec.min_rate:
            low = 0.0
        return CapacityResult(low, low, high, thr, self.probes)


def search(running: RunningStack, requests: list[TraceRequest], slo: dict[str, float], spec: CapacitySpec,
           options: ReplayOptions, seed: int = 0, deadline: float | None = None,
           on_request: Callable[[RequestRecord], None] | None = None) -> CapacityResult:
    """The capacity of ``running`` under ``slo`` (raises ClientOverloaded when the client fell behind)."""
    return CapacitySearch(running, requests, slo, spec, options, seed, deadline, on_request).run()
