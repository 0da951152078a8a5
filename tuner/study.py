"""The Optuna loop: one trial per sampled configuration, failures recorded, never fatal."""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from tuner.progress import Progress
from tuner.space import StudySpace
from tuner.trace import load_trace, schedule
from tuner.trial import TrialOutcome, run_trial


class TrialFailed(Exception):
    """Raised from the objective so Optuna stores the trial as FAIL (and the study goes on)."""


@dataclass
class StudyRun:
    space: StudySpace
    root: Path
    storage: str
    device_id: int | None = None
    progress: Progress | None = None

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials" / self.space.study

    def plan(self):
        s = self.space
        return schedule(load_trace(self.root / s.trace), s.load.qps, s.load.duration, s.load.seed)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        s = self.space
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=s.seed)
        if s.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=s.seed)
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, n_startup_trials=5)

    def open_study(self) -> optuna.Study:
        s = self.space
        study = optuna.create_study(study_name=s.study, storage=self.storage, load_if_exists=True,
                                    sampler=self.make_sampler(), directions=[o.direction for o in s.objectives])
        with warnings.catch_warnings():  # experimental in optuna, stable enough to name dashboard axes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.name for o in s.objectives])
        study.set_user_attr("space", s.model_dump(mode="json"))
        return study

    def objective(self, trial: optuna.Trial) -> list[float]:
        params = self.space.suggest(trial)
        run_dir = self.trials_dir / str(trial.number)
        if self.progress:
            self.progress.trial_started(trial.number, params)
        outcome = run_trial(self.space, self.root, params, run_dir, self.plan(), self.device_id,
                            on_request=self.progress.request_done if self.progress else None)
        self._record(trial, outcome, run_dir)
        if self.progress:
            self.progress.trial_finished(trial.number, outcome)
        if not outcome.ok:
            raise TrialFailed(f"{outcome.fail_class}: {outcome.fail_detail}")
        values = [outcome.metrics.get(o.name, float("nan")) for o in self.space.objectives]
        if any(math.isnan(v) for v in values):
            raise TrialFailed(f"objective missing from metrics: {[o.name for o in self.space.objectives]}")
        return values

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, run_dir: Path) -> None:
        for k, v in outcome.metrics.items():
            trial.set_user_attr(k, None if isinstance(v, float) and math.isnan(v) else v)
        trial.set_user_attr("run_dir", str(run_dir))
        if not outcome.ok:
            trial.set_user_attr("fail_class", outcome.fail_class)
            trial.set_user_attr("fail_detail", outcome.fail_detail[:2000])
            trial.set_user_attr("log_tail", outcome.log_tail[-2000:])
        (run_dir / "outcome.json").write_text(json.dumps(
            {"params": trial.params, "metrics": outcome.metrics, "fail_class": outcome.fail_class,
             "fail_detail": outcome.fail_detail}, indent=1, default=str))

    def run(self, n_trials: int) -> optuna.Study:
        study = self.open_study()
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        study.optimize(self.objective, n_trials=n_trials, catch=(TrialFailed,))
        return study


def default_storage(root: Path, study: str) -> str:
    (root / "trials").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'trials' / (study + '.db')}"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The winner: single objective = best_trial; several = the Pareto trial best on the first one."""
    if len(study.directions) == 1:
        return study.best_trial
    front = study.best_trials
    if not front:
        raise ValueError(f"study {study.study_name!r} has no completed trial to export")
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    return min(front, key=lambda t: sign * t.values[0])


def trial_params(space: StudySpace, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {k: trial.params[k] for k in space.param_specs() if k in trial.params}
