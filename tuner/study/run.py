"""The Optuna loop: one trial per sampled configuration, failures recorded, never fatal.

A trial ends in one of four ways:
  COMPLETE, feasible      measured (median of ``repeats``), every SLO met;
  COMPLETE, infeasible    an SLO broken, or the configuration failed (OOM, crash, hang, bad
                          stream): the sampler learns the region, best_trial never picks it;
  PRUNED                  early stopping aborted the replay; partial figures in user attrs;
  FAIL                    the machine failed, not the configuration (port taken, worker died).
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from serving.stacks import failures, get_stack
from tuner.trial_record import StudyKey, enqueued_attrs, record, set_study_attr, write, write_metrics
from tuner.study import identity
from tuner.runtime import constraints
from tuner.runtime.client_check import CLIENT_OVERLOADED
from tuner.runtime.early_stop import EarlyStop
from tuner.runtime.context import TrialContext
from tuner.runtime.measure import Measurement, measure
from tuner.study.progress import Progress, guarded
from tuner.runtime.ownership import owner_alive, owner_id, trial_tag
from tuner.study.resume import recover
from tuner.space.spec import StudySpace
from tuner.study.signals import stop_signals_interrupt
from tuner.study.storage import open_storage
from tuner.workload.plan import PlannedTrace, build_plan
from tuner.runtime.trial import HostFailure, TrialOutcome
from tuner.screening import warm_start
from tuner.screening.gate import StudyScreen
from tuner.search.sampler import make_sampler


class TrialFailed(Exception):
    """Raised from the objective so Optuna stores the trial as FAIL (and the study goes on)."""


class Budget:
    """``n`` trials for this run, a configuration a rule rejected before launch not counted (it cost no
    launch; the sampler still learns from it and does not propose it again); at most ``REJECTS_CAP``
    times ``n`` trials in all, so a space whose rules reject nearly everything still ends."""
    REJECTS_CAP = 10

    def __init__(self, n: int):
        self.n, self.used = n, 0
        self.cap = n * self.REJECTS_CAP

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not record(trial).rejected_before_launch:
            self.used += 1
        if self.used >= self.n:
            study.stop()


class _OptunaLines(logging.Filter):
    """Optuna logs a failed objective with its traceback: ours say in one line what failed, and a host
    failure is said once, by the command that stops on it."""

    def __init__(self):
        super().__init__()
        self.silenced: set[int] = set()   # trial numbers whose failure the command reports itself

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (TrialFailed, HostFailure)):
            record.exc_info = None
        return not any(record.getMessage().startswith(f"Trial {n} failed") for n in self.silenced)


_LINES = _OptunaLines()
logging.getLogger("optuna.study._optimize").addFilter(_LINES)


@dataclass
class StudyRun:
    space: StudySpace
    root: Path
    storage: Any                      # URL (sqlite:///…, postgresql://…, journal:PATH) or a storage
    device_id: int | None = None
    progress: Progress | None = None
    parent: str | None = None         # owner id of the `tune --devices` that started this worker
    show_progress: bool = False       # a progress display while the trace is read (tuner.workload.reading)
    _trace: PlannedTrace | None = field(default=None, init=False, repr=False)
    _screen_cache: Any = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)

    @property
    def trials_dir(self) -> Path:
        """trials/<study>-<uid8>/: this study's own folder (tuner.study.identity), known once opened."""
        if self._dir is None:
            raise RuntimeError("StudyRun.trials_dir is known once the study is opened (open_study or bind)")
        return self._dir

    def bind(self, study: optuna.Study) -> optuna.Study:
        """Check that ``study`` was measured under this space's conditions and key its artifacts by it."""
        identity.check(study, self.space, self.root)
        self._dir = identity.study_dir(self.root, study)
        return study

    def planned(self) -> PlannedTrace:
        """The trace as read (in the stack's tokens) and the plan drawn from it; read and drawn once."""
        if self._trace is None:
            s = self.space
            stack, options = get_stack(s.backend), s.backend_options()
            counter = stack.token_counter(self.root / s.base_config, options)
            base = stack.config_format.load(self.root / s.base_config)
            self._trace = build_plan(self.root / s.trace, s.load, counter, s.trace_format,
                                     breaks=lambda n: stack.check(base, n, options), show_progress=self.show_progress)
        return self._trace

    def plan(self):
        """The trial's request schedule, the same for every trial."""
        return self.planned().plan

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.space)   # tuner.search.sampler: the GP learns from pruned trials too

    def open_study(self) -> optuna.Study:
        """Create or load the study (the storage and the study are made here, after every check); refuse
        one measured under other conditions, and key this run's artifacts by the study's identity."""
        s = self.space
        study = optuna.create_study(study_name=s.study, storage=open_storage(self.storage), load_if_exists=True,
                                    sampler=self.make_sampler(), directions=[o.direction for o in s.objectives])
        identity.claim(study, s, self.root)
        self._dir = identity.study_dir(self.root, study)
        with warnings.catch_warnings():  # experimental in optuna, stable enough to name dashboard axes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.name for o in s.objectives])
        set_study_attr(study, StudyKey.SPACE, s.model_dump(mode="json"))
        return study

    def objective(self, trial: optuna.Trial) -> list[float]:
        """One trial. A stop signal anywhere in it (the sampler's suggest, the gate, the replay, the
        scoring) leaves the trial ``interrupted`` and, once its configuration is known, queued again;
        the stack is already stopped by then (it is stopped in a ``finally``)."""
        params = None
        try:
            params = self.space.suggest(trial)
            return self._trial(trial, params)
        except KeyboardInterrupt:
            write(trial, fail_class="interrupted")
            if params is not None:
                self._enqueue_again(trial, params)
            raise

    def _trial(self, trial: optuna.Trial, params: dict) -> list[float]:
        run_dir = self.trials_dir / str(trial.number)
        owner = owner_id()
        # owner: tuner.study.resume asks it whether the trial still runs
        write(trial, owner=owner, run_dir=str(run_dir), device=self.device_id)
        if self.progress:
            self.progress.trial_started(trial.number, params)
        screen = self._screen()
        if screen:
            try:
                screened = screen.gate(trial, params)
            except optuna.TrialPruned as pruned:
                if self.progress:
                    self.progress.trial_pruned(trial.number, str(pruned))
                raise
        ctx = TrialContext(self.space, self.root, run_dir, self.plan(), self.device_id,
                           trial_tag(self.space.study, trial.number, owner),
                           self.progress.request_done if self.progress else None)
        try:
            probed = screen.probe(trial, screened, ctx) if screen else None
        except HostFailure as err:
            self._host_failed(trial, params, err)
            raise
        if probed is not None:
            m, promoted = probed
            if not promoted and m.outcome.ok:
                self._record(trial, m.outcome, run_dir)
                reason = "probe predicted no improvement on the best so far"
                if self.progress:
                    self.progress.trial_pruned(trial.number, reason)
                raise optuna.TrialPruned(reason)
            return self._conclude(trial, m, run_dir)
        try:
            m = measure(ctx, params,
                        early_stop=lambda: EarlyStop.for_trial(trial.study, self.space),
                        on_repeat=self.progress.repeat_started if self.progress else None)
        except HostFailure as err:   # the host cannot start the stack: not the configuration's fault
            self._host_failed(trial, params, err)
            raise
        return self._conclude(trial, m, run_dir)

    def warm_start(self, study: optuna.Study) -> warm_start.WarmStart | None:
        """With ``prescreen.warm_start``, once per study: optimise on the simulator and enqueue its best
        distinct configurations as the first real trials. Every run on the study (a resumed one, each
        ``--devices`` worker) seeds its pre-screen gate with the simulated values stored then."""
        screen = self._screen()
        if screen is None or not screen.spec.warm_start:
            return None
        warm = None
        if not warm_start.started(study):
            warm = warm_start.sim_study(self.space, screen.screener.simulate, screen.spec.sim_trials,
                                        screen.spec.warm_start)
            warm_start.enqueue(study, self.space, warm)
            if self.progress:
                self.progress.warm_started(len(warm.simulated), [p for p, _ in warm.candidates])
        if not screen.screener.seeded:
            screen.screener.seed(warm_start.simulated(study))
        return warm

    def _screen(self):
        if self.space.prescreen is None:
            return None
        if self._screen_cache is None:
            self._screen_cache = StudyScreen(self.space, self.root, self.plan())
        return self._screen_cache

    def _conclude(self, trial: optuna.Trial, m: Measurement, run_dir: Path) -> list[float]:
        out = m.outcome
        self._record(trial, out, run_dir)
        state = "pruned" if m.pruned else "failed" if not out.ok else "complete"
        if m.pruned:
            write(trial, pruned_after_s=round(m.stopped.elapsed, 3), pruned_limit_s=round(m.stopped.limit, 3))
        elif not out.ok and not constraints.is_infra_failure(out.fail_class):
            constraints.apply(trial, constraints.constraint_values(self.space, out.metrics, failed=True))
            state = "infeasible"
            if out.fail_class == failures.CONFIG_REJECTED and not out.launched:
                write(trial, rejected_before_launch=True)
        if self.progress:
            self.progress.trial_finished(trial.number, out, state)
        if m.pruned:
            raise optuna.TrialPruned(f"replay passed {m.stopped.limit:.2f} s (best known + margin)")
        if state == "failed":
            if out.fail_class != CLIENT_OVERLOADED:   # measure already measured that one again
                self._requeue(trial)
            raise TrialFailed(f"{out.fail_class}: {out.fail_detail}")
        if state == "infeasible":   # FAIL without values: the dashboard's axes keep to measured trials
            _LINES.silenced.add(trial.number)      # the progress line said why
            raise TrialFailed(f"infeasible: {out.fail_class}: {out.fail_detail}")
        values = [out.metrics.get(o.name, float("nan")) for o in self.space.objectives]
        if any(v is None or math.isnan(v) for v in values):
            raise TrialFailed(f"objective missing from metrics: {[o.name for o in self.space.objectives]}")
        constraints.apply(trial, constraints.constraint_values(self.space, out.metrics, failed=False))
        return values

    def _host_failed(self, trial: optuna.Trial, params: dict[str, Any], err: HostFailure) -> None:
        """Not the configuration's failure: the study stops (the command says why, once) and the
        configuration is measured once the host is fixed."""
        write(trial, fail_class="host_setup", fail_detail=err.message[:2000])
        self._enqueue_again(trial, params)
        _LINES.silenced.add(trial.number)

    def _requeue(self, trial: optuna.Trial) -> None:
        """The machine failed, not the configuration: it is measured again by a later trial (once: a
        retry that fails the same way stays FAIL, so a broken machine cannot loop on it)."""
        rec = record(trial)
        if rec.config and rec.retry_of is None:
            self._enqueue_again(trial, rec.config)
            write(trial, requeued=True)

    def _enqueue_again(self, trial: optuna.Trial, config: dict[str, Any]) -> None:
        """``config`` queued to be measured by a later trial, which records that it retries this one."""
        trial.study.enqueue_trial(self.space.stored_params(config), user_attrs=enqueued_attrs(retry_of=trial.number))

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, run_dir: Path) -> None:
        write_metrics(trial, outcome.metrics)
        if not outcome.ok:
            write(trial, fail_class=outcome.fail_class, fail_detail=outcome.fail_detail[:2000],
                  log_tail=outcome.log_tail[-2000:])
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "outcome.json").write_text(json.dumps(  # the config as stored with the trial (trial_config)
            {"config": record(trial).config, "metrics": outcome.metrics, "fail_class": outcome.fail_class,
             "fail_detail": outcome.fail_detail}, indent=1, default=str))

    def run(self, n_trials: int) -> optuna.Study:
        study = self.open_study()
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        self.progress = guarded(self.progress)  # printing progress never costs a measurement
        failed, ended = recover(study)  # a previous tune died: fail its trials, end its stacks
        if self.progress and (failed or ended):
            self.progress.recovered(failed, ended)
        self.warm_start(study)
        budget = Budget(n_trials)
        try:
            with stop_signals_interrupt():
                study.optimize(self.objective, n_trials=budget.cap, catch=(TrialFailed,),
                               callbacks=[self._orphaned, budget])
        finally:
            _LINES.silenced.clear()   # trial numbers of this study only
        return study

    def _orphaned(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A worker whose ``tune --devices`` died (even by SIGKILL) stops after the trial it was
        running: that trial is stored as measured, and nothing runs on unsupervised."""
        if self.parent and owner_alive(self.parent) is False:
            study.stop()

