"""Which trial wins: feasible trials only, and the `tune finalize` verdict while it is current."""
from __future__ import annotations

import optuna

from tuner.runtime import constraints

__all__ = ["ATTR", "feasible_trials", "best_trial", "current_verdict", "verdict_choice", "n_complete"]

ATTR = "finalists"   # the study user attr holding the finalists' verdict


def n_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def current_verdict(study: optuna.Study) -> dict | None:
    """The stored verdict, unless trials completed after it (then it is stale)."""
    v = study.user_attrs.get(ATTR)
    return v if v and v.get("n_complete") == n_complete(study) else None


def verdict_choice(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The declared winner, or the better-median one of a tie, while the verdict is current."""
    v = current_verdict(study)
    if v is None:
        return None
    number = v["winner"] if v["winner"] is not None else v["tied"][0]
    return next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)


def feasible_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [t for t in done if constraints.is_feasible(t)]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The winner, feasible trials only: the `tune finalize` verdict when it is current, else
    single objective = the best value; several = the Pareto trial best on the first one."""
    chosen = verdict_choice(study)
    if chosen is not None:
        return chosen
    feasible = feasible_trials(study)
    if not feasible:
        raise ValueError(f"study {study.study_name!r} has no feasible completed trial to export")
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    if len(study.directions) == 1:
        return min(feasible, key=lambda t: sign * t.values[0])
    front = [t for t in study.best_trials if constraints.is_feasible(t)] or feasible
    return min(front, key=lambda t: sign * t.values[0])
