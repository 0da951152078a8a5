"""Which trial wins: feasible trials only, and the `tune finalize` verdict while it is current."""
from __future__ import annotations

from typing import Any

import optuna

from serving.config.errors import ConfigError
from tuner.trial_record import StudyKey, record, study_attr
from tuner.runtime import constraints

__all__ = ["feasible_trials", "best_trial", "best_value", "current_verdict", "verdict_choice", "n_complete",
           "trial_config"]



def n_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def current_verdict(study: optuna.Study) -> dict | None:
    """The stored verdict, unless trials completed after it (then it is stale)."""
    v = study_attr(study, StudyKey.FINALISTS)
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


def best_value(study: optuna.Study) -> float | None:
    """Best value of the first objective among the feasible completed trials (None before one)."""
    values = [t.values[0] for t in feasible_trials(study)]
    if not values:
        return None
    return min(values) if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else max(values)


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


def trial_config(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The configuration a trial measured: its ``config`` user attr, stored when it was drawn. The one
    source of truth for every reader: its Optuna params hold positions in choice lists that may have
    changed since (StudySpace.config_of would map them through today's lists)."""
    config = record(trial).config
    if not isinstance(config, dict):
        raise ConfigError(f"trial {trial.number} has no stored configuration (user attr 'config'); "
                          "it was never measured", key="study")
    return dict(config)
