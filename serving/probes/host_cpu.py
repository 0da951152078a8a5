"""Host CPU busy share of a stack's processes (its process groups), read with psutil.

The utilisation figure of a stack with no accelerator probe (llm-serving with
``accelerator: none``): CPU seconds its processes used per wall second, as a
percent of all the host's cores (100 = every core busy with the stack).
"""
from __future__ import annotations

import time

import psutil

from serving.probes.base import Probe
from serving.procs.groups import group_processes

__all__ = ["HostCpuProbe"]


class HostCpuProbe(Probe):
    name = "host_cpu"

    def __init__(self, pgids: list[int], cpus: int | None = None):
        self.pgids = set(pgids)
        self.cpus = cpus or psutil.cpu_count() or 1
        self._seen: dict[tuple[int, float], float] = {}   # (pid, create_time) -> CPU s at the last sample
        self._last: float | None = None

    def sample(self) -> float | None:
        now, used, seen = time.monotonic(), 0.0, {}
        for proc in group_processes(self.pgids):
            try:
                key = (proc.pid, proc.create_time())
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu = t.user + t.system
            seen[key] = cpu
            if key in self._seen:
                used += cpu - self._seen[key]
            elif self._last is not None:
                used += cpu   # not there at the last sample (every group member is listed): started since
        last, self._last, self._seen = self._last, now, seen
        if last is None or now <= last:
            return None
        return 100.0 * min(1.0, max(0.0, used / ((now - last) * self.cpus)))
