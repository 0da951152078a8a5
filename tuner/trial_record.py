"""What trials and studies keep in optuna's storage: the one module that knows their user-attr keys.

A trial's record is typed (``TrialRecord``): its fields are the keys a trial writes besides its
metrics, written through ``write`` (an unknown key or a value of the wrong type raises at once,
so a renamed key fails where it is written, not silently where nobody finds it) and read through
``record``. A trial's metrics stay one user attr each, as optuna-dashboard lists them: written by
``write_metrics`` (a metric may not take a record field's name) and read by ``metric``.
A study's own attrs are named by ``StudyKey`` and go through ``study_attr``/``set_study_attr``.
"""
from __future__ import annotations

import enum
import math
from typing import Any

import optuna
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["TrialRecord", "StudyKey", "record", "write", "write_stored", "write_metrics", "metric", "enqueued_attrs",
           "study_attr", "set_study_attr", "has_study_attr"]


class TrialRecord(BaseModel):
    """A trial's stored facts besides its metrics; every field None (or False) until written."""
    model_config = ConfigDict(extra="allow", frozen=True)   # the extras are the metrics

    config: dict[str, Any] | None = None           # the values measured (StudySpace.config_of; params are positions)
    run_dir: str | None = None                     # the trial's folder, as the study made it
    owner: str | None = None                       # host:pid running it (tuner.study.resume asks whether it lives)
    device: int | None = None                      # the accelerator it ran on
    fail_class: str | None = None                  # why it failed (serving.stacks.failures, tuner.runtime)
    fail_detail: str | None = None
    log_tail: str | None = None
    requeued: bool | None = None                   # its configuration was enqueued again (a host failure)
    retry_of: int | None = None                    # the trial it measures again
    pruned_after_s: float | None = None            # early stopping: when the replay was ended,
    pruned_limit_s: float | None = None            # and the time it had passed by then
    feasible: bool | None = None                   # all constraints held (tuner.runtime.constraints)
    rejected_before_launch: bool | None = None     # a rule refused it: nothing ran, no trial budget spent
    infeasible_because: str | None = None
    probe_promoted: bool | None = None             # pre-screen probes (tuner.screening.gate)
    probe_factor: float | None = None
    prescreen_value: float | None = None           # the surrogate's first objective for it
    prescreen_promising: bool | None = None
    prescreen_reason: str | None = None
    prescreen_objectives: list[float | None] | None = None
    warm_start: int | None = None                  # its rank in the warm start's simulated study (0 = best)
    warm_start_sim: float | None = None            # the simulator's first objective for it

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


FIELDS = frozenset(TrialRecord.model_fields)


class StudyKey(str, enum.Enum):
    """A study's user attrs."""
    SPACE = "space"                                # the study space as loaded (model_dump)
    FINGERPRINT = "fingerprint"                    # what its measurements depend on (tuner.study.identity)
    UID = "uid"
    FINALISTS = "finalists"                        # the finalists' verdict (tuner.study.finalists)
    WARM_START_SIMULATED = "warm_start_simulated"  # every first objective the warm start's simulation saw


def record(trial: optuna.trial.FrozenTrial | optuna.Trial) -> TrialRecord:
    """The trial's record as stored (not validated again: a study written by an older version still reads)."""
    return TrialRecord.model_construct(**trial.user_attrs)


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise KeyError(f"not a field of TrialRecord: {', '.join(unknown)}")
    try:
        got = TrialRecord.model_validate(fields)
    except ValidationError as err:
        raise TypeError(f"a trial record field of the wrong type: {err}") from None
    return {k: getattr(got, k) for k in fields}


def write(trial: optuna.Trial, **fields: Any) -> None:
    """Store record fields of a running trial; an unknown field or a wrongly typed value raises."""
    for k, v in _checked(fields).items():
        trial.set_user_attr(k, v)


def write_metrics(trial: optuna.Trial, metrics: dict[str, Any]) -> None:
    """Store each metric as its own user attr (NaN as None: JSON has no NaN)."""
    clash = sorted(set(metrics) & FIELDS)
    if clash:
        raise KeyError(f"a metric may not take a record field's name: {', '.join(clash)}")
    for k, v in metrics.items():
        trial.set_user_attr(k, None if isinstance(v, float) and math.isnan(v) else v)


def metric(trial: optuna.trial.FrozenTrial | optuna.Trial, name: str) -> Any:
    """One stored metric of the trial (None when it has none)."""
    return trial.user_attrs.get(name)


def enqueued_attrs(**fields: Any) -> dict[str, Any]:
    """The record fields an enqueued trial starts with (``study.enqueue_trial(..., user_attrs=...)``)."""
    return _checked(fields)


def study_attr(study: optuna.Study, key: StudyKey, default: Any = None) -> Any:
    return study.user_attrs.get(key.value, default)


def set_study_attr(study: optuna.Study, key: StudyKey, value: Any) -> None:
    study.set_user_attr(key.value, value)


def write_stored(storage: optuna.storages.BaseStorage, trial_id: int, **fields: Any) -> None:
    """``write`` for a trial known only by its storage id (another process's trial, tuner.study.resume)."""
    for k, v in _checked(fields).items():
        storage.set_trial_user_attr(trial_id, k, v)


def has_study_attr(study: optuna.Study, key: StudyKey) -> bool:
    return key.value in study.user_attrs
