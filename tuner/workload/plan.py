"""A study's replay plan from its trace and its ``load`` section (tuner.space.spec.LoadSpec).

Rate models (poisson, gamma, constant) take the trace's first N requests (cycled when
the trace is shorter) and draw their send offsets; ``arrivals: trace`` keeps each
request's own timestamp (from the first one, divided by ``speedup``) within ``duration``
seconds and at most ``requests``. ``concurrency`` makes the plan closed loop
(serving.workload.Plan). The trace is read lazily and reading stops once the plan is
full, so the plan is all that is held of a large trace.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.workload import Plan
from tuner.workload.arrivals import gap_cv, offsets
from tuner.workload.trace import Tally, TimedRequest, requests


@dataclass
class PlannedTrace:
    plan: Plan
    tally: Tally

    def summary(self, load) -> str:
        """One paragraph for the study's start: the trace as read and the plan drawn from it."""
        p = self.plan
        times = np.array([off for off, _ in p])
        prompt = np.array([r.prompt_len for _, r in p])
        out = np.array([r.output_len for _, r in p])
        rate_model = f"{load.arrivals} {load.qps:g} req/s" + (f" cv {load.cv:g}" if load.cv else "") if load.qps else ""
        if p.concurrency:
            how = f"closed loop, {p.concurrency} in flight" + (f", {rate_model}" if rate_model else "")
        elif load.arrivals == "trace":
            how = "the trace's own times" + (f" x{load.speedup:g}" if load.speedup else "")
        else:
            how = rate_model
        span = times.max() - times.min() if len(times) else 0.0
        rate = f", {(len(p) - 1) / span:.3g} req/s over {span:.3g} s, gap cv {gap_cv(times):.2f}" if span > 0 else ""
        q = lambda a: "/".join(f"{v:.0f}" for v in np.percentile(a, [50, 90, 99])) + f"/{a.max()}"
        return (f"trace {self.tally.describe()}\nplan: {len(p)} requests, {how}{rate}; "
                f"prompt tokens p50/p90/p99/max {q(prompt)}, output {q(out)}")


def _take(items, n: int | None) -> list[TimedRequest]:
    """The first ``n`` requests, cycling a shorter trace (whose records are then all in the plan anyway)."""
    got = list(islice(items, n))
    if n is not None and len(got) < n:
        got = [got[i % len(got)] for i in range(n)]
    return got


def _trace_times(items, load, path: Path) -> list[tuple[float, TimedRequest]]:
    speed, window, cap = load.speedup or 1.0, load.duration, load.requests
    out: list[tuple[float, TimedRequest]] = []
    t0 = None
    for item in items:
        if item.timestamp is None:
            raise ConfigError("arrivals=trace needs a timestamp on every record; this trace's format has none "
                              f"(record {item.request.index})", path)
        t0 = item.timestamp if t0 is None else t0
        off = (item.timestamp - t0) / speed
        if window is not None and off >= window:
            break               # timestamps ascend in the traces we read: the window is complete
        out.append((max(off, 0.0), item))
        if cap is not None and len(out) >= cap:
            break
    out.sort(key=lambda x: x[0])
    return out


def build_plan(path: str | Path, load, counter: Callable[[str], int] | None = None, fmt: str = "auto") -> PlannedTrace:
    path = Path(path)
    tally = Tally()
    items = requests(path, fmt, counter, load.seed, tally)
    if load.arrivals == "trace":
        timed = _trace_times(items, load, path)
        pairs = [(off, it.request) for off, it in timed]
    else:
        chosen = _take(items, load.n_requests)
        if load.qps is None:     # closed loop with no rate: each request as soon as a slot frees
            offs = np.zeros(len(chosen))
        else:
            offs = offsets(load.arrivals, len(chosen), load.qps, load.seed, load.cv)
        pairs = [(float(o), it.request) for o, it in zip(offs, chosen)]
    items.close()
    if not pairs:
        raise ConfigError(f"the plan holds no request: the trace's first request falls outside "
                          f"duration={load.duration}", path)
    return PlannedTrace(Plan(pairs, load.concurrency), tally)
