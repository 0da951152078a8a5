"""The private optuna attributes we use exist, and mean what we take them to, on the installed optuna."""
import optuna

from tuner.runtime.optuna_private import CHECKED, storage_of, trial_id


def test_the_installed_optuna_is_one_the_accessors_were_checked_against():
    assert optuna.__version__.startswith(CHECKED), f"optuna {optuna.__version__}: check tuner/runtime/optuna_private.py"


def test_trial_id_and_storage_address_the_same_trial_live_and_frozen():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    live = study.ask()
    storage = storage_of(study)
    storage.set_trial_user_attr(trial_id(live), "marked", True)
    frozen = study.get_trials()[-1]
    assert frozen.user_attrs == {"marked": True} and trial_id(frozen) == trial_id(live)
    assert storage.get_trial(trial_id(study.trials[0])).number == 0
