"""Feasibility: SLO limits from the space's ``constraints:`` and known-infeasible failures.

A trial that crashed, ran out of memory or hung is a measurement of its configuration, so it
is stored COMPLETE with a violated ``failed`` constraint: the samplers (TPE, NSGA-II) learn
the infeasible region from it, and best_trial/best_trials never pick it. Its objective values
are placeholders bounded by the study's own limits (the replay deadline for minimised
objectives, 0 for maximised ones) so plots stay readable; feasibility is what counts.
Failures of the machine, not the configuration (a port taken by someone else, a worker that
died), stay FAIL: they say nothing about the configuration.

Optuna 5 stores ``set_constraint`` values as ``constraints:<key>`` system attrs, but
optuna-dashboard 0.21 only reads the old ``constraints`` list, so both are written.
"""
from __future__ import annotations

import math
from typing import Any

import optuna

from serving.stacks import failures
from tuner import trial_record
from tuner.space.spec import StudySpace
from tuner.runtime.optuna_private import trial_id

CONSTRAINTS_KEY = "constraints"          # the list optuna-dashboard reads
FAILED = "failed"                        # 1.0 when the trial failed for its configuration
# client_overloaded: the replay client fell behind its schedule, so the load was not what was asked
NOT_THE_CONFIG = {failures.PORT_IN_USE, "worker_died", "interrupted", "client_overloaded"}


def is_infra_failure(fail_class: str | None) -> bool:
    """A failure that says nothing about the configuration: the trial is FAIL, not infeasible."""
    return fail_class in NOT_THE_CONFIG


def slo_key(c) -> str:
    return f"slo_{c.metric}"


def slo_values(space: StudySpace, metrics: dict[str, Any]) -> dict[str, float]:
    """One value per space constraint, ``<= 0`` when met (the amount over the limit otherwise).

    A metric that is missing or NaN breaks its constraint (value 1.0): an SLO that could not
    be measured is not met.
    """
    out: dict[str, float] = {}
    for c in space.constraints:
        v = metrics.get(c.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[slo_key(c)] = 1.0
            continue
        over = [float(v) - c.max] if c.max is not None else []
        under = [c.min - float(v)] if c.min is not None else []
        out[slo_key(c)] = max(over + under) if over or under else 0.0
    return out


def constraint_values(space: StudySpace, metrics: dict[str, Any], failed: bool) -> dict[str, float]:
    """Every constraint of a trial, in a fixed order: ``failed`` first, then the SLOs."""
    vals = {FAILED: 1.0 if failed else 0.0}
    if failed:  # metrics of a broken run are partial; only the failure counts
        vals |= {slo_key(c): 0.0 for c in space.constraints}
    else:
        vals |= slo_values(space, metrics)
    return vals


def apply(trial: optuna.Trial, values: dict[str, float]) -> None:
    """Store through set_constraint (what the samplers read) and the old list (what the dashboard reads)."""
    for key, v in values.items():
        trial.set_constraint(key, v)
    trial.storage.set_trial_system_attr(trial_id(trial), CONSTRAINTS_KEY, list(values.values()))
    broken = [k for k, v in values.items() if v > 0]
    trial_record.write(trial, feasible=not broken, **({"infeasible_because": ", ".join(broken)} if broken else {}))


def placeholder_values(space: StudySpace) -> list[float]:
    """The worst objective values the study allows (the replay deadline, 0): what a failed configuration
    stands in with for a model when no trial was measured yet (tuner.search.sampler.worst_values)."""
    return [float(space.timeouts.replay) if o.direction == "minimize" else 0.0 for o in space.objectives]


def tell_failed(study: optuna.Study, trial: optuna.Trial, space: StudySpace) -> None:
    """As a study stores a configuration that failed (tuner.study.run): its ``failed`` constraint broken
    and FAIL, without objective values (samplers: tuner.search.sampler.worst_values)."""
    apply(trial, constraint_values(space, {}, failed=True))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def tell_value(study: optuna.Study, trial: optuna.Trial, space: StudySpace, value: float) -> None:
    """A first objective known without SLO figures (the warm start's simulation, a bench's tabular
    replay): COMPLETE, its constraints (the same keys a failure gets) met."""
    apply(trial, {FAILED: 0.0} | {slo_key(c): 0.0 for c in space.constraints})
    study.tell(trial, value)


def failed_for_config(trial: optuna.trial.FrozenTrial) -> bool:
    """A FAIL trial whose configuration failed (it is infeasible; it holds no objective values, so the
    dashboard's axes show measured trials only); a FAIL trial of a host failure says nothing of it."""
    return trial.state == optuna.trial.TrialState.FAIL and trial_record.record(trial).feasible is False


def outcome(trial: optuna.trial.FrozenTrial) -> str:
    """feasible | infeasible (measured and an SLO broken, or its configuration failed) | pruned | fail | ..."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return "feasible" if is_feasible(trial) else "infeasible"
    return "infeasible" if failed_for_config(trial) else trial.state.name.lower()


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    if trial_record.record(trial).feasible is False:
        return False
    return all(v <= 0 for v in trial.constraints.values())
