"""Resume after a dead ``tune``: fail its RUNNING trials and end the stacks it left behind.

Each trial records its owner (host, pid and the pid's start time, so a reused pid is not
mistaken for the worker) and exports ``TUNER_TRIAL=<study>/<number>/<owner>`` to the stack it
launches; the stack runs in its own session, so a SIGKILLed tune leaves it running. Its
process group id is written to ``<run_dir>/stack.pgid`` once it is up. At the next start:
  * a RUNNING trial whose owner is a dead process on this host, or whose heartbeat is stale
    (RDB storages, any host), is marked FAIL (``worker_died``) and its parameters are queued
    again, so the study loses no configuration;
  * every process group whose members carry the tag of such a dead owner is ended by pgid
    (SIGTERM, then SIGKILL): never by name, never a group of a live worker.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import time
from pathlib import Path

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import TrialState

from serving.stacks.process import live_group_members
from tuner.study.storage import GRACE_S

TAG_ENV = "TUNER_TRIAL"
WORKER_DIED = "worker_died"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (field 3), or None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def owner_id(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    st = _stat(pid)
    return f"{socket.gethostname()}:{pid}:{st[19] if st else 0}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host, None when it lives elsewhere (only heartbeats tell)."""
    host, pid, start = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    st = _stat(int(pid))
    return st is not None and st[0] not in ("Z", "X") and st[19] == start


def trial_tag(study: str, number: int | str, owner: str) -> str:
    return f"{study}/{number}/{owner}"


def _environ_tag(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in env.split(b"\0"):
        if item.startswith(TAG_ENV.encode() + b"="):
            return item.split(b"=", 1)[1].decode("utf-8", "replace")
    return None


def tagged_groups(study: str) -> dict[int, str]:
    """{pgid: tag} of every process group on this host holding a process tagged for ``study``."""
    out: dict[int, str] = {}
    me = os.getpgrp()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        tag = _environ_tag(int(entry.name))
        st = _stat(int(entry.name))
        if tag and st and tag.startswith(study + "/"):
            pgid = int(st[2])
            if pgid > 1 and pgid != me:
                out[pgid] = tag
    return out


def write_pgids(run_dir: Path, pgids: list[int]) -> None:
    """Note the process groups a trial's stack reported at launch in run_dir/stack.pgid."""
    if pgids:
        (Path(run_dir) / "stack.pgid").write_text("".join(f"{p}\n" for p in sorted(pgids)))


def end_group(pgid: int, grace: float = 3.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not live_group_members(pgid):  # zombies do not count: an unreaping PID 1 keeps them
                return
            time.sleep(0.05)


def _is_dead(trial: optuna.trial.FrozenTrial, stale: set[int]) -> bool:
    if trial._trial_id in stale:
        return True
    owner = trial.user_attrs.get("owner")
    if owner:
        return owner_alive(owner) is False
    started = trial.datetime_start or dt.datetime.now()
    return (dt.datetime.now() - started).total_seconds() > GRACE_S  # died before it said who it was


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL and queue their parameters again; their numbers."""
    storage = study._storage
    stale: set[int] = set()
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        stale = set(storage._get_stale_trial_ids(study._study_id))
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(t, stale):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_class", WORKER_DIED)
            storage.set_trial_user_attr(t._trial_id, "fail_detail", f"the tune process running it "
                                        f"({t.user_attrs.get('owner', 'unknown')}) died mid-trial")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first
        failed.append(t.number)
        if t.params and "retry_of" not in t.user_attrs:  # re-measure the configuration once
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return failed


def end_orphans(study_name: str) -> list[int]:
    """End the process groups left by dead workers of this study on this host; their pgids."""
    ended = []
    for pgid, tag in tagged_groups(study_name).items():
        owner = tag.split("/", 2)[2]
        if owner_alive(owner) is False:
            end_group(pgid)
            ended.append(pgid)
    return ended


def recover(study: optuna.Study) -> tuple[list[int], list[int]]:
    """At a tune start: (trial numbers failed, process groups ended)."""
    return fail_dead_trials(study), end_orphans(study.study_name)

