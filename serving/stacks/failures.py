"""Failure classes of a trial, read from logs and exit codes. A failure is a result.

The patterns cover our embedded engine and MindSpore llm-serving on Ascend
(MindSpore runtime, CANN/ACL and GE lines, uvicorn's bind error). The most
specific class wins; the caller passes the phase it failed in as the default.
"""
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

_OOM = "|".join([
    r"out of memory", r"MemoryError", r"\bOOM\b",
    r"Malloc device memory failed", r"Allocate memory failed", r"Device memory is not enough",
    # MindSpore runtime: "Device(id:0) memory isn't enough and alloc failed", "Memory not enough: current free
    # memory size[..] is smaller than required size[..]", "... plus alloc size : N is more than total mem size"
    r"memory isn'?t enough", r"Memory not enough", r"is more than total mem size",
    r"Allocate (?:static|dynamic|continuous|workspace) memory failed", r"Malloc for kernel .* failed",
    # CANN / ACL / GE: "Memory_Allocation_Failure(EL0004)", "Call rtMalloc fail", "aclrtMalloc failed"
    r"EL0004", r"Memory_Allocation_Failure", r"\brtMalloc\w* fail", r"aclrtMalloc\w* fail",
    r"ACL_ERROR_RT_MEMORY_ALLOCATION", r"ACL_ERROR_GE_MEMORY_ALLOCATION",
])
_PORT = "|".join([
    r"address already in use", r"Errno 98", r"EADDRINUSE",
    r"error while attempting to bind on address",   # uvicorn
])

_PATTERNS = [
    (OOM, re.compile(_OOM, re.I)),
    (PORT_IN_USE, re.compile(_PORT, re.I)),
]

TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


def classify_log(log: str, default: str) -> str:
    """The most specific class the log shows, else ``default`` (the phase it failed in)."""
    for cls, pat in _PATTERNS:
        if pat.search(log):
            return cls
    return default


_ERROR_LINE = re.compile(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b.*)$", re.M)


def last_error(log: str) -> str:
    """The last exception line after a Traceback in ``log`` (``ValueError: ...``), or ''."""
    at = [m.end() for m in TRACEBACK.finditer(log)]
    if not at:
        return ""
    found = _ERROR_LINE.findall(log[at[-1]:])
    return found[-1].strip()[:300] if found else ""
