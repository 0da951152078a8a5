"""A group whose starter dies by SIGKILL is ended by its watcher; a group stopped as usual leaves no watcher."""
import os
import signal
import subprocess
import sys
import time

import psutil

from serving.procs.groups import group_alive
from serving.procs.process import ManagedProcess

STARTER = """
import sys, time
from serving.procs.process import ManagedProcess
p = ManagedProcess([sys.executable, "-c", "import time; time.sleep(600)"], sys.argv[1])
print(p.pgid, p._watcher.pid, flush=True)
time.sleep(600)
"""


def wait_until(cond, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_the_group_of_a_sigkilled_starter_is_ended(tmp_path):
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / "log")], stdout=subprocess.PIPE, text=True)
    pgid, watcher = map(int, starter.stdout.readline().split())
    try:
        assert group_alive(pgid)
        time.sleep(1.0)                  # the watcher has polled a live starter: it does not end the group early
        assert group_alive(pgid)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        assert wait_until(lambda: not group_alive(pgid)), "the dead starter's group was left running"
        assert wait_until(lambda: not psutil.pid_exists(watcher) or psutil.Process(watcher).status() == "zombie")
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_a_stopped_process_leaves_no_watcher(tmp_path):
    p = ManagedProcess([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "log")
    watcher = p._watcher
    p.stop(grace=2)
    assert not group_alive(p.pgid) and watcher.poll() is not None
