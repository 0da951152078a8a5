"""Sim-guided warm start: a study on the simulator first; its best distinct configurations run first for real.

On an Ascend host a trial costs ~5 minutes of start-up plus its replay, and the simulator (the
calibrated latency profile, same render and pre-launch checks) a fraction of a second. So with
``prescreen: {warm_start: N, sim_trials: M}`` the study first runs M trials of its own sampler
on the simulator (in memory, on the first objective), then enqueues the N best distinct feasible
configurations (``study.enqueue_trial``) as its first real trials; from there the model learns
from real measurements only. The simulated values also seed the pre-screen gate, so it ranks
the first real candidate against M simulated ones instead of waiting for real warm-up trials.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner.trial_record import StudyKey, enqueued_attrs, has_study_attr, set_study_attr, study_attr
from tuner.runtime import constraints
from tuner.screening.prescreen import first_sign
from tuner.space.spec import StudySpace
from tuner.search.sampler import make_sampler



@dataclass
class WarmStart:
    candidates: list[tuple[dict[str, Any], float]] = field(default_factory=list)   # best first
    simulated: list[float] = field(default_factory=list)   # every simulated first objective (NaN: failed)


def sim_study(space: StudySpace, evaluate: Callable[[dict[str, Any]], float], trials: int, pick: int) -> WarmStart:
    """Optimise ``evaluate`` (the simulated first objective of a configuration, NaN or inf when it fails)
    with the study's sampler for ``trials`` trials; the ``pick`` best distinct feasible configurations."""
    first = space.model_copy(update={"objectives": [space.objectives[0]]})
    study = optuna.create_study(sampler=make_sampler(first), direction=first.objectives[0].direction)
    seen: dict[tuple, tuple[dict[str, Any], float]] = {}
    out = WarmStart()
    for _ in range(trials):
        trial = study.ask()
        params = first.suggest(trial)
        v = float(evaluate(params))
        failed = math.isnan(v) or math.isinf(v)
        if failed:                                   # as a real study tells a failure
            constraints.tell_failed(study, trial, first)
        else:
            constraints.tell_value(study, trial, first, v)
        out.simulated.append(math.nan if failed else v)
        if not failed:
            seen[tuple(sorted(params.items()))] = (params, v)
    sign = first_sign(first)
    out.candidates = sorted(seen.values(), key=lambda pv: sign * pv[1])[:pick]
    return out


def enqueue(study: optuna.Study, space: StudySpace, warm: WarmStart) -> None:
    """The candidates as the study's next trials, best first; each is a real trial like any other.
    The simulated values are kept with the study (``simulated``) for every later run's gate."""
    set_study_attr(study, StudyKey.WARM_START_SIMULATED, [None if math.isnan(v) else v for v in warm.simulated])
    for rank, (params, value) in enumerate(warm.candidates):
        study.enqueue_trial(space.stored_params(params), user_attrs=enqueued_attrs(warm_start=rank, warm_start_sim=value))


def simulated(study: optuna.Study) -> list[float]:
    return [math.nan if v is None else float(v) for v in study_attr(study, StudyKey.WARM_START_SIMULATED, [])]


def started(study: optuna.Study) -> bool:
    """Whether this study has had its warm start (a second `tune` on it, or a worker, adds none)."""
    return has_study_attr(study, StudyKey.WARM_START_SIMULATED)
