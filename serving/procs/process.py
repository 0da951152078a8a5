"""A child process in its own process group, logged to a file, stopped by group.

Only what we started is ever signalled: the group id we got from start_new_session.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from serving.procs import reaper
from serving.procs.groups import end_group, group_alive


class ManagedProcess:
    def __init__(self, args: list[str], log_path: Path, cwd: Path | None = None, env: dict | None = None):
        if not isinstance(args, list):
            raise TypeError("args must be an argument list, never a shell string")
        self.args = args
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=cwd, env=env, start_new_session=True)
        self.pgid = self.proc.pid  # session leader: its pid is the group id
        self._watcher = reaper.watch(self.pgid)   # ends the group if we die without stopping it

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, max_chars: int = 4000) -> str:
        return tail(self.log_path, max_chars)

    def group_alive(self) -> bool:
        return group_alive(self.pgid)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after ``grace`` seconds."""
        gone = end_group(self.pgid, grace, poll=self.proc.poll)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if gone:
            # nothing left for the watcher to end: ended now, not at its next poll (up to 0.5 s a stop)
            self._watcher.terminate()
        try:
            self._watcher.wait(timeout=2)   # it exits once the group is gone; reaped here, not left a zombie
        except subprocess.TimeoutExpired:
            pass


def tail(path: Path, max_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
