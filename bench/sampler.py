"""The study's sampler: CPU seconds a proposal costs, ours against optuna's own GPSampler.

  python bench/sampler.py [--trials 30] [--reps 2] [--study pa_batching]

Side by side in one run, alternating, on the shipped space: the tuner's sampler as shipped
(tuner/search/sampler.py: PrunedAware over CpuGPSampler, which leaves out optuna's per-fit
``with torch.device("cpu")``) and the same wrapper over optuna's GPSampler with the same seed.
Each study runs ``--trials`` trials of an analytic objective (a smooth bowl over the knobs' log
values, with an infeasible region, so the constraint model works too); what is timed is the
sampler only (``study.ask`` and the suggests), in this process's CPU seconds. The proposals of
the two must be the same trial for trial; the bench says whether they were.
Goal: the same proposals, at less CPU a proposal than optuna's own.
"""
from __future__ import annotations

import argparse
import math
import time

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, median, run_recorded, table

import optuna

from tuner.runtime import constraints
from tuner.search import sampler as ours
from tuner.space.compose import load_space


def objective(params: dict) -> tuple[float, bool]:
    """A bowl over log2 of every numeric knob (its floor at a middle point), infeasible where the two
    largest knobs' product passes 2^13 (num_blocks x block_size: a KV pool too large, say)."""
    logs = [math.log2(v) for v in params.values() if isinstance(v, (int, float)) and v > 0]
    value = 10 + sum((x - 4 - i % 3) ** 2 for i, x in enumerate(logs)) / 10
    top = sorted(logs)[-2:]
    return value, sum(top) > 13


def run(space, make_gp, trials: int) -> tuple[list[float], list[dict]]:
    """CPU seconds of each proposal, and the proposals."""
    gp = make_gp()
    study = optuna.create_study(directions=[o.direction for o in space.objectives][:1],
                                sampler=ours.PrunedAware(gp, space, space.seed))
    costs, proposals = [], []
    for _ in range(trials):
        t0 = time.process_time()
        trial = study.ask()
        params = space.suggest(trial)
        costs.append(time.process_time() - t0)
        proposals.append(params)
        value, failed = objective(params)
        if failed:       # as a study stores a configuration that failed, and one measured
            constraints.tell_failed(study, trial, space)
        else:
            constraints.tell_value(study, trial, space, value)
    return costs, proposals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--study", default="pa_batching")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(a.study, ROOT, ["backend=sim", "seed=7"])
    ours.one_torch_thread()
    settings = ours.gp_settings(space)
    startup = settings["n_startup_trials"]
    makers = {"optuna GPSampler": lambda: optuna.samplers.GPSampler(**settings),
              "ours (no device guard)": lambda: ours.CpuGPSampler(**settings)}
    run(space, makers["ours (no device guard)"], 3)        # torch's import and first fit, charged to neither
    costs: dict[str, list[float]] = {k: [] for k in makers}
    seen: dict[str, list[dict]] = {}
    for _ in range(a.reps):
        for name, make in makers.items():
            c, p = run(space, make, a.trials)
            costs[name] += c[startup:]
            seen[name] = p
    same = seen["optuna GPSampler"] == seen["ours (no device guard)"]
    infeasible = sum(objective(p)[1] for p in seen["ours (no device guard)"])
    base = median(costs["optuna GPSampler"])
    rows = [[name, f"{median(c) * 1000:.0f}", f"{sum(c) / a.reps:.1f}", f"{median(c) / base:.2f}"]
            for name, c in costs.items()]
    print(f"study {a.study}: {a.trials} trials a study, {a.reps} studies each, alternating; "
          f"CPU of the sampler per proposal after the {startup} random start(s); {infeasible} of the last "
          f"study's {a.trials} proposals fell in the infeasible region")
    table(["sampler", "median ms a proposal", "CPU s a study", "x optuna's"], rows)
    ratio = median(costs["ours (no device guard)"]) / base
    met = same and ratio < 1
    print(f"same proposals trial for trial: {'yes' if same else 'NO'}; ours / optuna's median CPU a proposal "
          f"{ratio:.2f} (goal: same proposals at less CPU: {'MET' if met else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("sampler", main))
