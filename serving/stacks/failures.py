"""Failure classes of a trial, read from logs and exit codes. A failure is a result.

The patterns cover our embedded engine, MindSpore llm-serving on Ascend
(MindSpore runtime, CANN/ACL and GE lines, uvicorn's bind error) and vLLM (its
engine core's start failure, its KV-pool check, CUDA/torch OOM). The most
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
KV_POOL_TOO_SMALL = "kv_pool_too_small"
# the launched stack runs with another value than the trial's config for a tuned key (serving.stacks.readback)
CONFIG_NOT_APPLIED = "config_not_applied"
HOST_SETUP = "host_setup"   # the host cannot start the stack at all (a module missing, an unknown option)

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
    # torch / vLLM: "torch.OutOfMemoryError: CUDA out of memory", "No available memory for the cache blocks"
    r"OutOfMemoryError", r"No available memory for the cache blocks",
])
# vLLM refuses a pool that cannot hold one max_model_len request: "To serve at least one request with the
# model's max seq len (512), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory"
_KV_POOL = "|".join([
    r"KV cache is needed, which is larger than the available KV cache memory",
    r"To serve at least one request with the model'?s max seq len",
])
_PORT = "|".join([
    r"address already in use", r"Errno 98", r"EADDRINUSE",
    r"error while attempting to bind on address",   # uvicorn
])

_PATTERNS = [
    (KV_POOL_TOO_SMALL, re.compile(_KV_POOL, re.I)),   # before OOM: its text says "memory" too
    (OOM, re.compile(_OOM, re.I)),
    (PORT_IN_USE, re.compile(_PORT, re.I)),
]

TRACEBACK = re.compile(r"Traceback \(most recent call last\)")

# vLLM's engine core dying while its API process may live on (answering 500 to every request)
_ENGINE_DIED = re.compile("|".join([
    r"EngineCore failed to start", r"Engine core initialization failed",
    r"EngineDeadError", r"Engine core proc \S+ died unexpectedly", r"EngineCore encountered a fatal error",
])).search


def engine_died(log: str) -> str | None:
    """The line of ``log`` that says vLLM's engine core died, None when none does."""
    m = _ENGINE_DIED(log)
    if m is None:
        return None
    start = log.rfind("\n", 0, m.start()) + 1
    end = log.find("\n", m.end())
    return log[start:end if end >= 0 else len(log)].strip()[:300]


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


# the host, not the configuration: an interpreter that lacks a module the stack imports, or an option the
# installed stack does not know (argparse's "prog: error: unrecognized arguments: --x", vLLM's config file
# keys become options). Only the last exception counts: stacks log optional imports that failed harmlessly.
_HOST_EXC = re.compile(r"^(?:[\w.]+\.)?(?:ModuleNotFoundError|ImportError)\b")
_UNKNOWN_ARG = re.compile(r"^.*\berror: unrecognized arguments: .*$", re.M)


def host_cause(log: str) -> str | None:
    """The line of a failed start's ``log`` that says the host cannot start the stack, else None."""
    err = last_error(log)
    if err and _HOST_EXC.match(err):
        return err
    m = _UNKNOWN_ARG.search(log)
    return m.group(0).strip()[:300] if m else None
