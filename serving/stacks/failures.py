"""Failure classes of a trial, read from logs and exit codes. A failure is a result."""
from __future__ import annotations

import re

OOM = "oom"
PORT_IN_USE = "port_in_use"
CRASH_AT_START = "crash_at_start"
READY_TIMEOUT = "ready_timeout"
CRASH_DURING_REPLAY = "crash_during_replay"
HANG = "hang"
BAD_RESPONSE = "bad_response"
CONFIG_REJECTED = "config_rejected"

_PATTERNS = [
    (OOM, re.compile(r"out of memory|MemoryError|\bOOM\b|Malloc device memory failed|"
                     r"Allocate memory failed|Device memory is not enough", re.I)),
    (PORT_IN_USE, re.compile(r"address already in use|Errno 98|EADDRINUSE", re.I)),
]


def classify_log(log: str, default: str) -> str:
    """The most specific class the log shows, else ``default`` (the phase it failed in)."""
    for cls, pat in _PATTERNS:
        if pat.search(log):
            return cls
    return default
