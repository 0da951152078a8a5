"""Fault injection: a study whose trials crash, run out of memory, hang, find their port
taken or get a malformed stream, and what the tuner recorded for each.

  python bench/faults.py [--trials 20]

Uses the test-only stack tests/tuner/faulty_stack.py (trial n gets FAULTS[n % 6]) in a
throwaway project copy, then prints one row per trial, the process groups left running (must
be 0) and whether one more trial resumes the same study.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, table

import optuna

from serving.stacks import register_stack
from tests.tuner.faulty_stack import EXPECTED
from tuner.space.compose import load_space
from tuner.runtime.constraints import is_feasible
from tuner.study.resume import tagged_groups
from tuner.study.run import StudyRun

STUDY = "pa_faults"
FAST = ["backend=faulty", "load.qps=20", "load.duration=0.5", "load.request_timeout=2", "timeouts.ready=20", "timeouts.replay=10",
        "sampler=random", "seed=0", f"study={STUDY}", "params.pa_config.num_blocks.low=256",
        "params.model_config.decode_batch_size.choices=[8,16]", "params.model_config.prefill_batch_size.choices=[2,4]"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("search_spaces", "configs", "traces"):
            shutil.copytree(ROOT / name, root / name)
        storage = f"sqlite:///{root / 'faults.db'}"
        space = load_space("pa_batching", root, FAST)
        t0 = time.monotonic()
        study = StudyRun(space, root, storage).run(args.trials)
        took = time.monotonic() - t0
        rows, wrong = [], 0
        for t in study.trials:
            kind = (Path(t.user_attrs["run_dir"]) / "fault").read_text()
            cls = t.user_attrs.get("fail_class")
            wrong += cls != EXPECTED[kind]
            feasible = "yes" if t.state.name == "COMPLETE" and is_feasible(t) else "no"
            rows.append([t.number, kind, t.state.name, feasible, cls or "-",
                         (t.user_attrs.get("fail_detail") or "")[:60]])
        table(["trial", "injected", "state", "feasible", "recorded cause", "detail"], rows)
        left = tagged_groups(STUDY)
        again = StudyRun(space, root, storage).run(1)
        running = again.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        print(f"\n{args.trials} trials in {took:.1f} s; causes recorded right: {args.trials - wrong}/{args.trials}; "
              f"process groups left: {len(left)}; resumed to {len(again.trials)} trials, {len(running)} RUNNING")
        return 0 if wrong == 0 and not left and not running else 1


if __name__ == "__main__":
    raise SystemExit(main())
