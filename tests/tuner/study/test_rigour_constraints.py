"""Constraints: SLO limits and failed configurations make trials infeasible (COMPLETE, so the
sampler learns from them), visible to optuna-dashboard, and never best or exported."""
import math

import optuna
import pytest
import yaml

from serving.stacks import failures
from tuner.runtime import constraints
from tuner.space.compose import load_space
from tuner.results.export import export_best
from tuner.space.spec import Constraint, Objective
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial
from tuner.runtime.trial import TrialOutcome

DBS = "model_config.decode_batch_size"


def fake_outcome(params) -> TrialOutcome:
    """dbs 64: OOM; 32: fastest but breaks the TTFT SLO; 2: port taken; else feasible, faster with dbs."""
    dbs = params[DBS]
    if dbs == 64:
        return TrialOutcome(fail_class=failures.OOM, fail_detail="exited before ready", log_tail="out of memory")
    if dbs == 2:
        return TrialOutcome(fail_class=failures.PORT_IN_USE, fail_detail="exited before ready")
    if dbs == 32:
        return TrialOutcome(metrics={"total_time": 1.0, "utilisation": 95.0, "ttft_p99": 2.0, "requests": 20.0})
    return TrialOutcome(metrics={"total_time": 1.0 + 10 / dbs, "utilisation": 50.0, "ttft_p99": 0.1, "requests": 20.0})


@pytest.fixture
def fake_trials(monkeypatch):
    def run_trial(ctx, params, stop=None, replays=1):
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        return fake_outcome(params)
    monkeypatch.setattr("tuner.runtime.measure.run_trial", run_trial)


def slo_space(root, single=False):
    space = load_space("pa_batching", root, ["sampler=random", "seed=3", "load.duration=0.5"])
    update = {"constraints": [Constraint(metric="ttft_p99", max=0.5)]}
    if single:
        update["objectives"] = [Objective(name="total_time", direction="minimize")]
    return space.model_copy(update=update)


def run_study(root, space, extra=4):
    run = StudyRun(space, root, f"sqlite:///{root / 'trials' / 'c.db'}")
    study = run.open_study()
    for dbs in (64, 32, 2, 8, 4):
        study.enqueue_trial(space.stored_params({DBS: dbs, "pa_config.num_blocks": 512, "pa_config.block_size": 16,
                                                 "model_config.prefill_batch_size": 2}))
    return run.run(5 + extra)


def test_slo_values_and_missing_metrics():
    space = load_space("pa_batching", __import__("tests.conftest").conftest.ROOT).model_copy(
        update={"constraints": [Constraint(metric="ttft_p99", max=0.5), Constraint(metric="tokens_per_s", min=100)]})
    assert constraints.slo_values(space, {"ttft_p99": 0.2, "tokens_per_s": 150}) == {
        "slo_ttft_p99": pytest.approx(-0.3), "slo_tokens_per_s": -50}
    broken = constraints.slo_values(space, {"ttft_p99": math.nan})
    assert broken == {"slo_ttft_p99": 1.0, "slo_tokens_per_s": 1.0}
    assert constraints.constraint_values(space, {}, failed=True) == {"failed": 1.0, "slo_ttft_p99": 0.0,
                                                                     "slo_tokens_per_s": 0.0}


@pytest.mark.parametrize("single", [False, True])
def test_infeasible_trials_inform_the_sampler_and_never_win(project_root, fake_trials, single):
    space = slo_space(project_root, single)
    study = run_study(project_root, space)
    t = {t.user_attrs["config"][DBS]: t for t in study.trials[:5]}
    oom, slo, port = t[64], t[32], t[2]
    # broken SLO: measured, so COMPLETE on its true values; failed configuration: FAIL without values (no
    # placeholder on the dashboard's axes); both infeasible, with the cause and their constraints
    assert slo.state == optuna.trial.TrialState.COMPLETE and slo.values[0] < space.timeouts.replay
    assert oom.state == optuna.trial.TrialState.FAIL and oom.values is None
    for bad, because in ((oom, "failed"), (slo, "slo_ttft_p99")):
        assert not constraints.is_feasible(bad) and constraints.outcome(bad) == "infeasible"
        assert bad.user_attrs["infeasible_because"] == because and bad.user_attrs["feasible"] is False
    assert oom.user_attrs["fail_class"] == "oom" and constraints.failed_for_config(oom)
    assert {"failed": 0.0, "slo_ttft_p99": 1.5}.items() <= slo.constraints.items()
    # the old list optuna-dashboard reads, in the same order
    assert slo.system_attrs["constraints"] == [0.0, 1.5] and oom.system_attrs["constraints"] == [1.0, 0.0]
    assert t[8].system_attrs["constraints"] == [0.0, pytest.approx(-0.4)]
    # the machine's failure is FAIL, carries no constraint and is not the configuration's
    assert port.state == optuna.trial.TrialState.FAIL and port.user_attrs["fail_class"] == "port_in_use"
    assert not constraints.failed_for_config(port) and constraints.outcome(port) == "fail"
    # the SLO breaker is the fastest trial, still never the best nor exported
    best = best_trial(study)
    assert constraints.is_feasible(best) and best.number != slo.number
    assert all(constraints.is_feasible(b) for b in study.best_trials)
    out = export_best(study, space, project_root, project_root / "configs/llama/best.yaml")
    assert yaml.safe_load(out.read_text())["model_config"]["decode_batch_size"] != [32]


def test_dashboard_serializer_sees_feasibility(project_root, fake_trials):
    from optuna_dashboard._serializer import serialize_frozen_trial
    study = run_study(project_root, slo_space(project_root), extra=0)
    slo = next(t for t in study.trials if t.user_attrs["config"][DBS] == 32)
    ser = serialize_frozen_trial(study._study_id, slo, {})
    assert ser["constraints"] == [0.0, 1.5]


def test_the_trial_budget_skips_configurations_refused_before_launch_up_to_a_cap():
    from tuner.study.run import Budget
    study = optuna.create_study()
    stopped = []
    study.stop = lambda: stopped.append(True)
    budget = Budget(2)
    refused = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                        user_attrs={"rejected_before_launch": True})
    measured = optuna.trial.create_trial(value=1.0)
    for t in (refused, refused, measured, refused):
        budget(study, t)
    assert budget.used == 1 and not stopped
    budget(study, measured)
    assert stopped and budget.cap == 2 * Budget.REJECTS_CAP
