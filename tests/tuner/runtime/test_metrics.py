import math

import pytest

from tuner.runtime.metrics import score
from serving.workload import RequestRecord


def rec(i, sent, first, done, n, error=None):
    step = (done - first) / max(n - 1, 1)
    return RequestRecord(i, 5, n, scheduled=sent, sent=sent, first_token=first, done=done,
                         token_times=[first + k * step for k in range(n)], n_tokens=n,
                         finish_reason="length", error=error)


def test_exec_time_is_first_send_to_last_completion():
    m = score([rec(0, 0.0, 0.1, 1.0, 10), rec(1, 0.5, 0.7, 3.5, 4)])
    assert m["total_time"] == pytest.approx(3.5)
    assert m["throughput_rps"] == pytest.approx(2 / 3.5)
    assert m["tokens_per_s"] == pytest.approx(14 / 3.5)
    assert m["ttft_p50"] == pytest.approx(0.15)
    assert m["tpot_p50"] == pytest.approx((0.9 / 9 + 2.8 / 3) / 2)
    assert m["itl_p50"] == pytest.approx(0.1)


def test_failed_requests_are_counted_not_dropped():
    records = [rec(0, 0.0, 0.1, 1.0, 10), RequestRecord(1, 5, 10, 0.2, sent=0.2, error="timeout: x")]
    m = score(records)
    assert m["requests"] == 2 and m["requests_ok"] == 1 and m["requests_failed"] == 1
    assert m["total_time"] == pytest.approx(1.0)


def test_all_failed_gives_nan_total():
    m = score([RequestRecord(0, 5, 10, 0.0, sent=0.0, error="connection: refused")])
    assert math.isnan(m["total_time"]) and m["requests_failed"] == 1


def test_arrival_bound_and_efficiency():
    m = score([rec(0, 0.0, 0.1, 1.0, 10), rec(1, 2.0, 2.1, 4.0, 10)], service_times={1: 1.0})
    assert m["arrival_bound"] == pytest.approx(3.0) and m["efficiency"] == pytest.approx(0.75)


def test_every_figure_score_gives_is_a_known_metric_name():
    """The space checks objective and constraint names against METRICS: it must hold what score gives."""
    from tuner.runtime.metrics import METRICS, is_known_metric
    m = score([rec(0, 0.0, 0.1, 1.0, 10), rec(1, 2.0, 2.1, 4.0, 10)], service_times={1: 1.0})
    assert set(m) <= set(METRICS)
    assert is_known_metric("utilisation") and is_known_metric("npu_aicore_mean")
    assert not is_known_metric("ttft_p999") and not is_known_metric("latency") and not is_known_metric("_mean")


def test_send_lag_is_known_when_no_request_finished():
    """A replay stopped before any answer still sent on a schedule: its lag is the client's, not the server's
    (a capacity probe ended by its SLO stop within its first requests is one)."""
    m = score([RequestRecord(0, 5, 10, 0.0, sent=0.004), RequestRecord(1, 5, 10, 0.1, sent=0.102)])
    assert math.isnan(m["total_time"])
    assert m["send_lag_p50"] == pytest.approx(0.003) and m["send_lag_p99"] == pytest.approx(0.00398)


def test_itl_is_per_chunk_and_e2e_ends_at_the_last_chunk():
    """docs/metrics.md: ITL one sample per content chunk; E2E to the last content chunk (the stream's
    close, ``done``, comes later); TPOT = (E2E - TTFT) / (tokens - 1)."""
    r = RequestRecord(0, 5, 6, scheduled=0.0, sent=0.0, done=0.6, n_tokens=6, finish_reason="length")
    r.chunk_times, r.token_times, r.first_token = [0.1, 0.2, 0.3, 0.5], [0.1, 0.1, 0.2, 0.3, 0.5, 0.5], 0.1
    m = score([r])
    assert m["itl_p50"] == pytest.approx(0.1) and m["itl_mean"] == pytest.approx(0.4 / 3)
    assert m["e2e_p50"] == pytest.approx(0.5)
    assert m["tpot_p50"] == pytest.approx((0.5 - 0.1) / 5)
    assert m["total_time"] == pytest.approx(0.6)
