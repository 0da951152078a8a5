"""Resident memory (MiB) of every process in a stack's process groups, read with psutil."""
from __future__ import annotations

import psutil

from serving.probes.base import Probe
from serving.procs.groups import group_processes

__all__ = ["GroupMemoryProbe", "group_processes"]


class GroupMemoryProbe(Probe):
    """Summed RSS of the groups' processes now, in MiB; its ``_peak`` is the peak memory."""
    name = "host_rss_mb"

    def __init__(self, pgids: list[int]):
        self.pgids = set(pgids)

    def sample(self) -> float | None:
        if not self.pgids:
            return None
        total = 0
        for proc in group_processes(self.pgids):
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total / 2**20
