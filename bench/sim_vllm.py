"""vLLM's surrogate (serving/sim/vllm_*.py): its speed, and its fidelity against real vLLM runs.

  python bench/sim_vllm.py real    --python .venv-vllm/bin/python [--real real.json] [--only a,b]  # measure
  python bench/sim_vllm.py compare --python ... --profile PROFILE [--real real.json,real2.json]  # and compare
  python bench/sim_vllm.py speed   --python ... [--profile PROFILE]            # the 1,500-request trace

``real`` runs each configuration of CONFIGS (points of search_spaces/vllm_batching.yaml) once
through tuner.runtime.trial.run_trial on backend=vllm with the study's load, and keeps total time
and p99 TTFT in DIR/real.json (DIR: trials/_sim_vllm; one launch each, ~3 min on 2 CPU cores).
``compare`` simulates the same configurations with the profile (`tune calibrate` on backend=vllm
writes one) and prints the error per configuration against the median of its real runs, the mean
errors, and Kendall's tau of the total times. ``speed`` times one simulation of all 1,500
requests of traces/alpaca_like_1500.jsonl per configuration (what a worker pays once is not
counted: importing vLLM, loading the tokenizer, tokenising the trace; building each
configuration's VllmConfig and Scheduler is). Wall time is what the host's load allows; the
worker's CPU seconds are what it would take alone. The load average is printed with every
figure: the host is shared.

Each run's output is kept in bench/results/sim_vllm-<UTC time>.txt (the command, commit and load).
The surrogate's fidelity on a whole real-vLLM table: bench/tabular.py on bench/data/vllm_batching*.csv.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, run_recorded, table

STUDY = "vllm_batching"
CONFIGS = {   # diverse points of the space: the default, small and large batches, a tight pool, no chunking
    "default": dict(max_num_seqs=128, max_num_batched_tokens=2048, block_size=128, num_gpu_blocks_override=None,
                    enable_chunked_prefill=True),
    "seqs4": dict(max_num_seqs=4, max_num_batched_tokens=256, block_size=32, num_gpu_blocks_override=None,
                  enable_chunked_prefill=True),
    "seqs8": dict(max_num_seqs=8, max_num_batched_tokens=512, block_size=64, num_gpu_blocks_override=None,
                  enable_chunked_prefill=True),
    "pool40": dict(max_num_seqs=64, max_num_batched_tokens=1024, block_size=32, num_gpu_blocks_override=40,
                   enable_chunked_prefill=True),
    "nochunk": dict(max_num_seqs=256, max_num_batched_tokens=4096, block_size=64, num_gpu_blocks_override=None,
                    enable_chunked_prefill=False),
}


def load(over: list[str]):
    from tuner.space.compose import load_space
    return load_space(STUDY, ROOT, over)


def plan_of(space):
    from serving.stacks import get_stack
    from tuner.workload.trace import load_trace, schedule
    counter = get_stack("vllm").token_counter(ROOT / space.base_config, space.backend_options())
    return schedule(load_trace(ROOT / space.trace, space.trace_format, counter),
                    space.load.qps, space.load.duration, space.load.seed)


def real(args) -> None:
    from tuner.runtime.context import TrialContext
    from tuner.runtime.trial import run_trial
    space = load(args.over)
    plan = plan_of(space)
    out = args.out / args.real
    got = json.loads(out.read_text()) if out.is_file() else {}
    for name, params in CONFIGS.items():
        if name in got or (args.only and name not in args.only):
            continue
        t0, la = time.monotonic(), os.getloadavg()[0]
        o = run_trial(TrialContext(space, ROOT, args.out / "runs" / f"{out.stem}_{name}", plan), params)
        got[name] = {"ok": o.ok, "total_time": o.metrics.get("total_time"), "ttft_p99": o.metrics.get("ttft_p99"),
                     "fail": o.fail_detail, "load": [la, os.getloadavg()[0]], "wall": time.monotonic() - t0}
        out.write_text(json.dumps(got, indent=1))   # each run kept as it ends: nothing measured is lost
        print(name, got[name], flush=True)


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau
    return float(kendalltau(a, b).statistic)


def compare(args) -> None:
    """Against each configuration's median over the real files named (``--real a.json,b.json``)."""
    from tuner.screening.prescreen import simulate_params
    space = load(args.over + [f"vllm.surrogate_profile={args.profile}"])
    plan = plan_of(space)
    runs: dict[str, list[dict]] = {}
    for f in args.real.split(","):
        for name, meas in json.loads((args.out / f).read_text()).items():
            if meas["ok"]:
                runs.setdefault(name, []).append(meas)
    rows, et, ep, rt, st = [], [], [], [], []
    for name, ms in runs.items():
        sim = simulate_params(space, ROOT, CONFIGS[name], plan).metrics
        real_t = statistics.median(m["total_time"] for m in ms)
        real_p = statistics.median(m["ttft_p99"] for m in ms)
        e_t, e_p = sim["total_time"] / real_t - 1, sim["ttft_p99"] / real_p - 1
        et.append(abs(e_t))
        ep.append(abs(e_p))
        rt.append(real_t)
        st.append(sim["total_time"])
        spread = "/".join(f"{m['total_time']:.1f}" for m in ms)
        loads = "/".join(f"{m['load'][0]:.0f}" for m in ms)
        rows.append([name, spread, real_t, sim["total_time"], f"{e_t:+.1%}", real_p, sim["ttft_p99"], f"{e_p:+.1%}",
                     loads])
    table(["config", "real runs", "real median", "sim total", "err", "real ttft99", "sim ttft99", "err",
           "load (real)"], rows)
    print(f"mean |error|: total time {statistics.mean(et):.1%}, p99 TTFT {statistics.mean(ep):.1%}; "
          f"Kendall tau (total time) {kendall_tau(rt, st):.2f}; load average now {os.getloadavg()[0]:.2f}")


def speed(args) -> None:
    import tempfile

    import psutil

    from serving.config.vllm_yaml import VLLMYamlFormat
    from serving.sim.vllm_client import VllmSurrogate
    from serving.sim.vllm_profile import load_vllm_profile
    from serving.stacks.vllm_sim import engine_flags, pool_blocks
    from serving.stacks import get_stack
    from serving.stacks.vllm import VLLMOptions
    from tuner.workload.trace import load_trace, schedule
    space = load(args.over)
    counter = get_stack("vllm").token_counter(ROOT / space.base_config, space.backend_options())
    trace = load_trace(ROOT / "traces/alpaca_like_1500.jsonl", "auto", counter)
    plan = schedule(trace, 20, len(trace) / 20, 0)       # all 1,500 requests at 20/s
    profile = load_vllm_profile(args.profile)
    opts = VLLMOptions.model_validate(space.backend_options())
    fmt = VLLMYamlFormat()
    rows = []
    with VllmSurrogate(args.python) as sur, tempfile.TemporaryDirectory() as tmp:
        sur.ask({"op": "ping"})                          # vLLM imported before any timing
        worker = psutil.Process(sur.proc.pid)
        first = Path(tmp) / "first.yaml"                 # and the tokenizer loaded, the trace's prompts tokenised
        fmt.render(ROOT / space.base_config, {}, first)
        sur.simulate(engine_flags(first), 1000, profile.steptime, plan[:1])
        sur.simulate(engine_flags(first), 1000, profile.steptime, plan)
        for name, params in CONFIGS.items():
            cfg = Path(tmp) / f"{name}.yaml"
            fmt.render(ROOT / space.base_config, params, cfg)
            flags, blocks = engine_flags(cfg), pool_blocks(fmt.load(cfg), opts, profile)
            cpu0, t0 = sum(worker.cpu_times()[:2]), time.perf_counter()
            res = sur.simulate(flags, blocks, profile.steptime, plan)
            wall, cpu = time.perf_counter() - t0, sum(worker.cpu_times()[:2]) - cpu0
            done = [r.done for r in res.records if r.done is not None]
            rows.append([name, len(plan), res.steps, res.preemptions, max(done), wall, cpu, f"{os.getloadavg()[0]:.1f}"])
    table(["config", "requests", "steps", "preempted", "sim total s", "wall s", "worker CPU s", "load"], rows)
    wall, cpu = max(r[5] for r in rows), max(r[6] for r in rows)
    print(f"slowest configuration: {wall:.2f} s wall, {cpu:.2f} worker CPU s for {len(plan)} requests "
          f"(goal < 5 s: {'MET' if wall < 5 else 'MISSED'}; load average {os.getloadavg()[0]:.2f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["real", "compare", "speed"])
    ap.add_argument("--python", default=os.environ.get("TUNER_VLLM_PYTHON", ""))
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "trials" / "_sim_vllm")
    ap.add_argument("--real", default="real.json", help="file(s) under --out holding real runs (compare: a,b)")
    ap.add_argument("--only", type=lambda v: v.split(","), default=None, help="configs to run, e.g. default,pool40")
    ap.add_argument("over", nargs="*", help="search space overrides, e.g. load.qps=30")
    args = ap.parse_args()
    args.over = [f"vllm.python={args.python}", *args.over]
    args.out.mkdir(parents=True, exist_ok=True)
    {"real": real, "compare": compare, "speed": speed}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("sim_vllm", main))
