"""Hours-to-tuned on the 910B model: machine time until a study holds a configuration within 2 % of the optimum.

Imported by bench/search.py (``--hours``). Every launch of the real stack is charged what it
would cost on the Ascend host: STARTUP (300 s, llm-serving's start) plus the replay's simulated
duration (the configuration's total_time on the 910B profile, the truth here). The setups differ
in what they launch and for how long:
  ours      the default study setup, run through the product's own functions: the sim-guided warm
            start (tuner.screening.warm_start: a simulator study of ``sim_trials``, its best
            ``warm_start`` distinct configurations enqueued as the first real trials), the study's
            sampler (tuner.search.sampler.make_sampler: GP that learns from pruned trials), the
            pre-screen gate seeded with the simulator study (PreScreener.judge), the probe rules
            (needs_probe, promotes) and early stop (EarlyStop.for_trial). A candidate the gate drops
            costs nothing; a probe costs a launch plus its share of the replay; a promoted probe a
            second launch and the full replay; a trial without a probe is early-stopped at the limit;
  ours without warm start   the same with ``warm_start: 0`` (the previous default);
  gp        the study's sampler alone, every trial a launch and a full replay;
  random    optuna's RandomSampler, every trial a launch and a full replay;
  grid      vLLM auto_tune style: the coarse grid in nested-loop order, each a launch and a full replay.
The pre-screen's simulator is never the truth (that would be an oracle): its value is the truth
times the error the real simulator shows against a ground-truth table (bench/groundtruth.py,
bench/tabular_fidelity.py): a simulator's error is systematic, a mis-modelled regime moves together,
so each decode-batch level gets the table's bias there (median sim / real) and, per configuration,
a fixed lognormal error with the table's spread about that bias in the regime. The llm-serving table
(the 910B profile's emulated device time) is preferred, else the embedded one; with neither the old
basis stands (an independent 5 %, SIM_ERROR) and the report says so. The probe's sim-corrected prediction carries its own PROBE_ERROR (3 %). Configurations that cannot
run are rejected before launch (the pre-launch checks), so they cost nothing; the study records
them as it records a failed configuration (FAIL, ``failed`` constraint broken: tuner.runtime.constraints.tell_failed).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from _common import ROOT, median

from tuner.runtime import constraints
from tuner.runtime.early_stop import EarlyStop
from tuner.screening import warm_start
from tuner.screening.prescreen import PreScreener, needs_probe, promotes
from tuner.space.rigour import EarlyStopSpec, PrescreenSpec
from tuner.search.sampler import make_sampler
from tuner.search.selection import best_value

STARTUP = 300.0
SIM_ERROR, PROBE_ERROR = 0.05, 0.03
# the default study setup: the README's pre-screen (warm start and sim_trials at their defaults)
DEFAULT_PRESCREEN = PrescreenSpec(top_fraction=0.3, warmup=5, probe_fraction=0.2, promote_within=0.1)
MARGIN = 0.5
OURS, OURS_COLD = "ours (warm start + gp + pre-screen + probe + early stop)", "ours without warm start"
Params = dict[str, Any]


def _error(params: Params, salt: str, sigma: float) -> float:
    """A fixed lognormal factor per configuration (the same every time it is asked)."""
    h = hashlib.sha256((salt + repr(sorted(params.items()))).encode()).digest()
    z = np.random.default_rng(int.from_bytes(h[:8], "little")).standard_normal()
    return float(math.exp(sigma * z))


TABLES = ("llm_serving_pa_batching", "embedded_pa_batching")   # whose simulator error the model takes, in order


def error_structure(data=ROOT / "bench" / "data") -> dict | None:
    """The simulator's measured error per regime on the first ground-truth table there is (None: no table).
    Read only: the simulator's values come from the table's cache (bench/tabular.py writes it)."""
    from tabular import load_table
    from tabular_fidelity import fidelity, sim_values
    for name in TABLES:
        path = data / f"{name}.csv"
        if path.exists() and path.with_suffix(".sim.json").exists():
            gt = load_table(path).measured_only()
            sims = sim_values(gt, ROOT, data, compute=False)
            keep = [i for i, v in enumerate(sims) if not math.isnan(v)]
            gt = gt.subset(keep)
            sims = [sims[i] for i in keep]
            if len(keep) < 2:
                continue
            fid = fidelity(gt, sims)
            regs = fid["regimes"]
            # a regime of one or two configurations shows no spread: it takes the pooled one
            pooled = math.sqrt(sum(r["spread"] ** 2 * r["n"] for r in regs.values()) / sum(r["n"] for r in regs.values()))
            regs = {lv: r | {"spread": pooled} if r["n"] < 3 else r for lv, r in regs.items()}
            return {"table": name, "key": fid["regime"], "regimes": regs, "tau": fid["tau"],
                    "configs": len(gt.configs), "calibrated": path.with_suffix(".profile.yaml").exists()}
    return None


def _regime(structure: dict, params: Params) -> dict:
    """The regime of ``params``: its level of the structure's key, else the nearest level (log scale)."""
    levels = structure["regimes"]
    v = params.get(structure["key"])
    if v is None:
        return {"bias": 1.0, "spread": SIM_ERROR}
    near = min(levels, key=lambda lv: abs(math.log(float(lv)) - math.log(float(v))))
    return levels[near]


def simulator(f: Callable[[Params], float], structure: dict | None = None) -> Callable[[Params], float]:
    """The pre-screen's simulator: the truth times the measured regime bias and a fixed per-configuration
    error with the regime's spread (``structure``, error_structure()); without one an independent 5 %."""
    def sim(params: Params) -> float:
        v = f(params)
        if math.isinf(v):
            return math.nan
        if structure is None:
            return v * _error(params, "sim", SIM_ERROR)
        r = _regime(structure, params)
        return v * r["bias"] * _error(params, "sim", r["spread"])
    return sim


def basis(structure: dict | None) -> str:
    if structure is None:
        return "simulator error: an independent 5 % per configuration (no ground-truth table in bench/data)"
    regs = ", ".join(f"{lv}: x{r['bias']:.2f} +-{r['spread']:.0%}" for lv, r in structure["regimes"].items())
    calibrated = (", its profile calibrated by `tune calibrate` on the host that measured it: ours is charged "
                  f"`tune calibrate --points {CALIBRATION[0]} --requests {CALIBRATION[1]}` too"
                  if structure.get("calibrated") else "")
    return (f"simulator error as measured on bench/data/{structure['table']} ({structure['configs']} configurations, "
            f"tau {structure['tau']:.2f}{calibrated}), per {structure['key']} level: {regs}")


CALIBRATION = (3, 32)   # `tune calibrate --points 3 --requests 32`: on the llm-serving table here the same
                        # fit from 3 x 8 requests ranked as the full 5 x 2 passes did (tau 0.855)


def calibration(space) -> tuple[float, int]:
    """Machine seconds and launches of `tune calibrate --points 3 --requests 32` on the 910B: each
    configuration of the space's diagonal launched and replaying the plan's first 32 requests (the
    replay's time simulated on the 910B profile, the truth here; one that cannot run costs its start-up)."""
    import tempfile
    from tuner.runtime.context import TrialContext
    from tuner.runtime.trial import run_trial
    from tuner.study.run import StudyRun
    from tuner.tools.calibrate_replays import diagonal
    points, requests = CALIBRATION
    plan = StudyRun(space, ROOT, "").plan()[:requests]
    spent = 0.0
    configs = diagonal(space, points)
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        for i, params in enumerate(configs):
            o = run_trial(TrialContext(space, ROOT, Path(tmp) / str(i), plan), params)
            spent += STARTUP + (o.metrics.get("total_time", 0.0) if o.ok else 0.0)
    return spent, len(configs)


class Ledger:
    """Machine seconds spent, and when the best full measurement first came within ``tol`` of the optimum."""

    def __init__(self, target: float):
        self.target, self.spent, self.best, self.reached, self.launches = target, 0.0, math.inf, math.inf, 0

    def launch(self, replay_s: float) -> None:
        self.spent += STARTUP + replay_s
        self.launches += 1

    def measured(self, value: float) -> None:
        self.best = min(self.best, value)
        if self.best <= self.target and math.isinf(self.reached):
            self.reached = self.spent


def _tell_rejected(study: optuna.Study, trial: optuna.Trial, space) -> None:
    """Rejected before launch: stored as the study stores a failed configuration."""
    constraints.tell_failed(study, trial, space)


def _tell_measured(study: optuna.Study, trial: optuna.Trial, space, value: float) -> None:
    trial.set_user_attr(space.objectives[0].name, value)   # what EarlyStop.best_known reads
    constraints.apply(trial, constraints.constraint_values(space, {}, failed=False))
    study.tell(trial, value)


def plain(sampler: optuna.samplers.BaseSampler, space, f: Callable[[Params], float], n: int, target: float) -> Ledger:
    """Every trial launched and replayed in full."""
    study = optuna.create_study(sampler=sampler, direction="minimize")
    led = Ledger(target)
    for _ in range(n):
        trial = study.ask()
        v = f(space.suggest(trial))
        if math.isinf(v):
            _tell_rejected(study, trial, space)
            continue
        led.launch(v)
        led.measured(v)
        _tell_measured(study, trial, space, v)
        if not math.isinf(led.reached):
            break
    return led


def grid(points: list[Params], f: Callable[[Params], float], target: float) -> Ledger:
    led = Ledger(target)
    for p in points:
        v = f(p)
        if not math.isinf(v):
            led.launch(v)
            led.measured(v)
            if not math.isinf(led.reached):
                break
    return led


def ours(space, f: Callable[[Params], float], n: int, target: float, spec: PrescreenSpec = DEFAULT_PRESCREEN,
         structure: dict | None = None) -> Ledger:
    """The default study setup through the product's functions; ``space`` carries the seed. A simulator
    calibrated on the host starts the ledger with the calibration's launches."""
    space = space.model_copy(update={"prescreen": spec, "early_stop": EarlyStopSpec(margin=MARGIN),
                                     "objectives": space.objectives[:1]})   # the bench's one objective
    name = space.objectives[0].name
    sim = simulator(f, structure)
    study = optuna.create_study(sampler=make_sampler(space), direction="minimize")
    screener = PreScreener(space, ROOT, [], spec)
    if spec.warm_start:
        warm = warm_start.sim_study(space, sim, spec.sim_trials, spec.warm_start)   # free: the simulator
        warm_start.enqueue(study, space, warm)
        screener.seed(warm.simulated)
    led = Ledger(target)
    if structure and "calibration" in structure:   # hours_to_tuned's: what the calibration cost
        led.spent, led.launches = structure["calibration"]
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial)
        screened = screener.judge(params, sim(params))
        for k, v in screened.attrs([name]).items():
            trial.set_user_attr(k, v)
        if not screened.promising:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)      # nothing launched
            continue
        truth = f(params)
        if math.isinf(truth):
            _tell_rejected(study, trial, space)
            continue
        best = best_value(study)
        if spec.probe_fraction and needs_probe(best):
            led.launch(spec.probe_fraction * truth)                      # the probe's launch and share
            predicted = truth * _error(params, "probe", PROBE_ERROR)    # real probe / sim probe x sim full
            trial.set_user_attr(f"predicted_{name}", predicted)
            if not promotes(predicted, best, spec.promote_within, 1.0):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            led.launch(truth)                                            # promoted: a fresh launch, full plan
        else:
            stop = EarlyStop.for_trial(study, space)
            if stop is not None and truth > stop.limit:
                led.launch(stop.limit)                                   # cut at the limit
                trial.set_user_attr("pruned_limit_s", stop.limit)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            led.launch(truth)
        led.measured(truth)
        _tell_measured(study, trial, space, truth)
        if not math.isinf(led.reached):
            break
    return led


def hours_to_tuned(space, f: Callable[[Params], float], optimum: float, coarse: list[Params],
                   seeds: int, horizon: int, tol: float = 0.02, spec: PrescreenSpec = DEFAULT_PRESCREEN,
                   structure: dict | None | str = "measured") -> dict[str, dict]:
    """``structure``: the simulator's error ("measured": from bench/data's tables, None: independent 5 %)."""
    if structure == "measured":
        structure = error_structure()
    if structure and structure.get("calibrated"):
        structure["calibration"] = calibration(space)
        print(f"  hours: the calibration costs {structure['calibration'][0] / 3600:.2f} h "
              f"({structure['calibration'][1]} launches)", flush=True)
    print(f"  hours: {basis(structure)}", flush=True)
    target = optimum * (1 + tol)
    cold = spec.model_copy(update={"warm_start": 0})
    runs: dict[str, list[Ledger]] = {OURS: [], OURS_COLD: [], "gp alone": [], "random": [],
                                     "coarse grid (auto_tune style)": []}
    for seed in range(seeds):
        seeded = space.model_copy(update={"seed": seed})
        runs[OURS].append(ours(seeded, f, horizon, target, spec, structure))
        runs[OURS_COLD].append(ours(seeded, f, horizon, target, cold, structure))
        runs["gp alone"].append(plain(make_sampler(seeded), seeded, f, horizon, target))
        runs["random"].append(plain(optuna.samplers.RandomSampler(seed=seed), space, f, horizon, target))
        runs["coarse grid (auto_tune style)"].append(grid(coarse, f, target))
        print(f"  hours: seed {seed + 1}/{seeds} done; ours reached 2 % at {runs[OURS][-1].reached / 3600:.2f} h",
              flush=True)
    return {k: {"median_h": median([x.reached for x in v]) / 3600, "never": sum(math.isinf(x.reached) for x in v),
                "all_h": [x.reached / 3600 for x in v], "launches": median([x.launches for x in v])}
            for k, v in runs.items()}


def trial_cost(values: list[float]) -> tuple[float, float]:
    """Median and optimum's cost of one full trial (start-up + replay), seconds, over feasible configurations."""
    ok = [v for v in values if not math.isinf(v)]
    return STARTUP + median(ok), STARTUP + min(ok)


def report_hours(res: dict[str, dict], optimum: float, seeds: int, horizon: int, reduced: str,
                 grid_values: list[float] | None = None) -> None:
    from _common import table
    full = STARTUP + optimum
    print(f"\nhours to a configuration within 2 % of the optimum on the 910B host ({seeds} seeds, up to {horizon} "
          f"trials; start-up {STARTUP:.0f} s){reduced}")
    if grid_values:
        med, best = trial_cost(grid_values)
        print(f"a trial here costs {STARTUP:.0f} s start-up + its replay: {med / 60:.1f} min at the median of the "
              f"exhaustive grid's feasible configurations, {best / 60:.1f} min at the optimum")
    rows = [[k, "never" if math.isinf(m["median_h"]) else f"{m['median_h']:.2f}", m["never"], f"{m['launches']:g}",
             " ".join("-" if math.isinf(h) else f"{h:.2f}" for h in m["all_h"])] for k, m in res.items()]
    table(["setup", "median machine-hours", "seeds never", "launches (median)", "per seed"], rows)
    o = res[OURS]["median_h"]
    # scaled to a 15-minute trial (the yardstick): the optimum's own trial costs `full` here
    scale = 900.0 / full
    print(f"ours: {o:.2f} h here; scaled to 15-minute trials (x {scale:.2f}): {o * scale:.2f} h -> goal < 1 h: "
          f"{'MET' if o * scale < 1 else 'MISSED'}")
