"""Noise: repeats -> median objective with its spread; `tune finalize` re-runs the finalists and
declares a winner only at the stated confidence, else a tie; export follows the verdict."""
import itertools
from pathlib import Path

import numpy as np
import optuna
import pytest

from tuner.space.compose import load_space
from tuner.results.export import export_best
from tuner.study.finalists import describe, finalize
from tuner.search.selection import current_verdict
from tuner.runtime.stats import compare, mann_whitney_less, spread
from tuner.study.storage import open_storage
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial
from tuner.runtime.trial import TrialOutcome

DBS = "model_config.decode_batch_size"


def test_mann_whitney_exact_small_and_approximate_large():
    assert mann_whitney_less([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1 / 252)
    assert mann_whitney_less([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert 0.4 < mann_whitney_less([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) < 0.7       # ties: no evidence
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.05, 12), rng.normal(1.3, 0.05, 12)               # 12 vs 12: normal approximation
    assert mann_whitney_less(a, b) < 0.001
    v = compare([10, 11, 12], [1, 2, 3], minimize=False, confidence=0.9)        # maximised: larger wins
    assert v.winner_better and v.ci[0] > 0
    assert spread([3.0, 1.0, 2.0]) | {} == {"median": 2.0, "min": 1.0, "max": 3.0, "iqr": 1.0, "rel_spread": 1.0}


class Noisy:
    """Fake run_trial: total_time = the configuration's true time * a noise factor, in turn."""

    def __init__(self, truth, noise=(1.00, 1.04, 0.97, 1.02, 0.99, 1.03, 0.98)):
        self.truth, self.noise, self.calls = truth, itertools.cycle(noise), []

    def __call__(self, ctx, params, stop=None, replays=1):
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        t = self.truth(params) * next(self.noise)
        self.calls.append((params[DBS], ctx.run_dir))
        (ctx.run_dir / "requests.csv").write_text(f"index,total\n0,{t}\n")
        return TrialOutcome(metrics={"total_time": t, "utilisation": 100 / t, "requests": 20.0})


def space_for(root, *overrides):
    return load_space("pa_batching", root, ["sampler=random", "seed=0", "load.duration=0.5", *overrides])


def enqueue(run, *dbs_values):
    study = run.open_study()
    for dbs in dbs_values:
        study.enqueue_trial(run.space.stored_params({DBS: dbs, "pa_config.num_blocks": 512, "pa_config.block_size": 16,
                             "model_config.prefill_batch_size": 2}))


def test_repeats_give_the_median_and_keep_the_spread(project_root, monkeypatch):
    fake = Noisy(lambda p: 10.0 / p[DBS])
    monkeypatch.setattr("tuner.runtime.measure.run_trial", fake)
    run = StudyRun(space_for(project_root, "repeats=3"), project_root, f"sqlite:///{project_root}/trials/n.db")
    enqueue(run, 8)
    [t] = run.run(1).trials
    samples = t.user_attrs["total_time_repeats"]
    assert samples == pytest.approx([1.25 * f for f in (1.00, 1.04, 0.97)])
    assert t.values[0] == pytest.approx(float(np.median(samples))) == t.user_attrs["total_time"]
    assert t.user_attrs["total_time_rel_spread"] == pytest.approx((1.04 - 0.97) / 1.00)
    assert t.user_attrs["repeats"] == 3 and t.user_attrs["representative_repeat"] == 0
    run_dir = Path(t.user_attrs["run_dir"])
    assert [d for _, d in fake.calls] == [run_dir / f"repeat{i}" for i in range(3)]
    assert (run_dir / "requests.csv").read_text() == (run_dir / "repeat0" / "requests.csv").read_text()


@pytest.mark.parametrize("truth,declared", [({8: 1.0, 4: 1.5, 2: 3.0}, True), ({8: 1.0, 4: 1.01, 2: 3.0}, False)])
def test_finalize_declares_a_winner_only_with_confidence(project_root, monkeypatch, truth, declared):
    fake = Noisy(lambda p: truth[p[DBS]])
    monkeypatch.setattr("tuner.runtime.measure.run_trial", fake)
    run = StudyRun(space_for(project_root, "finalists.repeats=5"), project_root,
                   f"sqlite:///{project_root}/trials/f.db")
    enqueue(run, 4, 8, 2)
    study = run.run(3)
    before = len(fake.calls)
    v = finalize(run, study)
    runs = fake.calls[before:]
    assert len(runs) == 10 and [d for d, _ in runs[:4]] in ([8, 4, 8, 4], [4, 8, 4, 8])  # interleaved
    first = v["rows"][0]["trial"]
    if declared:
        assert first == 1 and v["winner"] == 1 and v["p_value"] <= 0.05 and "winner: trial 1" in describe(v)
    else:  # 1 % apart under 4 % noise: not distinguishable, both reported
        assert v["winner"] is None and sorted(v["tied"]) == [0, 1] and v["p_value"] > 0.05
        assert f"tied: trials {first} and {1 - first}" in describe(v)
    study = optuna.load_study(study_name="pa_batching", storage=open_storage(run.storage))
    assert current_verdict(study) and best_trial(study).number == first
    assert (run.trials_dir / "finalists.json").exists()
    text = export_best(study, run.space, project_root, project_root / "best.yaml").read_text()
    assert f"trial {first} (" in text and ("# winner: trial 1" if declared else "# tied: trials") in text


def test_a_stale_verdict_is_ignored(project_root, monkeypatch):
    fake = Noisy(lambda p: {8: 1.0, 4: 1.5, 2: 0.5}[p[DBS]])
    monkeypatch.setattr("tuner.runtime.measure.run_trial", fake)
    run = StudyRun(space_for(project_root), project_root, f"sqlite:///{project_root}/trials/s.db")
    enqueue(run, 4, 8, 2)
    study = run.run(2)
    finalize(run, study, repeats=2)
    study = run.run(1)  # a better configuration completes after the verdict
    assert current_verdict(study) is None and best_trial(study).user_attrs["config"][DBS] == 2
