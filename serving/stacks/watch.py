"""A replay's watch on the stack's processes: a dead stack ends the replay at once, not after the
request timeout.

Every process of the stack's groups is watched, not only the leaders (llm-serving's agent
processes run under a launcher; vLLM's engine core under its API process). A death alone does
not stop the replay: a launcher may die while what it launched goes on serving. Once a process
has died, the replay stops as soon as requests are in flight and none of them has progressed
(a token, an answer, an error) for ``STALL`` seconds: a stack that keeps answering is left to
finish, and its trial is judged on what it answered.
"""
from __future__ import annotations

import time

import psutil

from serving.procs.groups import group_processes
from serving.workload import RequestRecord

__all__ = ["ProcessWatch", "DeathStop", "STALL"]

STALL = 3.0   # s without progress on an in-flight request, once a process died: the stack is dead
POLL = 0.25   # s between looks at the processes


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def _describe(proc: psutil.Process, cmdline: list[str]) -> str:
    return f"pid {proc.pid} ({' '.join(cmdline)[:120] or '?'})"


class ProcessWatch:
    """The processes of ``pgids`` as they were when first watched; which of them died since."""

    def __init__(self, pgids: list[int]):
        self.procs = group_processes(pgids)
        self.cmdlines: dict[int, list[str]] = {}
        for p in self.procs:
            try:
                self.cmdlines[p.pid] = p.cmdline()
            except psutil.Error:
                self.cmdlines[p.pid] = []
        self.dead: list[str] = []

    def look(self) -> list[str]:
        """The watched processes found dead so far (described: pid and command line)."""
        for p in [p for p in self.procs if _gone(p)]:
            self.procs.remove(p)
            self.dead.append(_describe(p, self.cmdlines.get(p.pid, [])))
        return self.dead


def _progress(records: list[RequestRecord]) -> tuple[int, int]:
    """What moves while a stack serves: tokens streamed and requests answered (an error is no progress:
    a dead server refuses connections at once)."""
    return sum(r.n_tokens for r in records), sum(1 for r in records if r.done is not None and r.error is None)


class DeathStop:
    """A replay stop condition (serving.replay.client.StopCondition): ``inner`` (early stopping, an SLO
    stop) as before, and the stack's death as ProcessWatch and the records tell it."""

    def __init__(self, watch: ProcessWatch, inner=None, stall: float = STALL):
        self.watch, self.inner, self.stall = watch, inner, stall
        self.poll = min(POLL, inner.poll) if inner is not None else POLL
        self.fired = False
        self.died: str | None = None     # set when the stack's death ended the replay
        self._next_look = 0.0
        self._last: tuple[int, int] | None = None
        self._sent = 0
        self._moved = time.monotonic()

    def check(self, elapsed: float, records: list[RequestRecord]) -> bool:
        if self.inner is not None and not self.inner.fired and self.inner.check(elapsed, records):
            self.inner.fired = True
            return True
        now = time.monotonic()
        progress, sent = _progress(records), sum(1 for r in records if r.sent is not None)
        in_flight = any(r.sent is not None and r.done is None and r.error is None for r in records)
        if progress != self._last:
            self._last, self._moved, self._sent = progress, now, sent
        elif not in_flight and sent == self._sent:   # nothing was asked of the stack since: no stall
            self._moved = now
        if now >= self._next_look:
            self._next_look = now + POLL
            self.watch.look()
        if self.watch.dead and now - self._moved >= self.stall:
            self.died = (f"{', '.join(self.watch.dead)} of the stack died and no request progressed "
                         f"for {self.stall:g} s")
            return True
        return False
