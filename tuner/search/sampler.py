"""The study's sampler, and what its Gaussian process learns from trials it never saw finish.

Optuna's GPSampler fits only COMPLETE trials. A trial the pre-screen, a probe or early stop
ended is PRUNED, so the model learns nothing from it and proposes the same configuration
again, and again (a study once spent 40 trials on one). ``PrunedAware`` wraps the GP:
  - it hands the GP an in-memory copy of the study in which a pruned trial counts as complete
    with the best estimate its user attrs hold: the early-stop limit the replay passed (a lower
    bound of its exec time), the probe's sim-corrected prediction, or the simulator's value
    scaled by how far real trials were from it; a configuration the simulator saw fail is
    infeasible there, as a failed real trial is. The stored study keeps its PRUNED trials;
  - it never proposes a configuration already measured, pruned or running: a repeat is moved
    to the nearest untried configuration (fewest one-parameter steps away).
"""
from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.trial_record import metric, record
from tuner.runtime import constraints
from tuner.runtime.optuna_private import CpuGPSampler
from tuner.space.spec import StudySpace

TRIED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
MAX_VISITED = 20000   # configurations looked at for an untried one near a repeat
LOG_STEPS = 16   # a log-scaled int or float moves by 1/16 of its log range (num_blocks 32..1024: x1.24)


def make_sampler(space: StudySpace) -> optuna.samplers.BaseSampler:
    s = space
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    if s.sampler == "tpe":
        startup = 5 if s.startup_trials is None else s.startup_trials
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, n_startup_trials=startup)
    # Gaussian-process BO: each trial costs minutes, so a model that extrapolates a trend
    # ("bigger decode batch, faster") from a handful of points beats TPE's density estimates
    # (bench/search.py)
    # optuna's mixed-space local search divides by a zero sum once the study has converged and
    # falls back on its own; the numpy warning it leaves says nothing to a user
    warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning,
                            r"optuna\._gp\.optim_mixed")
    return PrunedAware(CpuGPSampler(**gp_settings(space)), space, s.seed)


def gp_settings(space: StudySpace) -> dict[str, Any]:
    """The study's GP settings (bench/sampler.py gives optuna's own GPSampler the same ones)."""
    # one random start: the GP's own uncertainty spreads the next picks; warn_independent_sampling
    # off: a repeat whose neighbours were all tried is drawn at random on purpose
    startup = 1 if space.startup_trials is None else space.startup_trials
    return dict(seed=space.seed, n_startup_trials=startup, warn_independent_sampling=False)


def _first_estimate(t: FrozenTrial, space: StudySpace, sim_scale: float) -> float | None:
    """The pruned trial's first objective, best estimate first; None when it holds none."""
    name = space.objectives[0].name
    rec = record(t)
    if space.early_stop.metric == name and rec.pruned_limit_s is not None:
        return float(rec.pruned_limit_s)      # the replay passed this: at least this slow
    for v, scale in ((metric(t, f"predicted_{name}"), 1.0), (rec.prescreen_value, sim_scale)):
        if isinstance(v, (int, float)) and not math.isnan(v):
            return float(v) * scale
    return None


def worst_values(trials: Sequence[FrozenTrial], space: StudySpace,
                 directions: Sequence[optuna.study.StudyDirection]) -> list[float]:
    """What a failed configuration stands in with for the model: per objective the worst value a measured
    trial reached (the study's placeholder before any), with its ``failed`` constraint set. Not the replay
    deadline: a 300 s spike among 10 s trials would stretch the GP's scale and squeeze what it learned."""
    measured = [t.values for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not measured:
        return constraints.placeholder_values(space)[:len(directions)]
    return [max(v[i] for v in measured) if d == optuna.study.StudyDirection.MINIMIZE else min(v[i] for v in measured)
            for i, d in enumerate(directions)]


def stand_in(t: FrozenTrial, space: StudySpace, sim_scale: float = 1.0,
             worst: list[float] | None = None) -> tuple[list[float], bool] | None:
    """(values, failed) a pruned trial stands in with for the model, or None when it says nothing."""
    rec = record(t)
    if rec.prescreen_promising is False and rec.prescreen_value is None:
        return worst or constraints.placeholder_values(space), True   # the simulator saw it fail
    first = _first_estimate(t, space, sim_scale)
    if first is None:
        return None
    values = [first]
    sims = rec.prescreen_objectives or []
    for i, o in enumerate(space.objectives[1:], 1):
        v = metric(t, o.name)                                         # the probe's or partial replay's
        if not isinstance(v, (int, float)) or math.isnan(v):
            v = sims[i] if i < len(sims) else None                    # else the simulator's
        if v is None or math.isnan(v):
            return None
        values.append(float(v))
    return values, False


def sim_scale(trials: Sequence[FrozenTrial]) -> float:
    """Median real/simulated first objective over complete trials that have both (1 when none)."""
    recs = [(t, record(t)) for t in trials]
    ratios = [t.values[0] / r.prescreen_value for t, r in recs
              if t.state == TrialState.COMPLETE and t.values and r.prescreen_value and r.feasible is not False]
    return statistics.median(ratios) if ratios else 1.0


class PrunedAware(optuna.samplers.BaseSampler):
    """A model-based sampler that learns from pruned trials and never repeats a configuration."""

    def __init__(self, base: optuna.samplers.BaseSampler, space: StudySpace, seed: int | None = None):
        self.base, self.space = base, space
        self._rng = np.random.default_rng(seed)
        self._shadow: optuna.Study | None = None
        self._copied: set[int] = set()
        self._worst: list[float] | None = None

    # optuna.samplers.BaseSampler
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        space = optuna.search_space.intersection_search_space(done, include_pruned=True) if done else {}
        return {k: d for k, d in space.items() if not d.single()}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if not search_space:
            return {}
        shadow = self._sync(study)
        one_torch_thread()
        t = shadow.ask(fixed_distributions=search_space)
        params = dict(t.params)
        shadow.tell(t, state=TrialState.FAIL)       # the shadow's own ask, never a measurement
        tried = {self._key(p.params, search_space) for p in study.get_trials(deepcopy=False)
                 if p.number != trial.number and (p.state in TRIED or constraints.failed_for_config(p))}
        if self._key(params, search_space) in tried:
            return self._neighbour(params, search_space, tried)
        return params

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng = np.random.default_rng()

    # the model's view of the study
    def _sync(self, study: optuna.Study) -> optuna.Study:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        worst = worst_values(done, self.space, study.directions)
        # failures stand in with the worst measured values: when those move, the model's view is rebuilt
        if self._shadow is None or self._shadow.directions != study.directions or worst != self._worst:
            self._shadow = optuna.create_study(directions=study.directions, sampler=self.base)
            self._copied, self._worst = set(), worst
        scale = sim_scale(done)
        keys = [constraints.FAILED] + [constraints.slo_key(c) for c in self.space.constraints]
        for t in done:
            if t.number in self._copied:
                continue
            if t.state == TrialState.COMPLETE:
                values = list(t.values)
                cons = {k: float(t.constraints.get(k, 0.0)) for k in keys}
            elif t.state == TrialState.FAIL:
                self._copied.add(t.number)
                if not constraints.failed_for_config(t):
                    continue                        # a host failure: nothing learnt of the configuration
                values, cons = list(worst), {k: 0.0 for k in keys} | {constraints.FAILED: 1.0}
            else:
                got = stand_in(t, self.space, scale, worst)
                if got is None:
                    self._copied.add(t.number)     # nothing to learn; the repeat check still covers it
                    continue
                values, failed = got
                cons = {k: 0.0 for k in keys} | {constraints.FAILED: 1.0 if failed else 0.0}
            self._shadow.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=values, params=t.params, distributions=t.distributions,
                constraints=cons))
            self._copied.add(t.number)
        return self._shadow

    # repeats
    @staticmethod
    def _key(params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> tuple:
        return tuple(params.get(k) for k in sorted(search_space))

    def _neighbour(self, params: dict[str, Any], search_space: dict[str, BaseDistribution], tried: set) -> dict:
        """An untried configuration nearest ``params`` (fewest one-parameter steps), picked at random among
        the nearest; {} when none is within reach (the independent sampler then draws afresh)."""
        frontier, visited = [params], {self._key(params, search_space)}
        while frontier and len(visited) < MAX_VISITED:
            ring = []
            for p in frontier:
                for name in sorted(search_space):
                    for v in _steps(search_space[name], p[name]):
                        moved = p | {name: v}
                        k = self._key(moved, search_space)
                        if k not in visited:
                            visited.add(k)
                            ring.append(moved)
            untried = [p for p in ring if self._key(p, search_space) not in tried]
            if untried:
                return untried[int(self._rng.integers(len(untried)))]
            frontier = ring
        return {}


def one_torch_thread() -> None:
    """Torch on one thread for the GP: its tensors are a few dozen rows, so more intra-op threads
    only add hand-off and spin-waiting (on 2 cores 2.3x the CPU of one thread, and slower, for the
    same proposals), on cores the stack under test needs. Set for the process, once: the GP is
    torch's one user in the tuner (switching back and forth around each fit costs a third again)."""
    import torch   # optuna's GP imports it for its first fit anyway
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _steps(d: BaseDistribution, v: Any) -> list[Any]:
    """Values one step from ``v`` within ``d``."""
    if isinstance(d, CategoricalDistribution):
        return [c for c in d.choices if c != v]
    if isinstance(d, IntDistribution):
        if d.log:
            f = (d.high / d.low) ** (1 / LOG_STEPS)
            out = {min(d.high, max(v + 1, round(v * f))), max(d.low, min(v - 1, round(v / f)))}
        else:
            out = {v + d.step, v - d.step}
        return sorted(x for x in out if d.low <= x <= d.high and x != v)
    if isinstance(d, FloatDistribution):
        if d.log:
            f = (d.high / d.low) ** (1 / LOG_STEPS)
            out = [v * f, v / f]
        else:
            step = d.step or (d.high - d.low) / LOG_STEPS
            out = [v + step, v - step]
        return [x for x in out if d.low <= x <= d.high]
    return []
