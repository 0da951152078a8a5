"""Optuna's private attributes, in one place: what its public API does not give us.

A trial's storage id (to write a system attribute the samplers read, or to fail a dead worker's
trial) and a study's storage object have no public accessor in optuna 4-5; the GP's fit without
its device guard (CpuGPSampler) calls GPSampler's own fit and reads its startup count. Every use goes
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


class CpuGPSampler(optuna.samplers.GPSampler):
    """optuna's GPSampler, less the ``with torch.device("cpu")`` its ``sample_relative`` wraps each
    fit in (a guard against a CUDA default device, optuna#6113). That guard is a torch-function mode:
    every tensor operation of the fit and the acquisition search goes through Python once more
    (bench/sampler.py: the same proposals at 0.75x the CPU a proposal without it). Where torch's
    default device is the CPU (the tuner never sets another), the guard changes nothing but the
    cost, so the fit runs without it.

    Same proposals: the trials it reads are optuna's (complete ones; running ones with their params;
    the relative params optuna also writes to a trial's system attrs are for other processes
    reading a shared storage, and this sampler only ever runs on the in-memory study the tuner
    hands it, see tuner/search/sampler.py)."""

    def sample_relative(self, study, trial, search_space):
        import torch
        if not search_space or torch.get_default_device().type != "cpu":
            return super().sample_relative(study, trial, search_space)
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        trials = study.get_trials(deepcopy=False, states=states)
        completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                   and search_space.keys() <= t.params.keys()]
        if len(completed) < self._n_startup_trials:
            return {}
        return self._sample_relative_impl(study, completed, running, search_space)
