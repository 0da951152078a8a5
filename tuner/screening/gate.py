"""The study's pre-screen: simulate a candidate first, then (optionally) a short real probe.

Enabled by ``prescreen:`` in the space, e.g.
    prescreen: {top_fraction: 0.3, warmup: 5, probe_fraction: 0.2, promote_within: 0.1}
A candidate the simulator ranks poorly is pruned without launching anything; with
``probe_fraction`` the real stack replays that share of the plan and the full
replay runs only when the sim-corrected prediction is close to the best so far.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from tuner.trial_record import write
from tuner.runtime.context import TrialContext
from tuner.runtime.measure import Measurement
from tuner.screening.prescreen import PreScreener, Screened, measured_pairs, needs_probe, probe_then_full
from tuner.space.spec import StudySpace
from tuner.search.selection import best_value


class StudyScreen:
    def __init__(self, space: StudySpace, root: Path, plan):
        self.spec = space.prescreen   # typed and checked when the space was loaded
        self.space, self.root, self.plan = space, root, plan
        self.screener = PreScreener(space, root, plan, self.spec)

    def gate(self, trial: optuna.Trial, params: dict[str, Any]) -> Screened:
        """The simulated candidate; raises TrialPruned when the simulator says it is not promising (and
        its ranking of the measured trials has earned that: PreScreener.trusted)."""
        self.screener.pairs = measured_pairs(trial.study)
        s = self.screener.check(params)
        write(trial, **s.attrs([o.name for o in self.space.objectives]))
        if not s.promising:
            raise optuna.TrialPruned(f"pre-screen: {s.reason}")
        return s

    def probe(self, trial: optuna.Trial, screened: Screened, ctx: TrialContext) -> tuple[Measurement, bool] | None:
        """(measurement, promoted) from a probe run of the gated candidate, or None when probes are off
        or there is no feasible best yet (a probe could only be promoted: the full plan runs at once).
        The probe is promoted when its prediction is within ``promote_within`` of the best feasible
        first objective so far, whatever early stop is set to."""
        best = best_value(trial.study)
        if not self.spec.probe_fraction or not needs_probe(best):
            return None
        r = probe_then_full(ctx, screened.params, best, self.spec.probe_fraction, self.spec.promote_within,
                            sim_full=screened.value)
        write(trial, probe_promoted=r.promoted, probe_factor=r.factor)
        return Measurement(r.outcome, [r.outcome]), r.promoted
