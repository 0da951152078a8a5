"""Hours-to-tuned on the 910B model: machine time until a study holds a configuration within 2 % of the optimum.

Imported by bench/search.py (``--hours``). Every launch of the real stack is charged what it
would cost on the Ascend host: STARTUP (300 s, llm-serving's start) plus the replay's simulated
duration (the configuration's total_time on the 910B profile). The truth is the simulator; the
setups differ in what they launch and for how long:
  ours      GP sampler + pre-screen + probe + early stop, as `tune` runs with
            prescreen {top_fraction 0.3, warmup 5, probe_fraction 0.2, promote_within 0.1} and
            early_stop {margin 0.5}: a candidate the pre-screen simulator ranks outside the best 30 %
            costs nothing; a probe costs a launch plus its share of the replay; a promoted probe
            costs a second launch and the full replay, cut at the early-stop limit;
  gp        the GP sampler alone, every trial a launch and a full replay;
  random    optuna's RandomSampler, every trial a launch and a full replay;
  grid      vLLM auto_tune style: the coarse grid in nested-loop order, each a launch and a full replay.
The pre-screen's simulator is not the truth here (that would be an oracle): its value is the truth
times a fixed per-configuration error, lognormal with SIM_ERROR (5 %, the simulator's fidelity goal);
the probe's correction carries its own PROBE_ERROR (3 %). A probe's replay is charged its share
of the full replay's time. Configurations the simulator cannot run are rejected before launch
(the pre-launch checks), so they cost nothing.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

import numpy as np
import optuna

from _common import median

STARTUP = 300.0
SIM_ERROR, PROBE_ERROR = 0.05, 0.03
TOP_FRACTION, WARMUP, PROBE_FRACTION, PROMOTE_WITHIN = 0.3, 5, 0.2, 0.1
MARGIN, GRACE = 0.5, 1.0
Params = dict[str, Any]


def _error(params: Params, salt: str, sigma: float) -> float:
    """A fixed lognormal factor per configuration (the same every time it is asked)."""
    h = hashlib.sha256((salt + repr(sorted(params.items()))).encode()).digest()
    z = np.random.default_rng(int.from_bytes(h[:8], "little")).standard_normal()
    return float(math.exp(sigma * z))


class Ledger:
    """Machine seconds spent, and when the best full measurement first came within ``tol`` of the optimum."""

    def __init__(self, target: float):
        self.target, self.spent, self.best, self.reached = target, 0.0, math.inf, math.inf

    def launch(self, replay_s: float) -> None:
        self.spent += STARTUP + replay_s

    def measured(self, value: float) -> None:
        self.best = min(self.best, value)
        if self.best <= self.target and math.isinf(self.reached):
            self.reached = self.spent


def plain(sampler: optuna.samplers.BaseSampler, space, f: Callable[[Params], float], n: int, target: float) -> float:
    """Every trial launched and replayed in full; seconds until within target (inf: not within n)."""
    study = optuna.create_study(sampler=sampler, direction="minimize")
    led = Ledger(target)
    for _ in range(n):
        trial = study.ask()
        v = f(space.suggest(trial))
        if math.isinf(v):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)   # rejected before launch: free
            continue
        led.launch(v)
        led.measured(v)
        study.tell(trial, v)
        if not math.isinf(led.reached):
            break
    return led.reached


def grid(points: list[Params], f: Callable[[Params], float], target: float) -> float:
    led = Ledger(target)
    for p in points:
        v = f(p)
        if not math.isinf(v):
            led.launch(v)
            led.measured(v)
    return led.reached


def ours(sampler: optuna.samplers.BaseSampler, space, f: Callable[[Params], float], n: int, target: float) -> float:
    study = optuna.create_study(sampler=sampler, direction="minimize")
    led = Ledger(target)
    seen: list[float] = []
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial)
        truth = f(params)
        if math.isinf(truth):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        sim = truth * _error(params, "sim", SIM_ERROR)
        seen.append(sim)
        if len(seen) > WARMUP:
            ranked = sorted(seen)
            if sim > ranked[max(1, math.ceil(TOP_FRACTION * len(ranked))) - 1]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)   # pre-screened out: nothing launched
                continue
        led.launch(PROBE_FRACTION * truth)                             # the probe
        predicted = truth * _error(params, "probe", PROBE_ERROR)       # sim's full value x (real / sim probe)
        if not math.isinf(led.best) and predicted > led.best * (1 + PROMOTE_WITHIN):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        limit = led.best * (1 + MARGIN) + GRACE if not math.isinf(led.best) else math.inf
        led.launch(min(truth, limit))                                  # the full replay, early-stopped at limit
        if truth > limit:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        led.measured(truth)
        study.tell(trial, truth)
        if not math.isinf(led.reached):
            break
    return led.reached


def hours_to_tuned(space, f: Callable[[Params], float], optimum: float, coarse: list[Params],
                   make_ours: Callable[[int], optuna.samplers.BaseSampler], seeds: int, horizon: int,
                   tol: float = 0.02) -> dict[str, dict]:
    target = optimum * (1 + tol)
    runs: dict[str, list[float]] = {"ours (gp + pre-screen + probe + early stop)": [], "gp alone": [],
                                    "random": [], "coarse grid (auto_tune style)": []}
    for seed in range(seeds):
        runs["ours (gp + pre-screen + probe + early stop)"].append(ours(make_ours(seed), space, f, horizon, target))
        runs["gp alone"].append(plain(make_ours(seed), space, f, horizon, target))
        runs["random"].append(plain(optuna.samplers.RandomSampler(seed=seed), space, f, horizon, target))
        runs["coarse grid (auto_tune style)"].append(grid(coarse, f, target))
    return {k: {"median_h": median(v) / 3600, "never": sum(math.isinf(x) for x in v), "all_h": [x / 3600 for x in v]}
            for k, v in runs.items()}


def report_hours(res: dict[str, dict], optimum: float, seeds: int, horizon: int, reduced: str) -> None:
    from _common import table
    full = STARTUP + optimum
    print(f"\nhours to a configuration within 2 % of the optimum on the 910B host ({seeds} seeds, up to {horizon} "
          f"trials; start-up {STARTUP:.0f} s; the optimum's own trial costs {full / 60:.1f} min){reduced}")
    rows = [[k, "never" if math.isinf(m["median_h"]) else f"{m['median_h']:.2f}", m["never"],
             " ".join("-" if math.isinf(h) else f"{h:.1f}" for h in m["all_h"])] for k, m in res.items()]
    table(["setup", "median machine-hours", "seeds never", "per seed"], rows)
    o = res["ours (gp + pre-screen + probe + early stop)"]["median_h"]
    # scaled to a 15-minute trial (start-up plus a 10-minute replay), the yardstick
    scale = 900.0 / full
    print(f"ours: {o:.2f} h here; scaled to 15-minute trials: {o * scale:.2f} h -> goal < 1 h: "
          f"{'MET' if o * scale < 1 else 'MISSED'}")
