"""Does a replay meet its SLOs? Decided on the finished records, or early, as soon as it is certain.

The final verdict uses the scorer's own percentiles (tuner.runtime.metrics.score). While a
replay runs, a verdict of FAIL is certain once enough requests are already over a bound that
no later request can bring the percentile back under it: with numpy's linear interpolation the
p-th percentile of n values lies at or above the value of rank floor(p/100 * (n-1)), so it is
over the bound when at least n - floor(p/100 * (n-1)) values are. What is known before a request
ends are lower bounds: a request sent at s with no first token yet at time t has TTFT >= t - s
(and E2E too); one still streaming since its first token at f has TPOT >= (t - f) / (output_len - 1),
as it ends after t with at most output_len tokens.
A stop condition (``SloStop``) polls this and ends a replay whose verdict is settled.
"""
from __future__ import annotations

import math

from serving.workload import RequestRecord, first_event_time
from tuner.runtime.metrics import score
from tuner.space.capacity import FAILED

PASS, FAIL = "pass", "fail"


def _need(n: int, pct: float) -> int:
    """How many of n values over a bound put the pct-th percentile over it."""
    return n - math.floor(pct / 100.0 * (n - 1)) if n > 0 else 1


def final_verdict(metrics: dict[str, float], slo: dict[str, float]) -> tuple[str, str]:
    """PASS or FAIL on a finished replay's metrics, with the first broken bound named."""
    for key, bound in slo.items():
        if key == FAILED:
            value = metrics.get("requests_failed", math.nan) / max(metrics.get("requests", 0.0), 1.0)
        else:
            value = metrics.get(key, math.nan)
        if value is None or math.isnan(value) or value > bound:
            return FAIL, f"{key} {value:.4g} over {bound:g}" if value == value else f"{key} not measured"
    return PASS, ""


def _over(records: list[RequestRecord], key: str, bound: float, now: float) -> tuple[int, int, int]:
    """Values over ``bound`` by ``now``: (of requests that ended well, of requests still running),
    and how many values the metric will have at most."""
    kind = key.split("_p")[0]
    final = pending = total = 0
    for r in records:
        sent = r.sent if r.sent is not None and r.sent <= now else None
        first = r.first_token if r.first_token is not None and r.first_token <= now else None
        done = r.done if r.done is not None and r.done <= now and r.error is None else None
        if r.error is not None and sent is not None:
            if kind in ("ttft", "e2e", "tpot"):
                total += kind != "tpot" or r.output_len > 1
            else:
                total += max(r.output_len - 1, 0)
            continue                     # a failed request leaves the latency sample
        if kind in ("ttft", "e2e"):
            total += 1
            end = first if kind == "ttft" else done
            if sent is not None and ((end if end is not None else now) - sent) > bound:
                final += end is not None and (kind == "e2e" or done is not None)
                pending += not (end is not None and (kind == "e2e" or done is not None))
        elif kind == "tpot":
            total += r.output_len > 1
            if done is not None and first is not None and r.n_tokens > 1:
                final += (r.last_token - first) / (r.n_tokens - 1) > bound
            elif first is not None and r.output_len > 1 and sum(t <= now for t in r.token_times) > 1:
                # still streaming with two tokens in (so in the sample unless it fails): it ends after
                # now with at most output_len tokens, so its TPOT is at least this
                pending += (now - first) / (r.output_len - 1) > bound
        else:  # itl: a gap between two content events is known once the second came (at most
            total += max(r.output_len - 1, 0)     # output_len - 1 gaps: a bound that errs safe)
            times = [t for t in r.events if t <= now]
            over = sum(b - a > bound for a, b in zip(times, times[1:]))
            final += over if done is not None else 0
            pending += over if done is None else 0
    return final, pending, total


def certain_fail(records: list[RequestRecord], slo: dict[str, float], now: float) -> str | None:
    """The bound already broken for good by time ``now`` (what was seen up to it), else None.

    A request still running may yet fail and leave the latency sample: its values count only
    beyond the failures the ``failed`` bound still allows (with no ``failed`` bound, none count).
    """
    n = len(records)
    errors = sum(1 for r in records if r.error is not None and r.sent is not None and r.sent <= now)
    allowed = math.floor(slo[FAILED] * n) if FAILED in slo else n
    if errors > allowed:
        return f"{FAILED}: {errors} of {n} requests failed, {allowed} allowed"
    for key, bound in slo.items():
        if key == FAILED:
            continue
        final, pending, total = _over(records, key, bound, now)
        over = final + max(0, pending - (allowed - errors))
        if over >= _need(total, float(key.rsplit("_p", 1)[1])):
            return f"{key}: {over} requests already over {bound:g} s"
    return None


def fail_time(records: list[RequestRecord], slo: dict[str, float]) -> float | None:
    """Earliest event time at which the FAIL verdict was certain: where SloStop ends a live replay
    (certainty only grows with time)."""
    return first_event_time(records, lambda at: certain_fail(records, slo, at) is not None)


class SloStop:
    """Replay stop condition (serving.replay.StopCondition): ends a replay whose SLO verdict is FAIL."""

    def __init__(self, slo: dict[str, float], poll: float = 0.05):
        self.slo, self.poll = slo, poll
        self.fired = False
        self.reason = ""

    def check(self, elapsed: float, records: list[RequestRecord]) -> bool:
        sent = [r.sent for r in records if r.sent is not None]
        now = elapsed + (min(sent) if sent else 0.0)
        why = certain_fail(records, self.slo, now)
        if why:
            self.reason = why
            return True
        return False


def verdict(records: list[RequestRecord], slo: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    """(PASS|FAIL, why, the replay's metrics) of a finished (or stopped) replay."""
    metrics = score(records)
    v, why = final_verdict(metrics, slo)
    return v, why, metrics
