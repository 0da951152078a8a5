"""Process groups, read and ended through psutil (no hand-read /proc, so it works wherever psutil does).

Every process the project starts leads its own process group (``start_new_session``), so a group
id is the handle for "everything this server started". Zombies are not counted as alive: an
unreaping PID 1 (some containers) keeps them listed long after they died, and waiting on them
would only burn the grace period.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Iterable

import psutil

__all__ = ["group_processes", "group_alive", "end_group", "process_start", "pid_alive", "env_tagged"]

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ProcessLookupError, PermissionError)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def group_processes(pgids: Iterable[int]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is one of ``pgids``."""
    wanted = set(pgids)
    return [p for p in psutil.process_iter() if _pgid(p.pid) in wanted and _live(p)]


def group_alive(pgid: int) -> bool:
    return bool(group_processes([pgid]))


#: seconds a SIGKILLed group may take to be gone: a process of several GB (vLLM's KV pool) frees its pages
#: as it exits, and on a 2-core host at load 12 that outlasted 2 s (CI: a vLLM group still listed); the wait
#: ends as soon as the group is gone, so a quick exit costs nothing
KILL_WAIT = 15.0


def end_group(pgid: int, grace: float = 5.0, kill_wait: float = KILL_WAIT, poll=None) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; True once none is alive.

    ``poll`` (e.g. ``Popen.poll``) reaps our own child while we wait, so it does not linger as
    a zombie of ours."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return True
        end = time.monotonic() + wait
        while True:
            if poll:
                poll()
            if not group_alive(pgid):
                return True
            if time.monotonic() >= end:
                break
            time.sleep(0.05)
    return not group_alive(pgid)


def process_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (stable for the process's life, unmoved by
    clock steps, the same number as field 22 of Linux's /proc/<pid>/stat); None when it is gone.

    With the pid it identifies a process: a reused pid has another start time."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        since_boot = proc.create_time() - psutil.boot_time()  # both offset by the same boot time
    except _GONE:
        return None
    return round(since_boot * _TICKS)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def pid_alive(pid: int, start: int) -> bool:
    """Whether the process ``pid`` that started at ``start`` (as process_start gave it) still runs."""
    now = process_start(pid)
    return now is not None and abs(now - start) <= 1  # a tick of float rounding


def env_tagged(name: str, accept=lambda value: True) -> dict[int, str]:
    """{pgid: value} of the process groups holding a process whose environment sets ``name`` to a
    value ``accept`` takes; our own group is never listed."""
    out: dict[int, str] = {}
    me = os.getpgrp()
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get(name)
        except _GONE:
            continue
        if value is None or not accept(value) or not _live(proc):
            continue
        pgid = _pgid(proc.pid)
        if pgid is not None and pgid > 1 and pgid != me:
            out[pgid] = value
    return out


def shm_segments(pgids: Iterable[int]) -> list[str]:
    """The /dev/shm segments the groups' processes have mapped (llm-serving's 1 GiB worker buffers,
    vLLM's message queues): what a stopped stack may leave behind."""
    out: set[str] = set()
    for proc in group_processes(pgids):
        try:
            out |= {m.path for m in proc.memory_maps(grouped=True) if m.path.startswith("/dev/shm/")}
        except (psutil.Error, OSError):
            continue
    return sorted(out)


def remove_segments(segments: list[str]) -> list[str]:
    """Unlink those of ``segments`` still there once their processes are gone; the ones removed."""
    left = [seg for seg in segments if os.path.exists(seg)]
    for seg in left:
        try:
            os.unlink(seg)
        except OSError:
            pass
    return left
