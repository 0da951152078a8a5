"""The serving layer's own overhead per output token: the real llm-serving with emulated 910B
model time against the pure simulator with the same device time.

  python bench/overhead.py [--batches 1 4 16] [--qps 8] [--duration 2]

Needs the real llm-serving (TUNER_LLMS_ROOT, TUNER_MINDFORMERS_ROOT, TUNER_LLMS_PYTHON, as
.ci/llm_serving.sh builds them; the checkout patched with serving/stacks/patches/). For each
decode batch size, the same short trace (search_spaces/pa_batching_llm_serving.yaml's) is replayed
(a) against the real stack at RUN_LEVEL 5 with ``emulate_profile=ascend910b_llama2_7b``: the
    agent waits each step's device time from the profile; everything else is the real serving
    code on this machine (HTTP, master, scheduler, worker, TCP + shared memory, agent pre/post);
(b) on the simulator (backend=sim) with that profile's device terms only (host terms and request
    delays zeroed): the same device time with no serving layer at all.
(a) - (b), divided by the output tokens, is what the serving layer adds per token here. The
profile's own host terms (the 910B host's share, from the published per-stage timings) are
printed beside it, per token, from a third run of the simulator with the whole profile:
the seeds' figure was 40 ms served vs 25 ms bare per token at batch 1. The simulator schedules
with the embedded engine's policy (prefill first), llm-serving with its own, so at larger
batches part of the difference is scheduling, not per-step cost.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import yaml

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, table, run_recorded

from serving.sim.profile_io import load_profile
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial

PROFILE = "ascend910b_llama2_7b"
STUDY = "pa_batching_llm_serving"


def device_only_profile(out: Path) -> Path:
    """The profile with host terms and request delays at zero: only the device time is left."""
    d = load_profile(PROFILE).to_dict()
    for phase in ("prefill", "decode"):
        d[phase]["host"] = {k: 0.0 for k in d[phase]["host"]}
    d["request"] = {k: 0.0 for k in d["request"]}
    d["name"] = f"{PROFILE}_device_only"
    out.write_text(yaml.safe_dump(d))
    return out


def run(space, params: dict, run_dir: Path, plan) -> dict:
    o = run_trial(TrialContext(space, ROOT, run_dir, plan), params)
    if not o.ok:
        raise SystemExit(f"{run_dir.name}: {o.fail_class}: {o.fail_detail}\n{o.log_tail[-1500:]}")
    m = o.metrics
    return {"total": m["total_time"], "tokens": m["tokens_out"], "tpot": m["tpot_p50"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--qps", type=float, default=8.0)
    ap.add_argument("--duration", type=float, default=2.0)
    args = ap.parse_args()
    missing = [v for v in ("TUNER_LLMS_ROOT", "TUNER_MINDFORMERS_ROOT", "TUNER_LLMS_PYTHON") if not os.environ.get(v)]
    if missing:
        print(f"bench/overhead.py needs the real llm-serving: set {', '.join(missing)} (.ci/llm_serving.sh builds it)",
              file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = ROOT / "trials" / "_overhead" / stamp       # every run's logs kept, and said where
    tmp.mkdir(parents=True)
    print(f"run folders in {tmp}")
    load = [f"load.qps={args.qps}", f"load.duration={args.duration}"]
    real = load_space(STUDY, ROOT, load + [f"llm_serving.emulate_profile={PROFILE}", "llm_serving.run_level=5"])
    bare = load_space(STUDY, ROOT, load + ["backend=sim", f"+sim.profile={device_only_profile(tmp / 'device.yaml')}"])
    full = load_space(STUDY, ROOT, load + ["backend=sim", f"+sim.profile={PROFILE}"])
    plan = StudyRun(real, ROOT, "").plan()
    print(f"{len(plan)} requests (X={args.qps}, T={args.duration}), profile {PROFILE}; (a) real llm-serving at "
          f"RUN_LEVEL 5 waiting the profile's device time, (b) simulator with device time only")
    rows = []
    for b in args.batches:
        params = {"model_config.decode_batch_size": b}
        a = run(real, params, tmp / f"real_b{b}", plan)
        s = run(bare, params, tmp / f"sim_b{b}", plan)
        f = run(full, params, tmp / f"sim_full_b{b}", plan)
        per_token = (a["total"] - s["total"]) / a["tokens"] * 1e3
        host_910b = (f["total"] - s["total"]) / f["tokens"] * 1e3
        rows.append([b, a["total"], s["total"], int(a["tokens"]), per_token, a["tpot"] * 1e3, s["tpot"] * 1e3,
                     (a["tpot"] - s["tpot"]) * 1e3, host_910b, round(os.getloadavg()[0], 2)])
    table(["decode batch", "(a) real s", "(b) sim s", "tokens", "overhead ms/token",
           "TPOT p50 (a) ms", "TPOT p50 (b) ms", "TPOT diff ms", "910B host ms/token (profile)", "load avg 1 min"], rows)
    # (b) runs on a virtual clock: host load slows (a) only, so read "overhead" beside the load column
    print("(b) is simulated on a virtual clock: load on this host lands in (a) alone; compare rows at like load")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("overhead", main))
