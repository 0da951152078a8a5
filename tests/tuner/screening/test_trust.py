"""The pre-screen gate prunes only while the simulator ranks the measured trials as they measured."""
import math

import optuna

from tests.conftest import ROOT
from tuner.screening.prescreen import MIN_PAIRS, PreScreener, measured_pairs
from tuner.space.compose import load_space
from tuner.space.rigour import PrescreenSpec

SPEC = PrescreenSpec(top_fraction=0.3, warmup=0, min_tau=0.5)


def screener():
    return PreScreener(load_space("pa_batching", ROOT, ["backend=sim"]), ROOT, [], SPEC)


def test_a_simulator_that_ranks_the_measurements_well_keeps_pruning():
    s = screener()
    s.seed([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    s.pairs = [(sim, 2 * sim + 0.1) for sim in (1.0, 2.0, 3.0, 4.0, 5.0)]    # same order: tau 1
    assert s.trusted()[0]
    assert not s.judge({}, 9.5).promising              # far from the best simulated: pruned


def test_a_simulator_that_mis_ranks_them_opens_the_gate_but_still_keeps_out_its_failures():
    s = screener()
    s.seed([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    s.pairs = [(sim, 10.0 - i) for i, sim in enumerate((1.0, 2.0, 3.0, 4.0))]   # reversed order
    assert s.trusted()[0] and not s.judge({}, 9.5).promising   # fewer than MIN_PAIRS: not judged yet
    s.pairs.append((5.0, 5.5))
    assert len(s.pairs) == MIN_PAIRS
    trusted, why = s.trusted()
    assert not trusted and "Kendall tau" in why and "min_tau 0.5" in why
    let_through = s.judge({}, 9.5)
    assert let_through.promising and let_through.reason == why
    assert not s.judge({}, math.nan).promising        # a configuration the simulator saw fail stays out


def test_the_pairs_are_the_complete_trials_the_pre_screen_simulated_both_figures_finite():
    study = optuna.create_study()
    d = {"x": optuna.distributions.IntDistribution(0, 3)}

    def add(**kw):
        study.add_trial(optuna.trial.create_trial(params={"x": 1}, distributions=d, **kw))

    add(value=3.0, user_attrs={"prescreen_value": 2.0})
    add(value=4.0)                                                        # not simulated
    add(state=optuna.trial.TrialState.PRUNED, user_attrs={"prescreen_value": 1.0})
    add(value=math.inf, user_attrs={"prescreen_value": 1.0})              # nothing unmeasured counts
    add(value=5.0, user_attrs={"prescreen_value": math.inf})
    assert measured_pairs(study) == [(2.0, 3.0)]
