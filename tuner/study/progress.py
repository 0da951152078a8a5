"""Progress display behind hooks: rich bars (trials, and the running replay), or plain lines."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

from tuner.runtime.output import OUTPUT_ERRORS, silence, silence_broken

STATE_STYLE = {"complete": "green", "infeasible": "red", "failed": "red", "pruned": "yellow"}


def outcome_line(outcome, objectives: list[str], state: str | None = None) -> str:
    """One line for a finished trial: objective values, or the failure and its cause."""
    state = state or ("complete" if outcome.ok else "failed")
    vals = ", ".join(f"{k}={_fmt(outcome.metrics.get(k))}" for k in objectives)
    took = phases_text(outcome.metrics)
    if state == "complete":
        return vals + took
    if state == "pruned":
        return f"pruned (slower than the best + margin); partial: {vals}"
    return f"{state} {outcome.fail_class}: {outcome.fail_detail}{took}"   # whole: a rejection lists every rule


def phases_text(metrics: dict) -> str:
    """Where the trial's time went (tuner.runtime.phases), when it was recorded."""
    shown = [(name, metrics.get(f"{name}_s")) for name in ("startup", "replay", "stop")]
    shown = [f"{name} {v:.1f} s" for name, v in shown if isinstance(v, (int, float))]
    return f" [{', '.join(shown)}]" if shown else ""


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"


class Progress:
    """Hooks called by the study loop; this base class prints nothing."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def repeat_started(self, index: int, total: int) -> None: ...

    def request_done(self, record) -> None: ...

    def trial_finished(self, number: int, outcome, state: str | None = None) -> None: ...

    def trial_pruned(self, number: int, reason: str) -> None:
        """A trial ended before its full replay (pre-screen, probe): the reason instead of figures."""

    def recovered(self, failed: list[int], ended: list[int]) -> None: ...

    def warm_started(self, simulated: int, candidates: list[dict[str, Any]]) -> None:
        """The simulator study ran ``simulated`` trials; ``candidates`` are queued as the first real ones."""

    def close(self) -> None: ...


class QuietConsole(Console):
    """A rich console that goes quiet when its pipe closes; rich's own default exits the program
    (SystemExit(1)) mid-trial, which would fail the trial whose result it was printing."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence(self.file)


class RichStudyProgress(Progress):
    def __init__(self, n_trials: int, n_requests: int, objectives: list[str], console: Console | None = None):
        self.console = console or QuietConsole(stderr=True)
        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console, transient=False)
        self.objectives = objectives
        self.n_requests = n_requests
        self.trials = self.bar.add_task("trials", total=n_trials)
        self.replay = None
        self.number = None
        self.bar.start()

    def _new_replay(self, label: str) -> None:
        if self.replay is not None:
            self.bar.remove_task(self.replay)
        self.replay = self.bar.add_task(label, total=self.n_requests)

    def trial_started(self, number, params):
        self.number = number
        self.console.print(f"[bold]trial {number}[/] " + ", ".join(f"{k}={v}" for k, v in params.items()))
        self._new_replay(f"  replay #{number}")

    def repeat_started(self, index, total):
        if total > 1:
            self._new_replay(f"  replay #{self.number} ({index + 1}/{total})")

    def request_done(self, record):
        if self.replay is not None:
            self.bar.advance(self.replay)

    def trial_finished(self, number, outcome, state=None):
        state = state or ("complete" if outcome.ok else "failed")
        style = STATE_STYLE.get(state, "white")
        self.console.print(f"  -> [{style}]{outcome_line(outcome, self.objectives, state)}[/]")
        self.bar.advance(self.trials)

    def trial_pruned(self, number, reason):
        self.console.print(f"  -> [{STATE_STYLE['pruned']}]pruned: {reason}[/]")
        self.bar.advance(self.trials)

    def recovered(self, failed, ended):
        self.console.print(f"[yellow]resumed[/]: trials {failed} of a dead tune marked failed; "
                           f"{len(ended)} leftover stack process group(s) ended")

    def warm_started(self, simulated, candidates):
        self.console.print(warm_line(simulated, candidates))

    def close(self):
        self.bar.stop()


def warm_line(simulated: int, candidates: list[dict[str, Any]]) -> str:
    return (f"warm start: {simulated} trials on the simulator; its best {len(candidates)} run first: "
            + "; ".join(", ".join(f"{k.rpartition('.')[2]}={v}" for k, v in c.items()) for c in candidates))


class PlainProgress(Progress):
    """One line per trial, for --no-progress runs, logs and parallel workers."""

    def __init__(self, objectives: list[str], prefix: str = ""):
        self.objectives = objectives
        self.prefix = prefix

    def trial_finished(self, number, outcome, state=None):
        print(f"{self.prefix}trial {number}: {outcome_line(outcome, self.objectives, state)}", flush=True)

    def trial_pruned(self, number, reason):
        print(f"{self.prefix}trial {number}: pruned: {reason}", flush=True)

    def warm_started(self, simulated, candidates):
        print(f"{self.prefix}{warm_line(simulated, candidates)}", flush=True)

    def recovered(self, failed, ended):
        print(f"{self.prefix}resumed: trials {failed} of a dead tune marked failed; "
              f"{len(ended)} leftover stack process group(s) ended", flush=True)


class GuardedProgress(Progress):
    """Passes every hook on to ``inner``; the first output failure (stdout or stderr closed, e.g.
    ``tune ... | head -1``) turns the display off, never the trial: the study goes on and every
    measurement is stored."""

    def __init__(self, inner: Progress):
        self.inner = inner
        self.failed: BaseException | None = None

    def _call(self, hook: str, *args) -> None:
        if self.failed is not None:
            return
        try:
            getattr(self.inner, hook)(*args)
        except OUTPUT_ERRORS as err:
            self.failed = err
            silence_broken()


def _forward(hook: str):
    def call(self, *args):
        self._call(hook, *args)
    call.__name__ = hook
    return call


for _hook in ("trial_started", "repeat_started", "request_done", "trial_finished", "trial_pruned", "recovered", "warm_started",
              "close"):
    setattr(GuardedProgress, _hook, _forward(_hook))


def guarded(progress: Progress | None) -> Progress | None:
    return progress if progress is None or isinstance(progress, GuardedProgress) else GuardedProgress(progress)
