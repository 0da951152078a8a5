"""Tabular replay of search methods on a ground-truth table (bench/groundtruth.py): real noise, real costs.

  python bench/tabular.py bench/data/embedded_pa_batching.csv [--seeds 20] [--horizon 60] [--methods ...]

A trial of a configuration returns one of its measured replays, drawn at random (the noise is the
stack's own), and costs that launch's seconds plus its replay's (what it really took). A method
proposes configurations of the table's grid only. The study's pick after each trial is the
configuration with the best measured value so far (as a study picks); it counts as within 2 % when its
true value, the median of its repeats, is within 2 % of the optimum (the best median). Per method over
the seeds: the median trials and machine-hours until the pick is within 2 % (counted up to
``--horizon``; "never" seeds are reported), and the pick's regret (true / optimum - 1) at 10, 20, 30
trials. The methods are in bench/tabular_methods.py; the simulator's fidelity on the table in
bench/tabular_fidelity.py; how surely the table knows its own optimum in bench/tabular_noise.py.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, run_recorded, table

from tuner.runtime.constraints import is_infra_failure

INF = math.inf
TOL = 0.02
CHECKPOINTS = (10, 20, 30)
Params = dict[str, Any]


@dataclass
class GroundTruth:
    """One table: its grid's configurations, and per configuration every measured (value, cost)."""
    name: str
    meta: dict
    configs: list[Params]
    runs: list[list[tuple[float, float]]]     # per configuration: (total_time or inf when failed, seconds)
    launches: list[list[int]] | None = None   # per configuration: each run's launch (None: a launch each)

    @property
    def keys(self) -> list[str]:
        return list(self.meta["grid"])

    def truth(self, i: int) -> float:
        """The configuration's true value: the median of its repeats (inf when most failed or none)."""
        vals = [v for v, _ in self.runs[i]]
        return statistics.median(vals) if vals else INF

    @property
    def medians(self) -> list[float]:
        return [self.truth(i) for i in range(len(self.configs))]

    @property
    def optimum(self) -> tuple[int, float]:
        med = self.medians
        i = min(range(len(med)), key=lambda j: med[j])
        return i, med[i]

    def launch_ids(self, i: int) -> list[int]:
        """Which launch each of configuration i's runs came from (replays of one launch share it)."""
        return self.launches[i] if self.launches is not None else list(range(len(self.runs[i])))

    def index(self, params: Params) -> int:
        return self._index[json.dumps({k: params[k] for k in self.keys}, sort_keys=True)]

    def __post_init__(self):
        self._index = {json.dumps(c, sort_keys=True): i for i, c in enumerate(self.configs)}

    def subset(self, keep: list[int]) -> "GroundTruth":
        """Only the configurations ``keep`` names, each with its runs and their launches."""
        return replace(self, configs=[self.configs[i] for i in keep], runs=[self.runs[i] for i in keep],
                       launches=[self.launch_ids(i) for i in keep])

    def measured_only(self) -> "GroundTruth":
        """The configurations measured at least once (a table cut short leaves some out)."""
        return self.subset([i for i, r in enumerate(self.runs) if r])

    def shuffled(self, seed: int) -> "GroundTruth":
        """The objective column permuted over the configurations: nothing left to learn from the knobs."""
        perm = np.random.default_rng(seed).permutation(len(self.runs))
        return replace(self, name=self.name + " (shuffled)", runs=[self.runs[j] for j in perm],
                       launches=[self.launch_ids(j) for j in perm])


def load_table(path: Path, grid: dict[str, list] | None = None) -> GroundTruth:
    """A table from its CSV and the provenance JSON beside it; ``grid``: only these levels of the named
    parameters (a sub-grid; rows outside it are left out)."""
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["grid"] = {k: [x for x in v if x in grid[k]] if grid and k in grid else v for k, v in meta["grid"].items()}
    keys = list(meta["grid"])
    configs = [dict(zip(keys, vals)) for vals in _product([meta["grid"][k] for k in keys])]
    gt = GroundTruth(meta["table"], meta, configs, [[] for _ in configs], [[] for _ in configs])
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            params = {k: json.loads(row[k]) for k in keys}
            if any(params[k] not in meta["grid"][k] for k in keys) or is_infra_failure(row.get("fail_class")):
                continue   # outside the grid asked for, or a launch the host failed (no figure of the config)
            ok = row["ok"] == "1" and row["total_time"] not in ("", "nan")
            cost = float(row["launch_s"]) + float(row["replay_s"])
            i = gt.index(params)
            gt.runs[i].append((float(row["total_time"]) if ok else INF, cost))
            gt.launches[i].append(int(row.get("launch") or len(gt.launches[i])))
    return gt


def _product(lists: list[list]) -> list[tuple]:
    import itertools
    return list(itertools.product(*lists))


@dataclass
class Replay:
    """The table as a stack: ``trial(i)`` draws one of configuration i's measured replays."""
    gt: GroundTruth
    seed: int
    trials: list[tuple[int, float, float]] = field(default_factory=list)   # (config, measured value, cost)
    checkpoints: bool = True   # run on to the last regret checkpoint even once within 2 %

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def trial(self, i: int) -> float:
        runs = self.gt.runs[i]
        if not runs:
            raise ValueError(f"configuration {self.gt.configs[i]} was never measured")
        value, cost = runs[int(self.rng.integers(len(runs)))]
        self.trials.append((i, value, cost))
        return value

    def __call__(self, params: Params) -> float:
        return self.trial(self.gt.index(params))

    def done(self, horizon: int) -> bool:
        """Enough trials: the horizon, or the last checkpoint passed with the pick already within 2 %."""
        n = len(self.trials)
        enough = n >= max(CHECKPOINTS) or not self.checkpoints
        return n >= horizon or (enough and n > 0 and not math.isinf(score(self.gt, self.trials).trials_to))


@dataclass
class Outcome:
    trials_to: float          # 1-based trial at which the pick came within TOL; inf if never
    hours_to: float           # machine-hours spent by then; inf if never
    regret: dict[int, float]  # trial count -> the pick's true value / optimum - 1


def score(gt: GroundTruth, trials: list[tuple[int, float, float]], tol: float = TOL, horizon: int = 0) -> Outcome:
    """``horizon``: a method that ran out of configurations before it (a walk) keeps its pick to there."""
    _, opt = gt.optimum
    truths = gt.medians
    best_v, pick, spent = INF, None, 0.0
    trials_to = hours_to = INF
    regret: dict[int, float] = {}
    for n, (i, v, cost) in enumerate(trials, 1):
        spent += cost
        if v < best_v:
            best_v, pick = v, i
        true = truths[pick] if pick is not None else INF
        if math.isinf(trials_to) and true <= opt * (1 + tol):
            trials_to, hours_to = n, spent / 3600
        if n in CHECKPOINTS:
            regret[n] = true / opt - 1
    for k in CHECKPOINTS:
        if len(trials) < k <= horizon and pick is not None:
            regret[k] = truths[pick] / opt - 1
    return Outcome(trials_to, hours_to, regret)


Method = Callable[[GroundTruth, Replay, int, int], None]   # (table, replay, seed, horizon): runs its trials


def run_methods(gt: GroundTruth, methods: dict[str, Method], seeds: int, horizon: int,
                log: Callable[[str], None] = print, checkpoints: bool = True) -> dict[str, list[Outcome]]:
    """Every method on every seed; ``checkpoints=False`` ends a run once within 2 % (no regret figures)."""
    out: dict[str, list[Outcome]] = {}
    for name, method in methods.items():
        out[name] = []
        for seed in range(seeds):
            rep = Replay(gt, seed, checkpoints=checkpoints)
            method(gt, rep, seed, horizon)
            # a run cut by done() (within 2 % past the last checkpoint) is not one that ran out
            ran_out = not rep.done(horizon)
            out[name].append(score(gt, rep.trials[:horizon], horizon=horizon if ran_out else 0))
        log(f"  {name}: {seeds} seeds done")
    return out


def summary(res: dict[str, list[Outcome]]) -> list[list]:
    rows = []
    for name, outs in res.items():
        t = statistics.median(o.trials_to for o in outs)
        h = statistics.median(o.hours_to for o in outs)
        never = sum(math.isinf(o.trials_to) for o in outs)
        regs = [statistics.median(o.regret.get(k, INF) for o in outs) for k in CHECKPOINTS]
        rows.append([name, "never" if math.isinf(t) else f"{t:g}", "never" if math.isinf(h) else f"{h:.3f}",
                     never, *(f"{r:.1%}" if not math.isinf(r) else "-" for r in regs)])
    return rows


def report(gt: GroundTruth, res: dict[str, list[Outcome]], seeds: int, horizon: int) -> None:
    i, opt = gt.optimum
    n_runs = [len(r) for r in gt.runs]
    hours = sum(c for r in gt.runs for _, c in r) / 3600
    loads = [float(x) for x in gt.meta.get("_loads", [])]
    print(f"table {gt.name}: {len(gt.configs)} configurations, {sum(n_runs)} measured replays "
          f"({min(n_runs)}-{max(n_runs)} each), {hours:.2f} machine-hours measured"
          + (f", load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""))
    print(f"optimum (best median): {opt:.3f} s at {gt.configs[i]}; {seeds} seeds, horizon {horizon} trials")
    table(["method", "trials to 2% (median)", "machine-h to 2% (median)", "seeds never",
           *(f"regret @{k}" for k in CHECKPOINTS)], summary(res))
    med = {k: statistics.median(o.trials_to for o in v) for k, v in res.items()}
    if {"ours", "random", "gp"} <= set(med):
        text, met = ratio_goal(med["ours"], med["random"], horizon)
        print(f"goals: ours / random median trials to 2 % = {text} (goal <= 0.3: {'MET' if met else 'MISSED'}); "
              f"ours {med['ours']:g} vs gp alone {med['gp']:g} "
              f"(goal: never worse: {'MET' if med['ours'] <= med['gp'] else 'MISSED'})")


def ratio_goal(ours: float, rnd: float, horizon: int, goal: float = 0.3) -> tuple[str, bool]:
    """ours / random median trials to 2 %, where a median past the horizon (inf) is only known to be
    more than ``horizon``: then the ratio is a bound, and whether it meets ``goal`` may be unknown."""
    if math.isinf(ours):
        return "unknown (ours' median is past the horizon)", False
    if math.isinf(rnd):
        bound = ours / (horizon + 1)
        return f"< {bound:.2f} (random's median is past the {horizon}-trial horizon)", bound <= goal
    return f"{ours / rnd:.2f}", ours / rnd <= goal


def main() -> int:
    from tabular_methods import METHODS, make_methods
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--horizon", type=int, default=60)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--grid", nargs="*", default=[], help="KEY=V1,V2: replay on this sub-grid of the table")
    ap.add_argument("--shuffle", type=int, help="permute the objective column with this seed (a control)")
    ap.add_argument("--json", type=Path, help="write the per-seed outcomes here")
    ap.add_argument("--fidelity-only", action="store_true", help="only the simulator's fidelity, on the "
                    "configurations measured so far (a table still being built)")
    args = ap.parse_args()
    import importlib.util
    if not args.fidelity_only and "cmaes" in args.methods and importlib.util.find_spec("cmaes") is None:
        print("tabular: error: method cmaes needs the cmaes package: pip install -e '.[bench]' (or leave it out "
              "with --methods)", file=sys.stderr)
        return 2
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from groundtruth import parse_grid
    gt = load_table(args.table, parse_grid(args.grid))
    with args.table.open(newline="") as fh:
        gt.meta["_loads"] = [r["loadavg1"] for r in csv.DictReader(fh)]
    missing = sum(not r for r in gt.runs)
    if args.fidelity_only:
        gt = gt.measured_only()
    elif missing:
        print(f"tabular: error: {args.table}: every configuration of the grid must be measured, {missing} of "
              f"{len(gt.runs)} are not (resume bench/groundtruth.py, or --grid a measured sub-grid)", file=sys.stderr)
        return 2
    if args.shuffle is not None:
        gt = gt.shuffled(args.shuffle)
    from tabular_fidelity import fidelity, real_ttft, report_fidelity, report_ttft, sim_values, ttft_fidelity
    sims = sim_values(gt, ROOT, args.table.parent)
    if args.fidelity_only:
        if sims is None:
            print(f"tabular: error: {args.table}: no simulator for this table's stack here (a vLLM table needs "
                  f"`tune calibrate` run into {args.table.with_suffix('.profile.yaml')})", file=sys.stderr)
            return 2
        print(f"table {gt.name}: {len(gt.configs)} configurations measured so far")
    from tabular_noise import determination, report_determination
    report_determination(gt, determination(gt, gt.optimum[0]))
    if sims is not None:
        report_fidelity(gt, fidelity(gt, sims))
        real = real_ttft(args.table, gt)
        if real is not None:   # a table that kept each replay's p99 TTFT
            report_ttft(ttft_fidelity(real, sim_values(gt, ROOT, args.table.parent, metric="ttft_p99")))
        calibrated = args.table.with_suffix(".profile.yaml")
        if calibrated.exists():   # ours' simulator: its calibration's launches are not in the costs below
            first = calibrated.read_text().splitlines()[0].lstrip("# ")
            print(f"the simulator ({calibrated}) was calibrated beforehand, not charged to ours below: {first}")
    if args.fidelity_only:
        return 0
    res = run_methods(gt, make_methods(gt, sims, args.methods), args.seeds, args.horizon)
    report(gt, res, args.seeds, args.horizon)
    if args.json:
        args.json.write_text(json.dumps({k: [o.__dict__ for o in v] for k, v in res.items()}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("tabular", main))
