"""tune calibrate's fitting, on synthetic step records from a known model."""
import numpy as np
import pytest

from serving.config.errors import ConfigError
from serving.sim.latency import load_profile
from tuner.tools.calibrate import burst, fit, nnls, profile_text

DECODE_BASE = {1: 0.001, 4: 0.002, 16: 0.004}
PER_CTX, PER_ROW, HOST, PER_HOST_ROW = 2e-6, 5e-5, 3e-4, 2e-5


def prefill_cost(bucket, longest):
    return 0.002 * bucket + 1e-4 * bucket * longest + 5e-7 * bucket * longest ** 2


def synthetic_steps(noise=0.0, seed=0):
    """What /metrics/steps serves (tokens and context after the new token was appended)."""
    rng = np.random.default_rng(seed)
    steps, t = [], 0.0
    for bucket, base in DECODE_BASE.items():
        for longest in (5, 17, 65):
            for rows in range(1, bucket + 1):
                d = prefill_cost(bucket, longest) * (1 + noise * rng.standard_normal())
                steps.append({"kind": "prefill", "rows": rows, "bucket": bucket, "tokens": rows * (longest + 1),
                              "context": rows * (longest + 1), "start": t, "duration": d, "run": bucket})
                t += d + HOST
        for _ in range(300):
            rows = int(rng.integers(1, bucket + 1))
            ctx = int(rng.integers(rows * 5, rows * 300))
            d = base + PER_ROW * rows + PER_CTX * ctx
            d *= 1 + noise * rng.standard_normal()
            steps.append({"kind": "decode", "rows": rows, "bucket": bucket, "tokens": rows, "context": ctx + rows,
                          "start": t, "duration": d, "run": bucket})
            t += d + HOST + PER_HOST_ROW * rows
    return steps


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


def test_nnls_never_goes_negative():
    X = np.column_stack([np.ones(50), np.arange(50.0)])
    y = 5.0 - 0.1 * np.arange(50.0)                  # a falling line: the slope must clamp to 0
    coef = nnls(X, y)
    assert (coef >= 0).all() and coef[1] == 0 and coef[0] == pytest.approx(y.mean())


def test_profile_text_loads_back(tmp_path):
    model, fits = fit(synthetic_steps())
    out = tmp_path / "embedded.yaml"
    out.write_text(profile_text(model, fits, "configs/llama/tiny_llama_pa.yaml", 3))
    back = load_profile(out)
    assert back.decode_by_bucket == pytest.approx(model.decode_by_bucket, rel=1e-3)
    assert back.prefill(2, 16, 65)[0] == pytest.approx(model.prefill(2, 16, 65)[0], rel=1e-3)
    assert "R^2" in out.read_text()


def test_burst_prompts_have_one_length():
    plan = burst(7, 5, np.random.default_rng(0))
    assert {r.prompt_len for _, r in plan} == {7} and len(plan) == 5 and all(o == 0 for o, _ in plan)


def test_arrivals_are_charged_to_the_step_they_ran_beside():
    """The engine counts a request on the step that queued it; its cost fell on the step before."""
    steps = [{"run": "a", "arrivals": n} for n in (0, 3, 0, 2)] + [{"run": "b", "arrivals": 5}]
    from tuner.tools.calibrate import mark_arrivals
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


def test_refit_reads_the_steps_a_calibration_kept(tmp_path):
    import json

    from tuner.tools.calibrate import STEPS_FILE, load_runs, write_profile
    by_run = {}
    for s in synthetic_steps():
        by_run.setdefault(s["run"], []).append(s)
    for k, (run, steps) in enumerate(by_run.items()):
        d = tmp_path / "pass0" / f"d{run}_p1"
        d.mkdir(parents=True)
        (d / STEPS_FILE).write_text(json.dumps({"steps": steps, "delays": [0.002 + 0.001 * k]}))
    steps, delays = load_runs(tmp_path)
    assert {s["run"] for s in steps} == {f"pass0/d{r}_p1" for r in by_run} and sorted(delays) == [0.002, 0.003, 0.004]
    model = write_profile(steps, delays, tmp_path / "p.yaml", "test", ((1, 1),), log=lambda _: None)
    assert model.decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-6)
    assert load_profile(tmp_path / "p.yaml").decode_host["base"] == pytest.approx(HOST, rel=1e-3)
    with pytest.raises(ConfigError, match="no steps.json"):
        load_runs(tmp_path / "nothing")
    bad = tmp_path / "broken" / "pass0" / "d1_p1"
    bad.mkdir(parents=True)
    (bad / STEPS_FILE).write_text('{"steps": []}')
    with pytest.raises(ConfigError, match="not a calibration run") as err:
        load_runs(tmp_path / "broken")
    assert str(bad / STEPS_FILE) in str(err.value)


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


def test_passes_repeat_the_runs_in_alternating_order(tmp_path, monkeypatch):
    import tuner.tools.calibrate as cal
    orders = []

    def fake_collect(base, run_dir, runs, seed=0, ready_timeout=60.0, log=print, env=None):
        orders.append((run_dir.name, list(runs)))
        return [dict(s, run=f"d{s['run']}") for s in synthetic_steps(seed=seed)], [0.003]

    monkeypatch.setattr(cal, "collect", fake_collect)
    (tmp_path / "pass7" / "d1_p1").mkdir(parents=True)           # an earlier, longer calibration's
    model = cal.calibrate(tmp_path / "base.yaml", tmp_path / "p.yaml", tmp_path, runs=((1, 1), (4, 2)), passes=3,
                          log=lambda _: None)
    assert orders == [("pass0", [(1, 1), (4, 2)]), ("pass1", [(4, 2), (1, 1)]), ("pass2", [(1, 1), (4, 2)])]
    assert not (tmp_path / "pass7").exists()
    assert model.decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-6)
    assert load_profile(tmp_path / "p.yaml").decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-3)
    with pytest.raises(ValueError, match="passes >= 1"):
        cal.calibrate(tmp_path / "base.yaml", tmp_path / "p.yaml", tmp_path, passes=0)
