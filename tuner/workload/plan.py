"""A study's replay plan from its trace and its ``load`` section (tuner.space.spec.LoadSpec).

Rate models (poisson, gamma, constant) take the trace's first N requests (cycled when
the trace is shorter) and draw their send offsets; ``arrivals: trace`` keeps each
request's own timestamp (from the earliest, divided by ``speedup``; a trace out of time
order is sorted, and the summary says so) within ``duration`` seconds and at most
``requests``. ``max_tokens`` leaves out requests longer than that (prompt + output).
``concurrency`` makes the plan closed loop (serving.workload.Plan). The trace is read lazily and reading stops once the plan is
full, so the plan is all that is held of a large trace.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.workload import Plan
from tuner.workload.arrivals import gap_cv, offsets
from tuner.workload.limits import limits_note
from tuner.workload.reading import ReadProgress
from tuner.workload.trace import Tally, TimedRequest, arrival_times, order_note, requests


@dataclass
class PlannedTrace:
    plan: Plan
    tally: Tally
    notes: list[str] = field(default_factory=list)      # before the first trial (requests over the limits)

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
        gaps = " (gaps rounded to 0.01 s, load.round_gaps)" if load.round_gaps else ""
        return "\n".join([f"trace {self.tally.describe()}", f"plan: {len(p)} requests, {how}{gaps}{rate}; "
                          f"prompt tokens p50/p90/p99/max {q(prompt)}, output {q(out)}", *self.notes])


def _take(items, n: int | None) -> list[TimedRequest]:
    """The first ``n`` requests, cycling a shorter trace (whose records are then all in the plan anyway)."""
    got = list(islice(items, n))
    if n is not None and len(got) < n:
        got = [got[i % len(got)] for i in range(n)]
    return got


def _trace_times(path: Path, load, fmt: str, read) -> list[tuple[float, TimedRequest]]:
    """The records the trace's own clock puts in the window (at most ``load.requests``), by time from
    the earliest. The times are read first, all of them: only then is it known whether the trace is
    in time order; then only the chosen records are read whole (their prompts counted, synthesized)."""
    times = arrival_times(path, fmt, read.meter, tally=read.tally)   # the format's own skips are counted here
    if not len(times):
        return []
    note = order_note(times)
    if note:
        read.tally.notes.append(note)
    offs = times                       # in place: 8 bytes a record is what this pass holds
    offs -= times.min()
    offs /= load.speedup or 1.0
    inside = np.flatnonzero(offs < load.duration) if load.duration is not None else np.arange(len(offs))
    order = inside[np.argsort(offs[inside], kind="stable")]
    cap = load.requests or len(order)
    out: list[tuple[float, TimedRequest]] = []
    start = 0
    while len(out) < cap and start < len(order):
        # records the second pass skips (over load.max_tokens, no output) are made up from the next ones
        batch = order[start:start + cap - len(out)]
        start += len(batch)
        wanted = set(batch.tolist())
        last = int(batch.max())
        items = read(only=wanted)
        try:
            for item in items:
                out.append((float(offs[item.ordinal]), item))
                if item.ordinal >= last:
                    break
        finally:
            items.close()
    out.sort(key=lambda x: x[0])
    return out


class _Reader:
    """The trace's requests (``read(only=...)``), all passes counted in one tally and one progress display."""

    def __init__(self, path: Path, load, counter, fmt: str, meter):
        self.path, self.load, self.counter, self.fmt, self.meter = path, load, counter, fmt, meter
        self.tally = Tally()

    def __call__(self, only=None):
        return requests(self.path, self.fmt, self.counter, self.load.seed, self.tally, self.load.max_tokens, only,
                        self.meter)


def build_plan(path: str | Path, load, counter: Callable[[str], int] | None = None, fmt: str = "auto",
               breaks: Callable[[int], list[str]] | None = None, show_progress: bool = False) -> PlannedTrace:
    """The plan ``load`` draws from the trace. ``breaks(n)``: the stack's rules a request of ``total_len``
    n (prompt + BOS + output) breaks in the base config; with it the summary says how many requests
    exceed the stack's limits. ``show_progress``: a progress display when reading takes over a second."""
    path = Path(path)
    with ReadProgress(path, show_progress) as meter:
        read = _Reader(path, load, counter, fmt, meter)
        if load.arrivals == "trace":
            timed = _trace_times(path, load, fmt, read)
            pairs = [(off, it.request) for off, it in timed]
        else:
            items = read()
            try:
                chosen = _take(items, load.n_requests)
            finally:
                items.close()
            if load.qps is None:     # closed loop with no rate: each request as soon as a slot frees
                offs = np.zeros(len(chosen))
            else:
                offs = offsets(load.arrivals, len(chosen), load.qps, load.seed, load.cv, load.round_gaps)
            pairs = [(float(o), it.request) for o, it in zip(offs, chosen)]
    if not pairs:
        skipped = sum(read.tally.skipped.values())
        why = (f"all {skipped} records read were skipped ({', '.join(read.tally.skipped)})" if skipped else
               f"the trace's first request falls outside duration={load.duration}")
        raise ConfigError(f"the plan holds no request: {why}", path)
    plan = Plan(pairs, load.concurrency)
    notes = []
    if breaks is not None:
        try:
            notes.append(limits_note(plan, breaks, load))
        except (ConfigError, OSError, ValueError):
            pass     # a base config the stack cannot check is refused by the trial, with its rule and file
    return PlannedTrace(plan, read.tally, [n for n in notes if n])
