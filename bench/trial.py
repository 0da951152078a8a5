"""Embedded trial overhead: launch + ready + stop of serving.stacks.embedded.EmbeddedStack.

  python bench/trial.py [--reps 5]

Side by side in one run, alternating, medians over ``--reps``: a bare interpreter start
(``python -c pass``) and the server's imports (``python -c "import serving.engine.server"``),
the floor any launch pays, then the stack with the base config and with the space's largest
KV pool (num_blocks 1024 x block_size 64). Goal: launch + ready + stop < 3 s.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, median, table, run_recorded

from serving.config.render import render
from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedStack

BASE = ROOT / "configs" / "llama" / "tiny_llama_pa.yaml"
CONFIGS = {"base config": {}, "largest KV pool": {"pa_config.num_blocks": 1024, "pa_config.block_size": 64}}


def python_start(code: str) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.monotonic() - t


def stack_cycle(config: Path, run_dir: Path) -> tuple[float, float]:
    """(launch until /health answers, stop until the process group is gone), seconds."""
    t = time.monotonic()
    running = EmbeddedStack().launch(LaunchSpec(config, run_dir, ready_timeout=60))
    up = time.monotonic() - t
    t = time.monotonic()
    running.stop()
    return up, time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in ["python -c pass", "import server", *CONFIGS]}
    with tempfile.TemporaryDirectory(prefix="bench_trial_") as tmp:
        configs = {}
        for name, params in CONFIGS.items():
            configs[name] = Path(tmp) / f"{len(configs)}.yaml"
            render(BASE, params, configs[name])
        for rep in range(args.reps):  # alternate so drifting load hits every row alike
            res["python -c pass"].append((python_start("pass"), 0.0))
            res["import server"].append((python_start("import serving.engine.server"), 0.0))
            for name, cfg in configs.items():
                res[name].append(stack_cycle(cfg, Path(tmp) / f"run{rep}"))
    rows = []
    floor = median(a for a, _ in res["import server"])
    for name, vals in res.items():
        up, stop = median(a for a, _ in vals), median(b for _, b in vals)
        total = median(a + b for a, b in vals)
        rows.append([name, up, stop, total, total / floor])
    print(f"medians over {args.reps} alternating repetitions (s); the stack polls /health every 0.1 s")
    table(["what", "launch->ready", "stop", "total", "x import floor"], rows)
    worst = max(r[3] for r in rows[2:])
    print(f"embedded trial overhead (launch + ready + stop): {worst:.2f} s at most -> goal < 3 s: "
          f"{'MET' if worst < 3 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("trial", main))
