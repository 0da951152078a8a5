"""Resume after a dead ``tune``: fail its RUNNING trials and end the processes it left behind.

Ownership (who runs a trial, the tag on every process it starts) is tuner.runtime.ownership.
At the next start:
  * a RUNNING trial whose owner is a dead process on this host is marked FAIL (``worker_died``)
    and its parameters are queued again, so the study loses no configuration; on RDB storages
    a trial whose heartbeat is stale (a worker on any host) is failed by optuna's
    ``fail_stale_trials`` and re-queued by the storage's stale-trial callback
    (tuner.study.storage.requeue);
  * every process group whose members carry the study's tag with a dead owner (a trial's stack,
    a bare-run's or profile's engine, a dashboard) is ended by pgid (SIGTERM, then SIGKILL):
    never by name, never a group of a live owner.
"""
from __future__ import annotations

import datetime as dt
import warnings

import optuna
from optuna.trial import TrialState

from tuner.trial_record import record, write_stored
from tuner.runtime.ownership import end_group, owner_alive, tag_owner, tagged_groups
from tuner.study.storage import GRACE_S, requeue
from tuner.runtime.optuna_private import storage_of, trial_id

WORKER_DIED = "worker_died"


def _is_dead(trial: optuna.trial.FrozenTrial) -> bool:
    owner = record(trial).owner
    if owner:
        return owner_alive(owner) is False
    started = trial.datetime_start or dt.datetime.now()
    return (dt.datetime.now() - started).total_seconds() > GRACE_S  # died before it said who it was


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL and queue their parameters again; their numbers."""
    storage = storage_of(study)
    running = {trial_id(t): t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    failed = []
    for t in running.values():
        if not _is_dead(t):
            continue
        try:
            write_stored(storage, trial_id(t), fail_class=WORKER_DIED,
                         fail_detail=f"the tune process running it ({record(t).owner or 'unknown'}) died mid-trial")
            if not storage.set_trial_state_values(trial_id(t), TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first
        failed.append(t.number)
        requeue(study, t)
    with warnings.catch_warnings():  # "experimental" in optuna 5; optimize() calls it on every trial too
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeats: workers on any host; re-queued by the callback
    stale = {trial_id(t) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} & running.keys()
    failed += [running[i].number for i in stale if running[i].number not in failed]
    return failed


def end_orphans(study_name: str) -> list[int]:
    """End the process groups left by dead owners of this study on this host; their pgids."""
    ended = []
    for pgid, tag in tagged_groups(study_name).items():
        if owner_alive(tag_owner(tag)) is False:
            end_group(pgid, grace=3.0)
            ended.append(pgid)
    return ended


def recover(study: optuna.Study) -> tuple[list[int], list[int]]:
    """At a tune start: (trial numbers failed, process groups ended)."""
    return fail_dead_trials(study), end_orphans(study.study_name)
