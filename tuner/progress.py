"""Progress display behind hooks: rich bars, or nothing with --no-progress."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn


class Progress:
    """Hooks called by the study loop; this base class prints nothing."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def request_done(self, record) -> None: ...

    def trial_finished(self, number: int, outcome) -> None: ...

    def close(self) -> None: ...


class RichStudyProgress(Progress):
    def __init__(self, n_trials: int, n_requests: int, objectives: list[str]):
        self.console = Console(stderr=True)
        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console, transient=False)
        self.objectives = objectives
        self.n_requests = n_requests
        self.trials = self.bar.add_task("trials", total=n_trials)
        self.replay = None
        self.bar.start()

    def trial_started(self, number, params):
        self.console.print(f"[bold]trial {number}[/] " + ", ".join(f"{k}={v}" for k, v in params.items()))
        if self.replay is not None:
            self.bar.remove_task(self.replay)
        self.replay = self.bar.add_task(f"  replay #{number}", total=self.n_requests)

    def request_done(self, record):
        if self.replay is not None:
            self.bar.advance(self.replay)

    def trial_finished(self, number, outcome):
        if outcome.ok:
            vals = ", ".join(f"{k}={outcome.metrics.get(k, float('nan')):.3f}" for k in self.objectives)
            self.console.print(f"  -> {vals}")
        else:
            self.console.print(f"  -> [red]failed[/] {outcome.fail_class}: {outcome.fail_detail[:200]}")
        self.bar.advance(self.trials)

    def close(self):
        self.bar.stop()


class PlainProgress(Progress):
    """One line per trial, for --no-progress runs and logs."""

    def __init__(self, objectives: list[str]):
        self.objectives = objectives

    def trial_finished(self, number, outcome):
        if outcome.ok:
            print(f"trial {number}: " + ", ".join(f"{k}={outcome.metrics.get(k, float('nan')):.3f}"
                                                 for k in self.objectives), flush=True)
        else:
            print(f"trial {number}: failed {outcome.fail_class}: {outcome.fail_detail[:200]}", flush=True)
