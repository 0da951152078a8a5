"""A watcher that ends a process group when the process that started it dies, even by SIGKILL.

Each group a command starts (a stack's server, its agents, a dashboard) runs in its own session,
so it does not die with its starter. Without a watcher, a `kill -9` of `tune` left the stack
running until the next command on the study found it by its tag (tuner.study.resume). The
watcher is a small process of its own session: it polls the starter (pid and start time, so a
reused pid is not mistaken for it) and the group; when the starter is gone it ends the group
(TERM, then KILL after a grace), and it exits by itself once the group is gone. Linux's
PR_SET_PDEATHSIG is not used: it fires when the starting *thread* ends and is not inherited by
the server's own children.
"""
from __future__ import annotations

import subprocess
import sys

import psutil

WATCH = r"""
import os, signal, sys, time
import psutil
owner, born, pgid, grace = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def group_alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

def owner_alive():
    try:
        p = psutil.Process(owner)
        return abs(p.create_time() - born) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

while group_alive():
    if not owner_alive():
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while group_alive() and time.monotonic() < end:
            time.sleep(0.1)
        if group_alive():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        break
    time.sleep(0.5)
"""


def watch(pgid: int, grace: float = 10.0) -> subprocess.Popen:
    """Start the watcher of ``pgid`` on behalf of this process; it needs no stopping."""
    me = psutil.Process()
    return subprocess.Popen([sys.executable, "-c", WATCH, str(me.pid), repr(me.create_time()), str(pgid), str(grace)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
