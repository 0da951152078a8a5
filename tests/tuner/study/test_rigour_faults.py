"""Fault injection: one trial per fault kind (crash mid-replay, OOM at start, hang, port in use,
malformed stream, and a healthy one) each recorded with its cause, no process left, study resumable.
The faulty stack is a plug-in registered from the test folder: nothing in tuner/ knows it."""
from pathlib import Path

import optuna
import pytest

from serving.stacks import register_stack
from serving.procs.groups import group_alive
from tests.tuner.faulty_stack import EXPECTED
from tuner.space.compose import load_space
from tuner.runtime.constraints import is_feasible
from tuner.runtime.ownership import tagged_groups
from tuner.study.run import StudyRun

STUDY = "pa_faults"
FAST = ["backend=faulty", "load.qps=20", "load.duration=0.5", "load.request_timeout=8", "timeouts.ready=30", "timeouts.replay=20",
        "sampler=random", "seed=0", f"study={STUDY}", "params.pa_config.num_blocks.low=256",
        "params.model_config.decode_batch_size.choices=[8,16]", "params.model_config.prefill_batch_size.choices=[2,4]"]


@pytest.fixture
def faulty():
    register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")


def test_each_fault_is_recorded_with_its_cause_and_leaves_nothing(project_root, faulty):
    storage = f"sqlite:///{project_root / 'trials' / 'faults.db'}"
    space = load_space("pa_batching", project_root, FAST)
    study = StudyRun(space, project_root, storage).run(len(EXPECTED))
    trials = study.trials
    assert len(trials) == len(EXPECTED)
    seen = set()
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        kind = (run_dir / "fault").read_text()
        seen.add(kind)
        assert t.user_attrs.get("fail_class") == EXPECTED[kind], (t.number, kind, t.user_attrs.get("fail_detail"))
        if kind == "ok":
            assert t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t)
        elif kind == "port_in_use":  # the machine's fault, not the configuration's: FAIL, sampler not told
            assert t.state == optuna.trial.TrialState.FAIL
            assert "address already in use" in t.user_attrs["log_tail"].lower()
        else:  # the configuration failed: FAIL and infeasible, without values, its constraint for the sampler
            assert t.state == optuna.trial.TrialState.FAIL and t.values is None and not is_feasible(t)
            assert t.system_attrs["constraints"][0] == 1.0 and t.constraints["failed"] == 1.0
            assert t.user_attrs["fail_detail"]
        if kind in ("oom", "crash"):
            assert "injected" in t.user_attrs["log_tail"]
        for line in (run_dir / "stack.pgid").read_text().split() if (run_dir / "stack.pgid").exists() else []:
            assert not group_alive(int(line)), f"trial {t.number}: stack group {line} left running"
    assert seen == set(EXPECTED)
    assert tagged_groups(STUDY) == {}  # no process carrying this study's trial tag survives

    best = study.best_trials
    assert best and all(is_feasible(t) for t in best)
    again = StudyRun(space, project_root, storage).run(1)  # resumable: the same study goes on
    assert len(again.trials) == len(EXPECTED) + 1
    assert not again.get_trials(states=(optuna.trial.TrialState.RUNNING,))
