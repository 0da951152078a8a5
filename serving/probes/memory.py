"""Resident memory (MiB) of every process in a stack's process groups, read with psutil."""
from __future__ import annotations

import psutil

from serving.probes.base import Probe

__all__ = ["GroupMemoryProbe", "group_processes"]


def group_processes(pgids: set[int] | list[int]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is one of ``pgids``."""
    wanted, out = set(pgids), []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and _pgid(proc) in wanted:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue
    return out


def _pgid(proc: psutil.Process) -> int:
    import os
    return os.getpgid(proc.pid)


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
