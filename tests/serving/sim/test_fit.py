"""The latency model's fit, on synthetic step records from a known model."""
import math

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from serving.sim.fit import fit, fit_terms, mark_arrivals
from tests.serving.sim.factories import (DECODE_BASE, HOST, PER_CTX, PER_HOST_ROW, PER_ROW, prefill_cost,
                                         synthetic_steps)


def test_fit_recovers_a_known_model():
    model, fits = fit(synthetic_steps(), delays=[0.002, 0.004, 0.003])
    assert model.decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-6)
    assert model.decode_compute["per_live_row"] == pytest.approx(PER_ROW, rel=1e-6)
    assert model.decode_compute["per_context_token"] == pytest.approx(PER_CTX, rel=1e-6)
    assert model.decode_host["base"] == pytest.approx(HOST, rel=1e-6)
    assert model.decode_host["per_live_row"] == pytest.approx(PER_HOST_ROW, rel=1e-6)
    assert model.prefill_host["base"] == pytest.approx(HOST, rel=1e-6)
    assert model.prefill_table[4][17] == pytest.approx(prefill_cost(4, 17))
    assert model.prefill(1, 4, 17)[0] == pytest.approx(prefill_cost(4, 17))
    assert model.arrival_delay == model.delivery_delay == pytest.approx(0.0015)
    assert fits["decode.compute"].r2 == pytest.approx(1.0)


def test_fit_with_noise_stays_close():
    model, fits = fit(synthetic_steps(noise=0.05))
    assert model.decode_compute["per_context_token"] == pytest.approx(PER_CTX, rel=0.1)
    assert model.decode(8, 16, 800)[0] == pytest.approx(0.004 + 8 * PER_ROW + 800 * PER_CTX, rel=0.05)
    assert 0.8 < fits["decode.compute"].r2 < 1


def test_a_wait_for_the_next_burst_is_not_host_time():
    steps = synthetic_steps()
    for i in range(100, len(steps), 30):    # the engine ran dry and waited 5 ms for the client's next burst
        for s in steps[i:]:
            s["start"] += 0.005
        steps[i]["after_idle"] = True
    model, _ = fit(steps)
    assert model.decode_host["base"] == pytest.approx(HOST, rel=1e-6)


def test_fit_terms_never_go_negative():
    X = np.column_stack([np.ones(50), np.arange(50.0)])
    y = 5.0 - 0.1 * np.arange(50.0)                  # a falling line: the slope must clamp to 0
    f = fit_terms(X, y, ("base", "slope"))
    assert f.coef["slope"] == 0 and f.coef["base"] == pytest.approx(y.mean())


def test_fit_terms_is_true_nnls_on_correlated_columns():
    """Dropping the most negative least-squares column and refitting (the hand-made fit this
    replaced) ends at base 0, near_slope 0.897, residual 3.95; the optimum keeps the base."""
    t = np.arange(5.0)
    X = np.column_stack([np.ones(5), t, [1.0, 2.0, 3.0, 3.0, 4.0]])     # columns 2 and 3 correlate at 0.97
    y = np.array([2.0, 3.0, 5.0, 0.0, 3.0])
    f = fit_terms(X, y, ("base", "slope", "near_slope"), trim=math.inf)
    coef = np.array(list(f.coef.values()))
    _, optimum = scipy_nnls(X, y)
    assert np.linalg.norm(y - X @ coef) == pytest.approx(optimum, rel=1e-9)
    assert coef == pytest.approx([2.0, 0.0, 3 / 13])
    grad = X.T @ (y - X @ coef)                   # KKT: zero where a term is used, <= 0 where it is not
    assert (coef >= 0).all() and np.allclose(grad[coef > 0], 0, atol=1e-9) and (grad[coef == 0] <= 1e-9).all()


def test_arrivals_are_charged_to_the_step_they_ran_beside():
    """The engine counts a request on the step that queued it; its cost fell on the step before."""
    steps = [{"run": "a", "arrivals": n} for n in (0, 3, 0, 2)] + [{"run": "b", "arrivals": 5}]
    assert [s["arrived_during"] for s in mark_arrivals(steps)] == [3, 0, 2, 0, 0]   # never across runs


def test_fit_finds_a_per_arrival_cost_and_no_queue_cost():
    steps = synthetic_steps()
    rng = np.random.default_rng(1)
    for a, b in zip(steps, steps[1:]):
        b["arrivals"] = int(rng.integers(0, 4)) if rng.random() < 0.2 else 0
        b["waiting"] = int(rng.integers(0, 100))       # the queue itself costs nothing: not a term
        if a["kind"] == "decode" and a["run"] == b["run"]:
            a["duration"] += 4e-4 * b["arrivals"]
    model, _ = fit(steps)
    assert model.arrival_cost == pytest.approx(4e-4, rel=1e-6)
    assert model.decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-6)


def test_decode_base_never_falls_with_a_larger_bucket():
    steps = synthetic_steps()
    for s in steps:  # bucket 4's run happened on a faster minute of the machine: 30 % off
        if s["kind"] == "decode" and s["bucket"] == 4:
            s["duration"] -= 0.3 * DECODE_BASE[4] + 0.0008
    model, _ = fit(steps)
    base = model.decode_by_bucket
    assert base[1] <= base[4] <= base[16]
    # the two out-of-order buckets pool into one cost between them; the rest is unaffected
    assert base[1] == pytest.approx(base[4], rel=0.01) and 0.0006 < base[1] < DECODE_BASE[1]
    assert base[16] == pytest.approx(DECODE_BASE[16], rel=0.05)
