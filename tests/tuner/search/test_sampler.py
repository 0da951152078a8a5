"""The study's GP sampler: it learns from pruned trials and never proposes a configuration twice."""
import math

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT
from tuner.space.compose import load_space
from tuner.search import sampler as S

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space():
    # the shipped space (GP), single objective so values are plain numbers
    s = load_space("pa_batching", ROOT, ["backend=sim", "seed=0"])
    return s.model_copy(update={"objectives": s.objectives[:1]})


def key(t):
    return tuple(sorted(t.params.items()))


def small(space):
    """Two ordered choices only (4 x 7 = 28 configurations): a GP converges here and would repeat its best."""
    params = {"model_config": {"prefill_batch_size": space.params["model_config"]["prefill_batch_size"],
                               "decode_batch_size": space.params["model_config"]["decode_batch_size"]}}
    return space.model_copy(update={"params": params})


def test_a_converged_gp_proposes_no_measured_configuration_again(space):
    sp = small(space)
    study = optuna.create_study(sampler=S.make_sampler(sp))
    for _ in range(14):
        t = study.ask()
        c = sp.suggest(t)
        study.tell(t, 100 / c["model_config.decode_batch_size"] + c["model_config.prefill_batch_size"])
    assert len({key(t) for t in study.trials}) == 14


def test_the_gp_fits_on_one_torch_thread(space, monkeypatch):
    """Its tensors are tiny: more threads only spin (and take cores from the stack under test)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sampler = S.make_sampler(small(space))
        seen = []
        real = sampler.base.sample_relative

        def spy(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return real(*args, **kwargs)
        monkeypatch.setattr(sampler.base, "sample_relative", spy)
        study = optuna.create_study(sampler=sampler)
        for _ in range(3):
            t = study.ask()
            study.tell(t, float(sum(small(space).suggest(t).values())))
        assert seen == [1, 1]   # the first trial is the random start
    finally:
        torch.set_num_threads(before)


def test_pruned_candidates_are_learnt_not_proposed_again(space):
    """Before: optuna's GP fits COMPLETE trials only, so a pre-screened (PRUNED) configuration came back
    every trial. Now it stands in with its simulated value, and the model moves away from it."""
    study = optuna.create_study(sampler=S.make_sampler(space))
    for _ in range(12):
        t = study.ask()
        c = space.suggest(t)
        v = 1000 / c["model_config.decode_batch_size"] + abs(math.log(c["pa_config.num_blocks"] / 400))
        if c["model_config.decode_batch_size"] < 16:   # "the simulator ranks it outside the best"
            t.set_user_attr("prescreen_value", v)
            t.set_user_attr("prescreen_promising", False)
            study.tell(t, state=TrialState.PRUNED)
        else:
            study.tell(t, v)
    assert len({key(t) for t in study.trials}) == 12
    shadow = study.sampler._shadow    # what the GP fitted: every trial, the pruned ones at their estimate
    assert len(shadow.get_trials(states=(TrialState.COMPLETE,))) == 11   # the 12th was being asked
    pruned = [t for t in study.trials[:11] if t.state == TrialState.PRUNED]
    assert pruned and {t.user_attrs["prescreen_value"] for t in pruned} <= {t.values[0] for t in shadow.trials
                                                                           if t.state == TrialState.COMPLETE}


def frozen(space, **attrs):
    return optuna.trial.create_trial(state=TrialState.PRUNED, params={"x": 1}, user_attrs=attrs,
                                     distributions={"x": optuna.distributions.IntDistribution(0, 3)})


def test_stand_in_takes_the_best_estimate_a_pruned_trial_holds(space):
    es = space.model_copy(update={"early_stop": space.early_stop.model_copy(update={"margin": 0.5})})
    # early stop: the replay passed the limit, so the limit is a lower bound of its exec time
    assert S.stand_in(frozen(es, pruned_limit_s=90.0, prescreen_value=50.0), es) == ([90.0], False)
    # a probe's sim-corrected prediction beats the bare simulated value
    assert S.stand_in(frozen(space, predicted_total_time=70.0, prescreen_value=50.0), space, 1.5) == ([70.0], False)
    # the simulated value, scaled by how far real trials were from it
    assert S.stand_in(frozen(space, prescreen_value=50.0, prescreen_promising=False), space, 1.5) == ([75.0], False)
    # the simulator saw it fail: infeasible, as a failed real trial is
    values, failed = S.stand_in(frozen(space, prescreen_value=None, prescreen_promising=False), space)
    assert failed and values == [float(space.timeouts.replay)]
    assert S.stand_in(frozen(space), space) is None      # nothing known: not handed to the model


def test_sim_scale_is_the_median_real_to_simulated_ratio():
    d = {"x": optuna.distributions.IntDistribution(0, 3)}
    trials = [optuna.trial.create_trial(value=v, params={"x": 1}, distributions=d, user_attrs={"prescreen_value": s})
              for v, s in ((110, 100), (120, 100), (300, 100))]
    assert S.sim_scale(trials) == pytest.approx(1.2)
    assert S.sim_scale([]) == 1.0


def test_neighbour_steps_stay_in_range():
    log_int = optuna.distributions.IntDistribution(32, 1024, log=True)
    assert S._steps(log_int, 32) == [40]
    assert S._steps(log_int, 1024) == [825]   # x or / 32 ** (1/16) = 1.24, rounded
    assert S._steps(optuna.distributions.IntDistribution(0, 3), 0) == [1]
    assert S._steps(optuna.distributions.CategoricalDistribution(["a", "b", "c"]), "b") == ["a", "c"]


def test_failed_configurations_teach_the_model_at_the_worst_measured_value_and_are_not_proposed_again(space):
    """A configuration that failed is FAIL without values (the dashboard's axes show measured trials only);
    the model sees it at the worst value measured so far with its ``failed`` constraint broken, never at
    the replay deadline, and never proposes it again. A host failure teaches nothing."""
    from tuner.runtime import constraints
    sp = small(space)
    study = optuna.create_study(sampler=S.make_sampler(sp))
    for i in range(12):
        t = study.ask()
        c = sp.suggest(t)
        if c["model_config.decode_batch_size"] >= 32:            # "runs out of memory"
            constraints.tell_failed(study, t, sp)
        elif i == 5:                                             # the host's fault: not the configuration's
            study.tell(t, state=TrialState.FAIL)
        else:
            constraints.tell_value(study, t, sp, 10 + 10 / c["model_config.decode_batch_size"])
    failed = [t for t in study.trials if constraints.failed_for_config(t)]
    measured = [t.values[0] for t in study.trials if t.state == TrialState.COMPLETE]
    assert failed and all(t.values is None for t in failed)
    assert len({key(t) for t in study.trials if t.state != TrialState.FAIL or t in failed}) == \
        len([t for t in study.trials if t.state != TrialState.FAIL or t in failed])   # none proposed twice
    shadow = [t for t in study.sampler._shadow.trials if t.state == TrialState.COMPLETE]
    stood_in = [t for t in shadow if t.constraints["failed"] == 1.0]
    assert len(stood_in) == len(failed) and {t.values[0] for t in stood_in} == {max(measured)}
    assert len(shadow) == 11 - 1                                 # the host failure is not in the model
    assert max(measured) < sp.timeouts.replay
