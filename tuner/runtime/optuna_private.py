"""Optuna's private attributes, in one place: what its public API does not give us.

A trial's storage id (to write a system attribute the samplers read, or to fail a dead worker's
trial) and a study's storage object have no public accessor in optuna 4-5. Every use goes
through here, and tests/tuner/runtime/test_optuna_private.py pins them to the installed optuna,
so an upgrade that renames one fails that test instead of a study.
"""
from __future__ import annotations

import optuna
from optuna.storages import BaseStorage

#: the optuna releases these accessors were checked against (major.minor prefixes)
CHECKED = ("4.", "5.")


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (not its number within the study)."""
    return trial._trial_id


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage
