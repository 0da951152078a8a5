"""Arrival-bound lower limit of a replay's total time: the last send plus that request's own
unloaded service time. No configuration can finish before the last request arrives and is served.

The service time is measured, not estimated: right after the replay, while the stack still
runs (warm), the last-arriving request is replayed alone and its send-to-done time taken.
Estimating it from the trial's own TTFT/TPOT would use latencies taken under load (batched
decode steps, queueing), which overstate the unloaded time, so the "lower" limit could sit
above what a better configuration reaches. The cost is one request, about a second on the
embedded stack. tuner.runtime.metrics.score turns the result into arrival_bound and efficiency.
"""
from __future__ import annotations

import math

from serving.replay import ReplayOptions
from serving.stacks import RunningStack
from serving.workload import RequestRecord, TraceRequest


def last_arrival(records: list[RequestRecord]) -> int | None:
    """Position (in plan order) of the request sent last, None if nothing was sent."""
    sent = [(r.sent, i) for i, r in enumerate(records) if r.sent is not None]
    return max(sent)[1] if sent else None


def service_time(rec: RequestRecord) -> float:
    """Send to done (s) of a successful record, NaN otherwise."""
    return rec.done - rec.sent if rec.ok and rec.sent is not None else math.nan


def alone(running: RunningStack, req: TraceRequest, options: ReplayOptions, repeats: int = 1) -> float:
    """Unloaded service time of ``req``: the fastest of ``repeats`` lone replays (noise only adds)."""
    best = math.nan
    for _ in range(repeats):
        [rec] = running.replay([(0.0, req)], options, deadline=options.request_timeout).records
        t = service_time(rec)
        if not math.isnan(t):
            best = t if math.isnan(best) else min(best, t)
    return best


def unloaded_service_times(running: RunningStack, plan: list[tuple[float, TraceRequest]], records: list[RequestRecord],
                           options: ReplayOptions, repeats: int = 1) -> dict[int, float]:
    """{index: seconds} for the last-sent request, for tuner.runtime.metrics.score.

    The value is NaN when it cannot be measured (stack gone, the lone request failed), so a
    trial's metrics still carry arrival_bound and efficiency (as NaN, stored as None).
    """
    pos = last_arrival(records)
    if pos is None:
        return {}
    req = plan[pos][1]
    if not running.alive():
        return {req.index: math.nan}
    try:
        return {req.index: alone(running, req, options, repeats)}
    except Exception:  # a bound we cannot measure must not fail the trial
        return {req.index: math.nan}
