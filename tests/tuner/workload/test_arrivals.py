import numpy as np
import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from tests.tuner.workload import fixtures
from tuner.space.spec import LoadSpec
from tuner.workload.arrivals import arrival_offsets, constant_offsets, gamma_offsets, gap_cv, offsets
from tuner.workload.plan import build_plan

SHIPPED = ROOT / "traces/alpaca_like_1500.jsonl"


def test_poisson_is_performance_serving_s_model_when_asked_to_round():
    gaps = np.diff(arrival_offsets(20001, qps=4, seed=2, round_gaps=True))
    assert abs(gaps.mean() - 0.25) < 0.01 and abs(gap_cv(np.cumsum(gaps)) - 1) < 0.03
    assert arrival_offsets(5, 300, round_gaps=True).tolist() == [0.0] * 5      # round(1/300, 2) = 0: all at once
    realised = 20000 / arrival_offsets(20001, qps=30, seed=3, round_gaps=True)[-1]
    assert abs(realised - 33.3) < 0.7            # mean gap 0.03 s, not 1/30


@pytest.mark.parametrize("qps", [30, 40, 200, 1000])
def test_poisson_gaps_are_exact_by_default(qps):
    t = arrival_offsets(40001, qps=qps, seed=4)
    assert abs(40000 / t[-1] - qps) < 0.02 * qps and np.count_nonzero(np.diff(t) == 0) == 0


def test_load_round_gaps_reaches_the_plan_and_the_summary():
    exact = build_plan(SHIPPED, LoadSpec(qps=300, requests=50)).plan
    rounded_load = LoadSpec(qps=300, requests=50, round_gaps=True)
    rounded = build_plan(SHIPPED, rounded_load)
    assert exact[-1][0] > 0 and {o for o, _ in rounded.plan} == {0.0}
    assert "gaps rounded to 0.01 s, load.round_gaps" in rounded.summary(rounded_load)
    with pytest.raises(ValidationError, match="round_gaps applies to arrivals=poisson only"):
        LoadSpec(qps=3, requests=5, arrivals="constant", round_gaps=True)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_gaps_have_the_asked_mean_and_burstiness(cv):
    t = gamma_offsets(40001, qps=10, cv=cv, seed=5)
    gaps = np.diff(t)
    assert t[0] == 0 and abs(gaps.mean() - 0.1) < 0.1 * 0.05 and abs(gap_cv(t) - cv) < 0.05 * cv
    assert np.array_equal(t, gamma_offsets(40001, 10, cv, seed=5))


def test_constant_gaps_are_exact():
    t = constant_offsets(5, 4)
    assert t.tolist() == [0, 0.25, 0.5, 0.75, 1.0] and gap_cv(t) == 0


def test_offsets_dispatches_by_model():
    assert np.array_equal(offsets("poisson", 10, 5, 1), arrival_offsets(10, 5, 1))
    assert np.array_equal(offsets("gamma", 10, 5, 1, cv=2), gamma_offsets(10, 5, 2, 1))
    with pytest.raises(ValueError):
        offsets("trace", 10, 5)


def test_a_rate_plan_takes_n_requests_in_trace_order():
    load = LoadSpec(qps=20, duration=2, arrivals="constant")
    plan = build_plan(SHIPPED, load).plan
    assert len(plan) == 40 and [r.index for _, r in plan] == list(range(40)) and plan.concurrency is None
    assert np.allclose(np.diff([o for o, _ in plan]), 0.05)


def test_a_short_trace_is_cycled(tmp_path):
    plan = build_plan(fixtures.project(tmp_path), LoadSpec(qps=10, requests=5)).plan
    assert [r.index for _, r in plan] == [0, 1, 0, 1, 0]


def test_trace_arrivals_keep_the_trace_s_own_times_sped_up_and_windowed(tmp_path):
    path = fixtures.mooncake(tmp_path)         # timestamps 0, 250, 1000 ms
    plan = build_plan(path, LoadSpec(arrivals="trace")).plan
    assert [o for o, _ in plan] == [0, 0.25, 1.0]
    assert [o for o, _ in build_plan(path, LoadSpec(arrivals="trace", speedup=2)).plan] == [0, 0.125, 0.5]
    assert len(build_plan(path, LoadSpec(arrivals="trace", duration=0.5)).plan) == 2
    assert len(build_plan(path, LoadSpec(arrivals="trace", requests=1)).plan) == 1


def test_trace_arrivals_need_timestamps(tmp_path):
    from serving.config.errors import ConfigError
    with pytest.raises(ConfigError, match="needs a timestamp"):
        build_plan(fixtures.vllm(tmp_path), LoadSpec(arrivals="trace"))


def test_closed_loop_plans_carry_the_concurrency_and_send_at_once_without_a_rate():
    plan = build_plan(SHIPPED, LoadSpec(concurrency=4, requests=12)).plan
    assert plan.concurrency == 4 and len(plan) == 12 and {o for o, _ in plan} == {0.0}
    assert plan[:5].concurrency == 4                        # a probe's prefix stays closed loop
    capped = build_plan(SHIPPED, LoadSpec(qps=5, duration=2, concurrency=2)).plan
    assert capped.concurrency == 2 and len(capped) == 10 and capped[-1][0] > 0


@pytest.mark.parametrize("kw,message", [
    ({"qps": 5, "duration": 1, "cv": 2}, "cv applies to arrivals=gamma only"),
    ({"qps": 5, "duration": 1, "speedup": 2}, "speedup applies to arrivals=trace only"),
    ({"arrivals": "trace", "qps": 5}, "qps must be null"),
    ({"duration": 5}, "needs qps"),
    ({"qps": 5}, "needs requests, or qps and duration"),
    ({"qps": 0.5, "duration": 1}, "qps \\* duration >= 1"),
    ({"concurrency": 0, "requests": 3}, "greater than or equal to 1"),
])
def test_incoherent_load_sections_are_refused(kw, message):
    with pytest.raises(ValidationError, match=message):
        LoadSpec(**kw)


def test_the_summary_counts_every_record_the_plan_took():
    planned = build_plan(SHIPPED, LoadSpec(qps=10, requests=1500))
    assert planned.tally.kept == 1500 and "1500 records read" in planned.summary(LoadSpec(qps=10, requests=1500))
    assert build_plan(SHIPPED, LoadSpec(qps=10, requests=7)).tally.kept == 7
