"""Sim-guided warm start: the simulator study's best distinct configurations are the first real trials."""
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from serving.config.errors import ConfigError
from tuner.screening import warm_start
from tuner.space.compose import load_space
from tuner.study.progress import PlainProgress
from tuner.study.run import StudyRun

SMALL = ["load.qps=20", "load.duration=1", "seed=3"]


def by_number(study):
    return sorted(study.trials, key=lambda t: t.number)


def test_the_sims_best_run_first_as_real_trials(project_root, capsys):
    # the embedded engine is the real stack here; the simulator (its calibrated profile) ranks first
    space = load_space("pa_batching", project_root, SMALL + [
        "+prescreen={warm_start: 2, sim_trials: 6, top_fraction: 1.0}"])
    run = StudyRun(space, project_root, "sqlite:///" + str(project_root / "trials/ws.db"),
                   progress=PlainProgress(["total_time", "utilisation"]))
    study = run.run(3)
    simulated = warm_start.simulated(study)
    assert len(simulated) == 6
    first, second, third = by_number(study)
    assert first.user_attrs["warm_start"] == 0 and second.user_attrs["warm_start"] == 1
    assert "warm_start" not in third.user_attrs                       # the sampler's own from here
    assert first.user_attrs["warm_start_sim"] == min(v for v in simulated if not math.isnan(v))
    assert first.user_attrs["warm_start_sim"] <= second.user_attrs["warm_start_sim"]
    assert first.user_attrs["config"] != second.user_attrs["config"]  # distinct
    for t in (first, second):   # real trials: the stack ran the whole plan and every request is kept
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert (Path(t.user_attrs["run_dir"]) / "requests.csv").exists() and t.user_attrs["requests"] == 20
        assert t.user_attrs["prescreen_value"] == pytest.approx(t.user_attrs["warm_start_sim"])
    out = capsys.readouterr().out
    assert out.startswith("warm start: 6 trials on the simulator; its best 2 run first:")


def test_a_second_run_on_the_study_adds_no_warm_start_and_gates_at_once(project_root, monkeypatch):
    space = load_space("pa_batching", project_root, SMALL + [
        "backend=sim", "+prescreen={warm_start: 1, sim_trials: 5, top_fraction: 0.2, warmup: 50}"])
    url = "sqlite:///" + str(project_root / "trials/ws2.db")
    StudyRun(space, project_root, url).run(1)
    calls = []
    monkeypatch.setattr(warm_start, "sim_study", lambda *a: calls.append(a))
    again = StudyRun(space, project_root, url)
    study = again.run(3)
    assert calls == []                                       # once per study
    assert sum("warm_start" in t.user_attrs for t in study.trials) == 1
    # the gate ranks against the stored simulated values: no warm-up of 50 real candidates
    assert again._screen().screener.seeded == 5
    assert all("warm-up" not in t.user_attrs["prescreen_reason"] for t in by_number(study)[1:])


def test_sim_study_picks_distinct_configurations_best_first(project_root):
    space = load_space("pa_batching", project_root, SMALL + ["backend=sim"])
    values = {}

    def evaluate(params):   # a cheap stand-in for the simulator; the study repeats some configurations
        k = tuple(sorted(params.items()))
        values[k] = 500.0 / params["model_config.decode_batch_size"] + params["pa_config.block_size"]
        return math.inf if params["pa_config.block_size"] == 64 else values[k]

    warm = warm_start.sim_study(space, evaluate, 30, 4)
    keys = [tuple(sorted(p.items())) for p, _ in warm.candidates]
    assert len(keys) == len(set(keys)) == 4
    assert [v for _, v in warm.candidates] == sorted(v for _, v in warm.candidates)
    feasible = sorted(v for k, v in values.items() if dict(k)["pa_config.block_size"] != 64)
    assert [v for _, v in warm.candidates] == feasible[:4]
    assert len(warm.simulated) == 30 and any(math.isnan(v) for v in warm.simulated)   # failures kept as NaN


@pytest.mark.parametrize("bad, key", [("{warm_start: -1}", "warm_start"), ("{sim_trials: 0}", "sim_trials"),
                                      ("{warm_start: two}", "warm_start"), ("{warm_starts: 2}", "warm_starts")])
def test_bad_warm_start_values_fail_at_load(project_root, bad, key):
    with pytest.raises(ConfigError, match=key):
        load_space("pa_batching", project_root, SMALL + [f"+prescreen={bad}"])


def test_bad_warm_start_is_one_line_and_exit_2(project_root):
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "--study", "pa_batching", "--root", str(project_root),
                          "+prescreen={warm_start: -1}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "prescreen" in lines[0] and "warm_start" in lines[0]
    assert list((project_root / "trials").iterdir()) == []
