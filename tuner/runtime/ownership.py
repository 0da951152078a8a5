"""Who owns a trial and the processes it started, so a later ``tune`` can tell a dead owner's
leftovers from a live worker's.

An owner is ``host:pid:start`` (the pid's start time, so a reused pid is not mistaken for the
worker). Every process a tune command starts gets ``TUNER_TRIAL=<study>/<what>/<owner>`` in its
environment (``<what>`` is a trial number, or ``bare-run``, ``profile``, ``dashboard``, ...); it
runs in its own session, so a SIGKILLed tune leaves it running, and the tag is what proves it
ours. A trial's process group ids are also written to ``<run_dir>/stack.pgid`` once it is up.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from serving.procs.groups import end_group, env_tagged, pid_alive, process_start

__all__ = ["TAG_ENV", "owner_id", "owner_alive", "trial_tag", "tag_owner", "command_tag", "write_pgids",
           "tagged_groups", "end_group"]

TAG_ENV = "TUNER_TRIAL"


def owner_id(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    start = process_start(pid)
    return f"{socket.gethostname()}:{pid}:{start or 0}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host, None when it lives elsewhere or cannot be read
    (only heartbeats tell)."""
    try:
        host, pid, start = owner.rsplit(":", 2)
        pid_n, start_n = int(pid), int(start)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    return pid_alive(pid_n, start_n)


def trial_tag(study: str, number: int | str, owner: str) -> str:
    return f"{study}/{number}/{owner}"


def command_tag(study: str, what: str) -> str:
    """The tag for processes a command (not a trial) starts: ``tune bare-run``, ``profile``..."""
    return trial_tag(study, what, owner_id())


def tag_owner(tag: str) -> str:
    return tag.rsplit("/", 1)[1]


def tagged_groups(study: str) -> dict[int, str]:
    """{pgid: tag} of every process group on this host holding a process tagged for ``study``."""
    return env_tagged(TAG_ENV, lambda tag: tag.startswith(study + "/"))


def write_pgids(run_dir: Path, pgids: list[int]) -> None:
    """Note the process groups a trial's stack reported at launch in run_dir/stack.pgid."""
    if pgids:
        (Path(run_dir) / "stack.pgid").write_text("".join(f"{p}\n" for p in sorted(pgids)))
