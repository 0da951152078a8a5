"""What measuring one configuration needs besides its params: one object, passed whole.

``run_trial``, ``measure`` and the pre-screen's probes take ``(ctx, params)``; a step that works in
another folder or on a part of the plan derives a context (``at``, ``on``), never a longer argument list.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from serving.workload import Plan, RequestRecord
from tuner.runtime.ownership import TAG_ENV, write_pgids
from tuner.space.spec import StudySpace

__all__ = ["TrialContext"]


@dataclass(frozen=True)
class TrialContext:
    space: StudySpace
    root: Path                                  # the project root: base configs and traces are relative to it
    run_dir: Path                               # the trial's files (config, logs, requests.csv)
    plan: Plan                                  # the replay: (send offset, request) pairs
    device_id: int | None = None                # the accelerator the stack runs on
    tag: str | None = None                      # the trial tag every process the stack starts carries
    on_request: Callable[[RequestRecord], None] | None = None   # each request as it ends (progress)
    on_launch: Callable[[list[int]], None] | None = None         # the stack's process groups, once it is up

    def at(self, run_dir: Path) -> "TrialContext":
        """The same trial in another folder (a repeat, a probe)."""
        return replace(self, run_dir=run_dir)

    def on(self, plan: Plan) -> "TrialContext":
        """The same trial on another plan (a probe's prefix)."""
        return replace(self, plan=plan)

    def env(self) -> dict[str, str]:
        """What every process the stack starts gets in its environment: the tag, so a resume finds it."""
        return {TAG_ENV: self.tag} if self.tag else {}

    def launched(self, pgids: list[int]) -> None:
        """The stack is up: a tagged trial notes its process groups in its folder (tuner.study.resume
        ends them after a crash), then ``on_launch`` hears of them."""
        if self.tag:
            write_pgids(self.run_dir, pgids)
        if self.on_launch:
            self.on_launch(pgids)
