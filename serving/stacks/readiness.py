"""Waiting for a stack to come up, with a timeout and a watch on the processes."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Callable

from serving.stacks import failures
from serving.stacks.base import LaunchError


def wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float,
               log_tail: Callable[[], str], what: str, poll: float = 0.1) -> None:
    """Return once ``ready()``; raise a classified LaunchError when the process dies or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return
        if not alive():
            tail = log_tail()
            raise LaunchError(failures.classify_log(tail, failures.CRASH_AT_START),
                              f"exited before {what}", tail)
        time.sleep(poll)
    tail = log_tail()
    raise LaunchError(failures.classify_log(tail, failures.READY_TIMEOUT),
                      f"not {what} within {timeout:g} s", tail)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
