"""Early stopping: abort a replay that is already slower than the best known trial.

Exec time only grows while a replay runs, so once the elapsed time passes
``best * (1 + margin) + grace`` the trial cannot come close to the best on that metric;
the rest of the replay is wasted machine time. It is a stop condition the replayer polls
(serving.replay.StopCondition).
"""
from __future__ import annotations

import math

import optuna

from tuner import trial_record
from tuner.runtime.constraints import is_feasible
from serving.workload import RequestRecord
from tuner.space.spec import StudySpace


def best_known(study: optuna.Study, space: StudySpace) -> float | None:
    """Best feasible value of the early-stop metric so far (it must be a minimised objective)."""
    metric = space.early_stop.metric
    obj = next((o for o in space.objectives if o.name == metric), None)
    if space.early_stop.margin is None or obj is None or obj.direction != "minimize":
        return None
    vals = [trial_record.metric(t, metric) for t in study.get_trials(deepcopy=False,
                                                                 states=(optuna.trial.TrialState.COMPLETE,))
            if is_feasible(t)]
    vals = [float(v) for v in vals if isinstance(v, (int, float)) and not math.isnan(v)]
    return min(vals) if vals else None


class EarlyStop:
    """A replay stop condition; ``fired`` tells afterwards whether it ended the replay."""

    def __init__(self, limit: float, poll: float = 0.05):
        self.limit, self.poll = limit, poll
        self.fired = False
        self.elapsed = 0.0

    @classmethod
    def for_trial(cls, study: optuna.Study, space: StudySpace) -> "EarlyStop | None":
        best = best_known(study, space)
        if best is None:
            return None
        return cls(best * (1 + space.early_stop.margin) + space.early_stop.grace)

    def check(self, elapsed: float, records: list[RequestRecord]) -> bool:
        if elapsed > self.limit:
            self.elapsed = elapsed
            return True
        return False
