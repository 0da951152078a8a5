"""Process groups through psutil: found by group and by environment tag, ended TERM-then-KILL."""
import os
import subprocess
import sys
import time
import uuid

from serving.procs.groups import end_group, env_tagged, group_alive, group_processes, pid_alive, process_start
from serving.procs.process import ManagedProcess

# a parent that ignores SIGTERM and a child of it in the same group: only SIGKILL ends both
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print("up", flush=True)
time.sleep(600)
"""


def test_a_group_that_ignores_sigterm_is_killed_with_its_children(tmp_path):
    tag = f"groups-test-{uuid.uuid4().hex}"
    proc = ManagedProcess([sys.executable, "-c", STUBBORN], tmp_path / "log", env={**os.environ, "GROUPS_TEST": tag})
    while "up" not in proc.log_tail() or len(group_processes([proc.pgid])) < 2:  # the child is in the group too
        assert proc.alive()
        time.sleep(0.05)
    assert env_tagged("GROUPS_TEST", lambda v: v == tag) == {proc.pgid: tag}   # found by its tag
    proc.stop(grace=0.5)
    assert not group_alive(proc.pgid) and proc.returncode is not None
    assert env_tagged("GROUPS_TEST", lambda v: v == tag) == {}
    assert end_group(proc.pgid) is True           # an ended group is a no-op


def test_start_time_tells_a_process_from_a_reused_pid():
    start = process_start(os.getpid())
    assert pid_alive(os.getpid(), start) and not pid_alive(os.getpid(), start + 100)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert process_start(int(done.stdout)) is None or not pid_alive(int(done.stdout), start)
