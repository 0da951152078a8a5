"""The optimum depends on the workload: tune two traces on the simulator and swap their best configs.

  python bench/workloads.py [--trials 30] [--qps 10] [--requests 1500] [--seed 0]
                            [--base-config configs/llama/llama_7b_kbk_pa_dyn.yaml] [--sim profile=...]

The pa_batching space on backend "sim" (the 910B LLaMA-2-7B profile by default), single
objective total_time, the same load (Poisson ``--qps``, ``--requests`` requests) on two
traces: traces/alpaca_like_1500.jsonl (short prompts, longer outputs) and
traces/long_prompt_1500.jsonl (long prompts, short outputs). Each is tuned with the study's
own sampler (StudyRun, GP BO, in-memory storage); then each trace's best configuration is
replayed on the other trace. The cost of tuning on the wrong workload is
total_time(other trace's best, this trace) / total_time(this trace's best, this trace).
"""
from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, table, run_recorded

import optuna

from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial
from tuner.space.compose import load_space
from tuner.space.spec import Objective, StudySpace
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial, trial_config

TRACES = {"alpaca_like": "traces/alpaca_like_1500.jsonl", "long_prompt": "traces/long_prompt_1500.jsonl"}


def workspace(tmp: Path) -> Path:
    """A throwaway project root, so the studies' trial folders never land in the checkout."""
    for name in ("search_spaces", "configs", "traces"):
        shutil.copytree(ROOT / name, tmp / name)
    return tmp


def space_for(root: Path, trace: str, args) -> StudySpace:
    over = ["backend=sim", f"trace={trace}", f"load.qps={args.qps}", f"load.requests={args.requests}",
            "load.duration=null", "timeouts.replay=7200", f"base_config={args.base_config}",
            f"study=workloads_{Path(trace).stem}", *(f"++sim.{kv}" for kv in args.sim)]
    space = load_space("pa_batching", root, over)
    return space.model_copy(update={"objectives": [Objective(name="total_time", direction="minimize")],
                                    "seed": args.seed})


def total_time(space: StudySpace, root: Path, run: StudyRun, params: dict, work: Path) -> float:
    out = run_trial(TrialContext(space, root, work, run.plan()), params)
    shutil.rmtree(work, ignore_errors=True)
    return out.metrics.get("total_time", math.inf) if out.ok else math.inf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=30, help="tuning trials per trace")
    ap.add_argument("--qps", type=float, default=10.0, help="Poisson arrival rate, the same for both traces")
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    ap.add_argument("--base-config", default="configs/llama/llama_7b_kbk_pa_dyn.yaml")
    ap.add_argument("--sim", nargs="*", default=["profile=ascend910b_llama2_7b"],
                    help="KEY=VALUE for the space's sim section")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_workloads_") as tmp:
        root = workspace(Path(tmp))
        spaces = {k: space_for(root, t, args) for k, t in TRACES.items()}
        runs = {k: StudyRun(s, root, optuna.storages.InMemoryStorage()) for k, s in spaces.items()}
        best: dict[str, dict] = {}
        for k, run in runs.items():
            t = time.monotonic()
            print(run.planned().summary(spaces[k].load), flush=True)
            study = run.run(args.trials)
            trial = best_trial(study)
            best[k] = trial_config(trial)   # what the trial measured
            print(f"{k}: tuned in {time.monotonic() - t:.0f} s ({args.trials} trials): total_time "
                  f"{trial.values[0]:.1f} s at {best[k]}", flush=True)
        cost = {(c, w): total_time(spaces[w], root, runs[w], best[c], Path(tmp) / f"x_{c}_{w}")
                for c in best for w in best}
    rows = []
    for w in TRACES:
        other = next(c for c in TRACES if c != w)
        own, swapped = cost[(w, w)], cost[(other, w)]
        rows.append([w, own, swapped, swapped / own])
    print()
    print(f"same load on both traces: Poisson {args.qps:g} req/s, {args.requests} requests; sim "
          f"{' '.join(args.sim)}; base {args.base_config}; {args.trials} GP trials per trace, seed {args.seed}")
    for k in TRACES:
        print(f"best on {k}: {best[k]}")
    table(["trace", "own best: total_time s", "other trace's best: total_time s", "cost ratio"], rows)
    same = best["alpaca_like"] == best["long_prompt"]
    print(f"the optima {'are the same' if same else 'differ'}; worst cost of tuning on the other trace: "
          f"{max(r[3] for r in rows):.3f}x (bench {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("workloads", main))
