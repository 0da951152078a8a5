"""The search methods bench/tabular.py scores, each proposing configurations of the table's grid.

ours      the study as shipped with the README's pre-screen, through the product's own functions:
          the sim-guided warm start (tuner.screening.warm_start: a study of ``sim_trials`` on the
          simulator, its best ``warm_start`` configurations enqueued first), the study's sampler
          (tuner.search.sampler.make_sampler: GP, ordered choices) and the pre-screen gate
          (PreScreener.judge, seeded with the simulator study). The simulator is the real one
          (backend sim with the stack's shipped profile, bench/tabular_fidelity.py), never the table.
          A candidate the gate drops costs nothing. No probe and no early stop: the tables hold full
          replays only. On a table without a simulator (vLLM) ours is the study's sampler alone.
gp        the study's sampler alone; tpe, random, cmaes: optuna's samplers over the same space;
pso       a particle swarm over the grid's indices (Huawei optix tunes with one): positions are
          real numbers per parameter, a particle is measured at its rounded position;
sweep     `vllm bench sweep serve`: every configuration in the order its serve-params list gives
          (the grid's Cartesian product, the first parameter outermost), no search;
auto_tune vLLM's auto_tune.sh: a few values per parameter in nested loops (bench/search.py's coarse
          grid of at most 30 points), then nothing more to try.
Every proposal is a trial (a repeated configuration is measured again, as a study would).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import optuna

from _common import ROOT

from tuner.runtime import constraints
from tuner.screening import warm_start
from tuner.screening.prescreen import PreScreener, measured_pairs
from tuner.space.compose import load_space
from tuner.space.rigour import PrescreenSpec
from tuner.space.spec import Objective, StudySpace
from tuner.search.sampler import make_sampler

from tabular import GroundTruth, Replay

warnings.filterwarnings("ignore", message="Constraints have been set, but CmaEsSampler")   # it ignores them, known
PRESCREEN = PrescreenSpec(top_fraction=0.3, warmup=5)   # the README's pre-screen, warm start at its default
METHODS = ("ours", "gp", "tpe", "random", "cmaes", "pso", "sweep", "auto_tune")


def grid_space(gt: GroundTruth, seed: int | None = None, extra: list[str] = ()) -> StudySpace:
    """The table's study with its parameters narrowed to the table's grid (numbers as ordered choices);
    ``extra``: more overrides (the simulator's)."""
    space = load_space(gt.meta["study"], ROOT, [*gt.meta.get("overrides", []), *extra])
    tree: dict[str, Any] = {}
    for key, levels in gt.meta["grid"].items():
        *path, leaf = key.split(".")
        node = tree
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = {"type": "categorical", "choices": sorted(levels)}
    return space.model_copy(update={"params": tree, "seed": seed,
                                    "objectives": [Objective(name="total_time", direction="minimize")]})


def _tell(study: optuna.Study, trial: optuna.Trial, space: StudySpace, v: float) -> None:
    """As the study tells a trial: a failed configuration is FAIL with its ``failed`` constraint broken."""
    if math.isinf(v):
        constraints.tell_failed(study, trial, space)
        return
    constraints.tell_value(study, trial, space, v)


def sampler_method(make: Callable[[StudySpace, int], optuna.samplers.BaseSampler]):
    def run(gt: GroundTruth, rep: Replay, seed: int, horizon: int) -> None:
        space = grid_space(gt, seed)
        study = optuna.create_study(sampler=make(space, seed), direction="minimize")
        while not rep.done(horizon):
            trial = study.ask()
            _tell(study, trial, space, rep(space.suggest(trial)))
    return run


def ours_method(sims: list[float] | None, spec: PrescreenSpec = PRESCREEN):
    """``sims``: the simulator's total_time per configuration of the table (NaN: the simulated trial failed)."""
    if sims is None:
        return sampler_method(lambda space, seed: make_sampler(space))

    def run(gt: GroundTruth, rep: Replay, seed: int, horizon: int) -> None:
        space = grid_space(gt, seed).model_copy(update={"prescreen": spec})
        sim = lambda params: sims[gt.index(params)]   # noqa: E731  (what the simulator says, cached)
        study = optuna.create_study(sampler=make_sampler(space), direction="minimize")
        screener = PreScreener(space, ROOT, [], spec)
        if spec.warm_start:
            warm = warm_start.sim_study(space, sim, spec.sim_trials, spec.warm_start)
            warm_start.enqueue(study, space, warm)
            screener.seed(warm.simulated)
        asks = 0
        while not rep.done(horizon) and asks < 50 * horizon:   # a gate that drops everything ends too
            asks += 1
            trial = study.ask()
            params = space.suggest(trial)
            screener.pairs = measured_pairs(study)        # as the study's gate reads its complete trials
            screened = screener.judge(params, sim(params))
            for k, v in screened.attrs(["total_time"]).items():
                trial.set_user_attr(k, v)
            if not screened.promising:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)   # nothing launched
                continue
            v = rep(params)
            if not math.isinf(v):
                trial.set_user_attr("total_time", v)
            _tell(study, trial, space, v)
    return run


def pso(gt: GroundTruth, rep: Replay, seed: int, horizon: int, particles: int = 6,
        inertia: float = 0.7, c_self: float = 1.5, c_swarm: float = 1.5) -> None:
    """A plain global-best particle swarm over the grid's indices (failed = worst)."""
    levels = [sorted(v) for v in gt.meta["grid"].values()]
    keys = list(gt.meta["grid"])
    hi = np.array([len(v) - 1 for v in levels], dtype=float)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, hi + 1e-9, size=(particles, len(hi)))
    vel = rng.uniform(-hi, hi, size=x.shape) * 0.25
    best_x, best_v = x.copy(), np.full(particles, math.inf)
    g_x, g_v = x[0].copy(), math.inf
    while True:
        for p in range(particles):
            if rep.done(horizon):
                return
            idx = np.clip(np.rint(x[p]), 0, hi).astype(int)
            v = rep({k: levels[j][i] for j, (k, i) in enumerate(zip(keys, idx))})
            if v < best_v[p]:
                best_v[p], best_x[p] = v, x[p].copy()
            if v < g_v:
                g_v, g_x = v, x[p].copy()
        r1, r2 = rng.random(x.shape), rng.random(x.shape)
        vel = inertia * vel + c_self * r1 * (best_x - x) + c_swarm * r2 * (g_x - x)
        x = np.clip(x + vel, 0, hi)


def walk(order: Callable[[GroundTruth], list[dict]]):
    def run(gt: GroundTruth, rep: Replay, seed: int, horizon: int) -> None:
        for params in order(gt):
            if rep.done(horizon):
                return
            rep(params)
    return run


def sweep_order(gt: GroundTruth) -> list[dict]:
    import itertools
    grid = {k: sorted(v) for k, v in gt.meta["grid"].items()}
    return [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]


def auto_tune_order(gt: GroundTruth, budget: int = 30) -> list[dict]:
    from search import coarse_grid
    return coarse_grid(grid_space(gt), budget)


def make_methods(gt: GroundTruth, sims: list[float] | None, names=METHODS) -> dict[str, Callable]:
    all_methods = {
        "ours": ours_method(sims),
        "gp": sampler_method(lambda space, seed: make_sampler(space)),
        "tpe": sampler_method(lambda space, seed: optuna.samplers.TPESampler(seed=seed)),
        "random": sampler_method(lambda space, seed: optuna.samplers.RandomSampler(seed=seed)),
        "cmaes": sampler_method(lambda space, seed: optuna.samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False)),
        "pso": pso,
        "sweep": walk(sweep_order),
        "auto_tune": walk(auto_tune_order),
    }
    return {n: all_methods[n] for n in names}
