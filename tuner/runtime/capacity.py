"""Capacity under SLOs: the highest arrival rate a running stack sustains with its SLOs met.

One launch, then a rate search on the running stack (the trial pipeline calls ``search``
instead of one replay when the objective is ``capacity_rps``). The answer is the highest rate
whose FULL replay of ``requests`` requests met the SLOs (the verdict at vLLM auto_tune's sample
size), with a rate that broke them at most ``tolerance`` above it: [low, high] is its uncertainty.

Where the requests go, and why the search is shaped as it is. A rate that PASSES costs its whole
replay: a percentile can still break on the last request. A rate that FAILS costs only what was
sent before its verdict was certain (tuner.runtime.slo.SloStop ends the replay): a few requests far
above the capacity, but 50-70 % of the replay just above it, where the queue needs most of the
replay to build. So passes are the dear probes, and every probe near the capacity costs about
as much as auto_tune's 1 req/s step. The search therefore spends on as few rates as it can:
  1. saturation burst: ``saturation_requests`` (default a quarter of ``requests``) sent at once;
     their completions per second scale the first guess. It is no bound (a short replay can pass
     above it, a small burst may not fill a large batch): the search climbs when that rate passes.
  2. the first rate is that throughput; while no rate has passed, each fail steps down by 0.8
     (or by its SLO load, the worst percentile over its bound, when that is known to be over 1):
     fails up there are cheap, and a step of 0.8 lands the first pass close under the capacity,
     so few dear passes follow;
  3. then, between the highest pass and the lowest fail, the next rate is a guess at where the
     SLO load reaches 1: ``low * load ** -1/2`` from the highest pass (a pass at load 0.97 says
     the capacity is near; over the simulator's configurations and SLOs it lands within 8 % on
     average), lowered to the secant to the fail when that fail's load, measured on what ended
     before the stop and so a lower bound, is over 1. It is kept at least ``tolerance`` off both
     ends, so either verdict narrows the bracket by that much; when one end moved twice in a row
     the guess is off to one side and the bracket is halved (log scale) instead; once the bracket
     is within (1 + tolerance)^2 the rate ``low * (1 + tolerance)`` ends the search whatever it
     answers. With no fail yet the rate climbs to at most twice the pass.
Every rate replays the same requests with the same unit-rate Poisson gaps scaled by 1/rate
(common random numbers), so a deterministic stack (the simulator) answers nearly monotonically.

Cost against vLLM's auto_tune.sh (1000 prompts at rate inf, then 100 per 1 req/s step down from
int(throughput) + 1): ours is the burst, some cheap fails, one pass and one fail just above it,
often a third near probe: about 2-3.5 replays' worth, under a third of auto_tune's 10 + steps
whatever the steps (bench/capacity.py). Against the script's first version (100 at rate inf) the
third holds only once it walks ~8 or more steps (capacities of tens of req/s, or far under
saturation because a TPOT bound binds): within 2 req/s of saturation it needs 2-3 replays, and no
method that confirms its answer with one full replay (and a fail above it) spends a third of that.

The simulator computes a whole replay on its virtual clock and ignores stop conditions: its
replays are cut where the live stop would have fired (requests not yet sent are never sent,
unfinished ones end as stopped), so it is charged and shown what a live stack would be.

A capacity measured by a client that fell behind is the client's, not the stack's: every rate's
send-lag and read-lag p99 are judged (tuner.runtime.client_check) and the search fails with
``client_overloaded`` when one is over its bound.
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
from tuner.runtime.client_check import behind
from tuner.runtime.metrics import read_lag_figures
from tuner.space.capacity import CapacitySpec

DESCENT = 0.8                                 # step down from a fail while nothing has passed
#: what each rate tried keeps (the trial's ``capacity_probes`` user attr, the report's curve)
PROBE_KEYS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2e_p99", "itl_p99", "throughput_rps",
              "send_lag_p50", "send_lag_p99", "read_lag_p99")


class ClientOverloaded(RuntimeError):
    """The replay client could not send on schedule: the search measured the client."""


@dataclass
class Probe:
    rate: float                       # req/s asked for (inf: all at once)
    verdict: str                      # slo.PASS | slo.FAIL
    why: str                          # the bound that broke
    planned: int                      # requests in the plan
    replayed: int                     # requests sent (before the verdict was certain, when stopped)
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
    high: float                       # lowest rate above it that broke them (inf: none tried)
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


@dataclass
class Bracket:
    """The rates tried so far: the highest that passed, the lowest that failed, their SLO loads."""
    tol: float
    low: float | None = None
    high: float | None = None
    loads: dict[float, float] = field(default_factory=dict)   # rate -> SLO load, where it is usable
    moved: list[str] = field(default_factory=list)

    def add(self, rate: float, passed: bool, load: float) -> None:
        if passed:
            self.low = rate if self.low is None else max(self.low, rate)
            self.moved.append("low")
            if not math.isnan(load):
                self.loads[rate] = load
        else:
            self.high = rate if self.high is None else min(self.high, rate)
            self.moved.append("high")
            # a stopped replay's percentiles cover only what ended: a load over 1 is a lower bound, under 1 noise
            if load > 1.0:
                self.loads[rate] = load

    def done(self) -> bool:
        return self.low is not None and self.high is not None and self.high <= self.low * (1 + self.tol) * (1 + 1e-9)

    def crossing(self) -> float:
        """Where the SLO load reaches 1, guessed from the highest pass (its load ``l``) and the lowest fail.

        ``low * l ** -0.5``: on the simulator's configurations and SLOs (bench/capacity.py) it lands
        within 8 % of the crossing on average, its median error -1 %. The secant to the fail (when its
        load, a lower bound, is over 1) runs high (+10 % median): it only ever lowers the guess.
        """
        lo, l_lo = self.low, self.loads.get(self.low, math.nan)
        if math.isnan(l_lo) or l_lo <= 0:
            return lo * 2
        guess = lo * l_lo ** -0.5
        l_hi = self.loads.get(self.high) if self.high is not None else None
        if l_hi is not None and l_hi > l_lo:
            guess = min(guess, lo + (self.high - lo) * (1.0 - l_lo) / (l_hi - l_lo))
        return guess

    def next_rate(self) -> float:
        tol = self.tol
        if self.low is None:                      # nothing passed yet: step down from the lowest fail
            load = self.loads.get(self.high, 1.0)
            # gallop: every fifth fail in a row steps further, so a capacity far under the burst's
            # rate (a TPOT bound, a busy host) is reached within max_probes
            step = DESCENT ** (1 + (len(self.moved) - 1) // 5)
            return self.high * max(0.5 ** (1 + (len(self.moved) - 1) // 5), min(step, 1.0 / load))
        top = self.high if self.high is not None else self.low * 2 * (1 + tol)
        lo_end, hi_end = self.low * (1 + tol), top / (1 + tol)
        if hi_end <= lo_end:                      # any verdict at lo_end closes the bracket
            return lo_end
        if self.moved[-2:] in (["low", "low"], ["high", "high"]):
            rate = math.sqrt(self.low * top)      # the guess was off to one side twice: halve (log scale)
        else:
            rate = min(max(self.crossing(), lo_end), hi_end)
        # a fail a hair above lo_end would leave the bracket open by that hair, and cost one more
        # near probe: there, lo_end itself closes it whatever it answers
        return lo_end if rate < lo_end * (1 + tol / 2) else rate


class CapacitySearch:
    def __init__(self, running: RunningStack, requests: list[TraceRequest], slo: dict[str, float],
                 spec: CapacitySpec, options: ReplayOptions, seed: int = 0, deadline: float | None = None,
                 on_request: Callable[[RequestRecord], None] | None = None,
                 on_probe: Callable[[Probe], None] | None = None):
        self.running, self.requests, self.slo, self.spec = running, requests, slo, spec
        self.options, self.deadline, self.on_request, self.on_probe = options, deadline, on_request, on_probe
        self.unit = unit_gaps(spec.requests, seed)
        self.burst = np.zeros(spec.saturation_requests or max(10, spec.requests // 4))
        self.probes: list[Probe] = []

    def replay(self, rate: float, stop: slo_mod.SloStop | None):
        plan = rate_plan(self.requests, rate, self.burst if math.isinf(rate) else self.unit)
        res = self.running.replay(plan, self.options, self.on_request, deadline=self.deadline, stop=stop)
        return plan, res

    def probe(self, rate: float) -> Probe:
        stop = None if math.isinf(rate) else slo_mod.SloStop(self.slo)
        t = time.monotonic()
        plan, res = self.replay(rate, stop)
        wall = time.monotonic() - t
        records = res.records
        v, why, metrics = slo_mod.verdict(records, self.slo)
        metrics |= read_lag_figures(res.read_lags)
        stopped = bool(stop and stop.fired)
        if stopped:
            v, why = slo_mod.FAIL, stop.reason
        replayed = sum(1 for r in records if r.sent is not None)
        p = Probe(rate, v, why, len(plan), replayed, stopped, wall, metrics, records, res.usage)
        self.probes.append(p)
        if self.on_probe:
            self.on_probe(p)
        lagging = behind(metrics, self.spec, burst=math.isinf(rate))   # a burst has no schedule to keep
        if lagging:
            raise ClientOverloaded(f"the replay client fell behind at {rate:g} req/s: {lagging}; "
                                   "the capacity measured would be the client's")
        return p

    def run(self) -> CapacityResult:
        sat = self.probe(math.inf)
        thr = sat.metrics.get("throughput_rps", math.nan)
        if math.isnan(thr) or thr <= 0:
            return CapacityResult(0.0, 0.0, self.spec.min_rate, 0.0, self.probes)
        b = Bracket(self.spec.tolerance)
        rate = thr
        for _ in range(self.spec.max_probes):
            p = self.probe(rate)
            b.add(rate, p.verdict == slo_mod.PASS, slo_load(p.metrics, self.slo))
            if b.done() or (b.low is None and b.high <= self.spec.min_rate):
                break
            rate = b.next_rate()
        high = b.high if b.high is not None else math.inf
        if b.low is None or b.low < self.spec.min_rate:
            return CapacityResult(0.0, 0.0, high, thr, self.probes)
        return CapacityResult(b.low, b.low, high, thr, self.probes)


def search(running: RunningStack, requests: list[TraceRequest], slo: dict[str, float], spec: CapacitySpec,
           options: ReplayOptions, seed: int = 0, deadline: float | None = None,
           on_request: Callable[[RequestRecord], None] | None = None) -> CapacityResult:
    """The capacity of ``running`` under ``slo`` (raises ClientOverloaded when the client fell behind)."""
    return CapacitySearch(running, requests, slo, spec, options, seed, deadline, on_request).run()
