"""How many sender processes a plan gets (serving.replay.pool sends it from them).

One process sends a slow or small plan; a fast one (mean rate over ``PARALLEL_RATE``) goes to
one sender process per CPU, at most 4. The pool that sends it is started once per running stack
(RunningStack.replay), so its start-up is no per-replay cost and short replays (a capacity
search's 100 requests per rate) get it too.
"""
from __future__ import annotations

import math
import os

from serving.workload import TraceRequest

__all__ = ["workers_for", "PARALLEL_RATE", "PARALLEL_MIN"]

#: a plan whose mean rate is above this (req/s) gets more than one sender process
PARALLEL_RATE = 300.0
#: and at least this many requests (fewer go out from one process within a few ms)
PARALLEL_MIN = 50


def workers_for(plan: list[tuple[float, TraceRequest]], requested: int | None = None) -> int:
    """Sender processes for ``plan``: 1 for a closed-loop plan (one process keeps its concurrency cap),
    else ``requested`` if given, else 1 for a small or slow plan and one per CPU (at most 4) for a fast one."""
    if getattr(plan, "concurrency", None) is not None:
        return 1
    if requested is not None:
        return max(1, requested)
    if len(plan) < PARALLEL_MIN:
        return 1
    span = plan[-1][0] - plan[0][0]
    rate = len(plan) / span if span > 0 else math.inf
    return 1 if rate < PARALLEL_RATE else max(1, min(os.cpu_count() or 1, 4))
