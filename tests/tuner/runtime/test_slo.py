"""SLO verdicts: final ones match the scorer's percentiles; early ones are only given when certain."""
import math

import numpy as np
from hypothesis import example, given, settings, strategies as st

from serving.workload import RequestRecord
from tuner.runtime import slo
from tuner.runtime.metrics import score


def done(i, sent, ttft, tpot=0.01, n=4, error=None) -> RequestRecord:
    r = RequestRecord(i, 4, n, sent, sent=sent)
    if error:
        r.error = error
        return r
    r.first_token = sent + ttft
    r.token_times = [r.first_token + k * tpot for k in range(n)]
    r.n_tokens, r.done, r.finish_reason = n, r.token_times[-1], "length"
    return r


def test_final_verdict_names_the_broken_bound():
    recs = [done(i, i * 0.1, 0.05) for i in range(99)] + [done(99, 9.9, 3.0)]
    v, why, m = slo.verdict(recs, {"ttft_p99": 2.0, "failed": 0})
    assert (v, why) == (slo.PASS, "") and 0.05 < m["ttft_p99"] < 2.0
    # one slow request of 100 moves p99 only by interpolation: 2 slow ones break it for sure
    recs[98] = done(98, 9.8, 3.0)
    v, why, _ = slo.verdict(recs, {"ttft_p99": 2.0, "failed": 0})
    assert v == slo.FAIL and why.startswith("ttft_p99")
    recs[0] = done(0, 0.0, 0.0, error="http 500")
    assert slo.verdict(recs, {"failed": 0})[0] == slo.FAIL
    assert slo.verdict(recs, {"failed": 0.05})[0] == slo.PASS


def test_a_request_still_waiting_counts_as_over_the_ttft_bound():
    recs = [done(i, 0.0, 0.1) for i in range(98)]
    recs += [RequestRecord(98, 4, 4, 0.0, sent=0.0), RequestRecord(99, 4, 4, 0.0, sent=0.0)]
    bounds = {"ttft_p99": 2.0, "failed": 0}
    assert slo.certain_fail(recs, bounds, now=1.0) is None
    assert "ttft_p99" in slo.certain_fail(recs, bounds, now=2.5)
    # without a failed bound the waiting ones may still fail and leave the sample: not certain
    assert slo.certain_fail(recs, {"ttft_p99": 2.0}, now=2.5) is None
    stop = slo.SloStop(bounds)
    assert not stop.check(1.0, recs) and stop.check(2.5, recs) and "ttft_p99" in stop.reason


def test_failures_beyond_the_allowed_fraction_are_certain_at_once():
    recs = [RequestRecord(i, 4, 4, 0.0) for i in range(10)]
    recs[0].sent, recs[0].error = 0.0, "connection: reset"
    assert slo.certain_fail(recs, {"failed": 0}, now=0.1)
    assert slo.certain_fail(recs, {"failed": 0.1}, now=0.1) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=10, max_size=120), st.sampled_from([50, 90, 99]),
       st.floats(0.1, 4.0))
# a TTFT at the bound itself, read back one ulp over it from first_token - sent
@example([0.0] * 9 + [1.0] * 9 + [0.6485904315938565], 50, 0.6485904315938565)
def test_an_early_fail_is_never_contradicted_by_the_finished_replay(ttfts, pct, bound):
    """Whenever the verdict is certain at some time, the finished records' percentile breaks the bound."""
    recs = [done(i, 0.01 * i, t) for i, t in enumerate(ttfts)]
    key = f"ttft_p{pct}"
    final = score(recs)[key]
    at = slo.fail_time(recs, {key: bound})
    if at is not None:
        assert final > bound
    if final > bound:   # and at the end it is certain whenever the rank statistic is over
        # the TTFTs as the records hold them (first_token - sent: a sent time of 0.01 * i rounds them)
        measured = [r.first_token - r.sent for r in recs]
        ranked = np.sort(measured)[math.floor(pct / 100 * (len(ttfts) - 1))]
        assert (at is not None) == (ranked > bound)


def test_a_request_still_streaming_bounds_its_tpot_from_below():
    """Two tokens in at 0.1 and 0.2 s of 11 asked for: by 2.1 s its TPOT is at least 2.0 / 10 > 0.15."""
    recs = [done(i, 0.0, 0.05, tpot=0.01, n=11) for i in range(98)]
    for i in (98, 99):
        r = RequestRecord(i, 4, 11, 0.0, sent=0.0)
        r.first_token, r.token_times, r.n_tokens = 0.1, [0.1, 0.2], 2
        recs.append(r)
    bounds = {"tpot_p99": 0.15, "failed": 0}
    assert slo.certain_fail(recs, bounds, now=1.5) is None            # (1.5 - 0.1) / 10 = 0.14
    assert "tpot_p99" in slo.certain_fail(recs, bounds, now=2.1)
    # the finished replay agrees: both end after 2.1 s, so their TPOT is over the bound
    for r in recs[98:]:
        r.token_times = [0.1 + k * 0.25 for k in range(11)]
        r.n_tokens, r.done, r.finish_reason = 11, r.token_times[-1], "length"
    assert slo.verdict(recs, bounds)[0] == slo.FAIL
