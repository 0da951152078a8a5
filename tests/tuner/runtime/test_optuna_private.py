"""The private optuna attributes we use exist, and mean what we take them to, on the installed optuna."""
import optuna

from tuner.runtime.optuna_private import CHECKED, CpuGPSampler, storage_of, trial_id


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


def _proposals(sampler: optuna.samplers.BaseSampler) -> list[dict]:
    study = optuna.create_study(sampler=sampler)
    # mixed space, an infeasible corner: what the tuner's studies are (ints, a categorical, constraints)
    def objective(t):
        x, n, c = t.suggest_float("x", -2, 2), t.suggest_int("n", 1, 64, log=True), t.suggest_categorical("c", [0, 1])
        t.set_constraint("failed", float(n > 48))
        return (x - 0.5) ** 2 + abs(n - 12) / 10 + c
    study.optimize(objective, n_trials=5)
    return [t.params for t in study.trials]


def test_the_gp_without_the_device_guard_proposes_what_optunas_does():
    """Same seed, same trials: the same proposals, trial for trial (the guard only named the CPU again)."""
    theirs = _proposals(optuna.samplers.GPSampler(seed=3, n_startup_trials=2))
    ours = _proposals(CpuGPSampler(seed=3, n_startup_trials=2))
    assert ours == theirs and len({tuple(p.values()) for p in ours}) > 2
