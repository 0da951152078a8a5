"""Measure one configuration ``repeats`` times; the median is the objective, the spread is kept.

A repeat is a whole trial (fresh stack, full replay): start-up state, allocator and OS noise
belong to what is measured. The repeat nearest the median (on the first objective) stands
for the configuration: its metrics and requests.csv become the trial's. A failed or
early-stopped repeat ends the measurement: the configuration failed or is not competitive.

A repeat whose replay client fell behind (``client_overloaded``, tuner.runtime.client_check)
measured the client, not the configuration: it is measured again once (its files kept under
``client_overloaded/``), and if the client falls behind again the trial fails with that class.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuner.runtime.client_check import CLIENT_OVERLOADED
from tuner.runtime.early_stop import EarlyStop
from tuner.runtime.context import TrialContext
from tuner.space.spec import StudySpace
from tuner.runtime.stats import spread
from tuner.runtime.trial import TrialOutcome, run_trial


@dataclass
class Measurement:
    outcome: TrialOutcome                     # the representative (or the failing/aborted) repeat
    repeats: list[TrialOutcome] = field(default_factory=list)
    stopped: EarlyStop | None = None          # set when early stopping aborted a replay

    @property
    def pruned(self) -> bool:
        return self.stopped is not None


def measure(ctx: TrialContext, params: dict[str, Any], early_stop: Callable[[], EarlyStop | None] = lambda: None,
            on_repeat: Callable[[int, int], None] | None = None) -> Measurement:
    """``space.repeats`` trials of ``params`` (each its own launch; ``ctx.tag`` marks their processes and
    their process groups are noted in their folders, so a resume after a crash finds and ends them)."""
    space, run_dir = ctx.space, ctx.run_dir
    n = space.repeats
    outcomes: list[TrialOutcome] = []
    for i in range(n):
        rdir = run_dir if n == 1 else run_dir / f"repeat{i}"
        if on_repeat:
            on_repeat(i, n)
        stop = early_stop()
        out = run_trial(ctx.at(rdir), params, stop)
        if out.fail_class == CLIENT_OVERLOADED and not (stop is not None and stop.fired):
            set_aside(rdir, CLIENT_OVERLOADED)
            first = out
            stop = early_stop()
            out = run_trial(ctx.at(rdir), params, stop)
            out.metrics["client_remeasured"] = 1.0
            if out.fail_class == CLIENT_OVERLOADED:
                out.fail_detail = f"{out.fail_detail} (and before it was measured again: {first.fail_detail})"
        outcomes.append(out)
        if stop is not None and stop.fired:
            return Measurement(out, outcomes, stop)
        if not out.ok:
            return Measurement(out, outcomes)
    return Measurement(combine(space, outcomes, run_dir), outcomes)


def set_aside(run_dir: Path, name: str) -> None:
    """Move what a run left in ``run_dir`` into ``run_dir/name`` (kept: nothing measured is lost)."""
    aside = run_dir / name
    aside.mkdir(parents=True, exist_ok=True)
    for entry in list(run_dir.iterdir()):
        if entry != aside and not (entry.is_dir() and entry.name.startswith("repeat")):
            shutil.move(str(entry), aside / entry.name)


def combine(space: StudySpace, outcomes: list[TrialOutcome], run_dir: Path) -> TrialOutcome:
    """Median objectives over repeats, with each objective's repeats, IQR and relative spread."""
    if len(outcomes) == 1:
        return outcomes[0]
    first = space.objectives[0].name
    stats = {o.name: spread([r.metrics.get(o.name, float("nan")) for r in outcomes]) for o in space.objectives}
    med = stats[first]["median"]
    rep_i = min(range(len(outcomes)), key=lambda i: abs(outcomes[i].metrics.get(first, float("inf")) - med))
    rep = outcomes[rep_i]
    metrics = dict(rep.metrics)
    for name, s in stats.items():
        metrics[name] = s["median"]
        metrics[f"{name}_repeats"] = [r.metrics.get(name) for r in outcomes]
        metrics[f"{name}_iqr"] = s["iqr"]
        metrics[f"{name}_rel_spread"] = s["rel_spread"]
    metrics["repeats"] = float(len(outcomes))
    metrics["representative_repeat"] = float(rep_i)
    src = run_dir / f"repeat{rep_i}" / "requests.csv"
    if src.exists():  # the report reads trials/<study>/<n>/requests.csv
        shutil.copyfile(src, run_dir / "requests.csv")
    return TrialOutcome(metrics=metrics, records=rep.records)
