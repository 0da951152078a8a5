"""A stop signal (KeyboardInterrupt, as TERM and HUP unwind) anywhere in a trial, not only in its
replay, leaves the trial `interrupted` and its configuration queued again."""
import optuna
import pytest

from tuner.space.compose import load_space
from tuner.space.spec import StudySpace
from tuner.study.run import StudyRun


def run_until_interrupted(project_root, monkeypatch, where, name):
    space = load_space("pa_batching", project_root, ["backend=sim", "load.qps=20", "load.duration=1", f"study={name}"])
    storage = f"sqlite:///{project_root / 'trials' / (name + '.db')}"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        StudyRun(space, project_root, storage).run(2)
    return optuna.load_study(study_name=name, storage=storage).trials


def test_interrupted_while_scoring_is_interrupted_and_queued_again(project_root, monkeypatch):
    trials = run_until_interrupted(project_root, monkeypatch, (StudyRun, "_conclude"), "int_score")
    assert trials[0].state == optuna.trial.TrialState.FAIL and trials[0].user_attrs["fail_class"] == "interrupted"
    assert trials[1].state == optuna.trial.TrialState.WAITING and trials[1].user_attrs["retry_of"] == 0


def test_interrupted_while_the_sampler_suggests_is_interrupted(project_root, monkeypatch):
    trials = run_until_interrupted(project_root, monkeypatch, (StudySpace, "suggest"), "int_suggest")
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]   # nothing known to queue again
    assert trials[0].user_attrs["fail_class"] == "interrupted"
