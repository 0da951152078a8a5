"""Where a trial's time went: its phases' wall times (``startup_s``, ``replay_s``, ``stop_s``).

``startup_s`` is launch to ready (the stack's own start-up, e.g. vLLM loading its model and
compiling: most of a CPU trial), ``replay_s`` everything done on the running stack (the replay or
the capacity search's replays, and the unloaded service-time runs), ``stop_s`` the stop. Every
stack gets them, a trial that failed in a phase included (docs/metrics.md).
"""
from __future__ import annotations

import time
from contextlib import contextmanager

__all__ = ["Phases", "PHASES"]

PHASES = ("startup", "replay", "stop")


class Phases:
    def __init__(self):
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        """Time the block as phase ``name`` (kept also when it raises)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[f"{name}_s"] = round(time.monotonic() - start, 3)
