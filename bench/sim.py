"""Simulator speed: requests simulated per wall second on the 1,500-request trace.

  python bench/sim.py [--repeats 3]

Goal: the whole trace in < 0.5 s. The slowest case is decode batch 1 (one step per
token, ~92k scheduler steps); the engine's own Scheduler.schedule/postprocess loop on
the same work is timed beside it, since the simulator cannot beat the code it reuses.
Best of --repeats runs (the machine may be shared).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, table, run_recorded

from serving.config.schema import load_serving_yaml
from serving.engine.block_manager import BlockManager
from serving.engine.scheduler import Scheduler
from serving.engine.sequence import SamplingParams, Sequence
from serving.sim import SimSettings, load_profile, simulate
from tuner.runtime.metrics import score
from tuner.workload.trace import load_trace, schedule

CASES = [  # (profile, base config, prefill, decode, X)
    ("ascend910b_llama2_7b", "llama_7b_kbk_pa_dyn.yaml", 1, 1, 0.5),
    ("ascend910b_llama2_7b", "llama_7b_kbk_pa_dyn.yaml", 1, 128, 10),
    ("embedded", "tiny_llama_pa.yaml", 4, 32, 25),
]


def best_of(repeats: int, fn, *args):
    out, best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def scheduler_only(trace, decode: int) -> None:
    """The engine's scheduler alone on the same requests, all queued at once."""
    sch = Scheduler(BlockManager(1024, 16), [1], [decode], 2, 4096)
    for r in trace:
        sch.add(Sequence([1] * (r.prompt_len + 1), SamplingParams(max_new_tokens=r.output_len, ignore_eos=True)))
    while sch.has_work():
        plan = sch.schedule()
        sch.postprocess(plan, [3] * len(plan.seqs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    trace = load_trace(ROOT / "traces/alpaca_like_1500.jsonl")
    rows = []
    for profile, base, prefill, decode, x in CASES:
        b = SimSettings.from_config(load_serving_yaml(ROOT / "configs/llama" / base))
        s = replace(b, prefill_batch_size=(prefill,), decode_batch_size=(decode,))
        plan = schedule(trace, x, 1500 / x)
        model = load_profile(profile)
        res, wall = best_of(args.repeats, simulate, s, model, plan)
        _, floor = best_of(args.repeats, scheduler_only, trace, decode)
        total = score(res.records)["total_time"]
        rows.append([profile, f"{prefill}/{decode}", x, len(plan), res.steps, round(wall, 3), f"{len(plan) / wall:,.0f}",
                     f"{total / wall:,.0f}x", round(floor, 3), "yes" if wall < 0.5 else "NO"])
    table(["profile", "prefill/decode", "X", "requests", "steps", "wall s", "requests/s", "virtual/wall",
           "scheduler alone s", "< 0.5 s"], rows)


if __name__ == "__main__":
    raise SystemExit(run_recorded("sim", main))
