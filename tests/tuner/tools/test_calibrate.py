"""tune calibrate's measuring plan and orchestration: bursts, kept step records, passes (the fit
is tested in tests/serving/sim/test_fit.py, the real engine in test_calibrate_engine.py)."""
import json

import numpy as np
import pytest

import tuner.tools.calibrate as cal
from serving.config.errors import ConfigError
from serving.sim.profile_io import load_profile
from tests.serving.sim.factories import DECODE_BASE, HOST, synthetic_steps


def test_burst_prompts_have_one_length():
    plan = cal.burst(7, 5, np.random.default_rng(0))
    assert {r.prompt_len for _, r in plan} == {7} and len(plan) == 5 and all(o == 0 for o, _ in plan)


def test_refit_reads_the_steps_a_calibration_kept(tmp_path):
    by_run = {}
    for s in synthetic_steps():
        by_run.setdefault(s["run"], []).append(s)
    for k, (run, steps) in enumerate(by_run.items()):
        d = tmp_path / "pass0" / f"d{run}_p1"
        d.mkdir(parents=True)
        (d / cal.STEPS_FILE).write_text(json.dumps({"steps": steps, "delays": [0.002 + 0.001 * k]}))
    steps, delays = cal.load_runs(tmp_path)
    assert {s["run"] for s in steps} == {f"pass0/d{r}_p1" for r in by_run} and sorted(delays) == [0.002, 0.003, 0.004]
    model = cal.fit_and_write(steps, delays, tmp_path / "p.yaml", "test", ((1, 1),), log=lambda _: None)
    assert model.decode_by_bucket == pytest.approx(DECODE_BASE, rel=1e-6)
    assert load_profile(tmp_path / "p.yaml").decode_host["base"] == pytest.approx(HOST, rel=1e-3)
    with pytest.raises(ConfigError, match="no steps.json"):
        cal.load_runs(tmp_path / "nothing")
    bad = tmp_path / "broken" / "pass0" / "d1_p1"
    bad.mkdir(parents=True)
    (bad / cal.STEPS_FILE).write_text('{"steps": []}')
    with pytest.raises(ConfigError, match="not a calibration run") as err:
        cal.load_runs(tmp_path / "broken")
    assert str(bad / cal.STEPS_FILE) in str(err.value)


def test_passes_repeat_the_runs_in_alternating_order(tmp_path, monkeypatch):
    orders = []

    def fake_collect(base, run_dir, runs, seed=0, ready_timeout=60.0, log=print, env=None, stack=None):
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
