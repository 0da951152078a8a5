"""How many sender processes a plan gets (serving.replay.pool sends it from them).

One process sends a slow or small plan. A plan with a fast stretch goes to one sender process
per CPU, at most 4: somewhere ``PARALLEL_MIN`` requests in a row are due faster than
``PARALLEL_RATE`` (a burst, a high rate, or a burst inside a slow trace), where one event loop
would fall behind sending them and reading their streams. The pool that sends it is started once
per running stack (RunningStack.replay), so its start-up is no per-replay cost and short replays
(a capacity search's 100 requests per rate) get it too. Every replay's client is judged whatever
sent it (tuner.runtime.client_check): a plan this rule gives one process and that process could
not keep up with fails as client_overloaded, never silently.
"""
from __future__ import annotations

import os

from serving.workload import TraceRequest

__all__ = ["workers_for", "peak_rate", "PARALLEL_RATE", "PARALLEL_MIN"]

#: a plan with a stretch faster than this (req/s) gets more than one sender process
PARALLEL_RATE = 300.0
#: requests in a row that make such a stretch (fewer go out from one process within a few ms)
PARALLEL_MIN = 50


def peak_rate(plan: list[tuple[float, TraceRequest]], run: int = PARALLEL_MIN) -> float:
    """The highest rate (req/s) over ``run`` consecutive requests of ``plan`` (inf: all at one instant);
    0 for a plan shorter than ``run``."""
    if len(plan) < run:
        return 0.0
    offs = sorted(off for off, _ in plan)
    span = min(b - a for a, b in zip(offs, offs[run - 1:]))
    return (run - 1) / span if span > 0 else float("inf")


def workers_for(plan: list[tuple[float, TraceRequest]], requested: int | None = None) -> int:
    """Sender processes for ``plan``: 1 for a closed-loop plan (one process keeps its concurrency cap),
    else ``requested`` if given, else one per CPU (at most 4) where the plan has a fast stretch, 1 otherwise."""
    if getattr(plan, "concurrency", None) is not None:
        return 1
    if requested is not None:
        return max(1, requested)
    return 1 if peak_rate(plan) < PARALLEL_RATE else max(1, min(os.cpu_count() or 1, 4))
