"""Is this host steady enough to measure on? Stalls of every process, idle, under CPU burners, and while vLLM serves.

  python bench/host.py [--seconds 20] [--python .venv-vllm/bin/python] [--vllm OVERRIDE ...]

One tick process per core (pinned with sched_setaffinity) sleeps 5 ms in a loop and notes each
wake-up later than 100 ms. Three phases: the host idle; two plain CPU burners (a busy loop each);
then, with ``--python``, a real vLLM (CPU build, tiny LLaMA) replaying the 100-request trace at
20 req/s (vllm_batching's load) while the ticks run. A stall on both cores at the same moment is
the whole machine stopping (a VM descheduled by its host), not one busy core: the replay client
cannot keep up through it, and its replays fail as client_overloaded (tuner/runtime/client_check.py).
Per phase: stalls per core, the longest, how many of core 0's stalls had one on core 1 within
50 ms, the stalls' total, and the CPU time the hypervisor reports stolen (/proc/stat steal): a stall
the host's scheduler caused shows as steal, one inside the VM (its own kernel) does not.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, run_recorded, table

TICK = r"""
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end, late = time.monotonic() + float(sys.argv[2]), []
while time.monotonic() < end:
    t = time.monotonic(); time.sleep(0.005); d = time.monotonic() - t - 0.005
    if d > 0.1:
        late.append([t, d])
print(json.dumps(late))
"""


def steal() -> float:
    """Seconds all CPUs have spent stolen so far (/proc/stat: time the hypervisor ran something else
    while this VM had work); NaN where the kernel does not report it."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def ticks(seconds: float) -> tuple[list[subprocess.Popen], float]:
    """The tick processes, and the steal time when they started."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    return [subprocess.Popen([sys.executable, "-c", TICK, str(c), str(seconds)], stdout=subprocess.PIPE, text=True)
            for c in cores], steal()


def summary(name: str, procs: list[subprocess.Popen], stolen_before: float) -> list:
    stalls = [json.loads(p.communicate()[0] or "[]") for p in procs]
    stolen = steal() - stolen_before
    both = sum(any(abs(t - u) < 0.05 + max(d, e) for u, e in stalls[1]) for t, d in stalls[0]) if len(stalls) > 1 else 0
    longest = max((d for s in stalls for _, d in s), default=0.0)
    stalled = sum(d for s in stalls for _, d in s)
    return [name, *(len(s) for s in stalls), f"{longest * 1e3:.0f} ms", both, f"{stalled:.1f} s", f"{stolen:.1f} s",
            f"{os.getloadavg()[0]:.2f}"]


def with_vllm(python: str, seconds: float, overrides: list[str] = ()) -> list:
    from serving.config.render import render
    from serving.stacks import LaunchSpec, get_stack
    from tuner.runtime.trial import replay_options
    from tuner.space.compose import load_space
    from tuner.study.run import StudyRun
    space = load_space("vllm_batching", ROOT, [f"vllm.python={python}", *overrides])
    plan = StudyRun(space, ROOT, "").plan()
    with tempfile.TemporaryDirectory(prefix="bench_host_") as tmp:
        folder = Path(tmp) / "tiny_llama"
        subprocess.run([python, str(ROOT / "serving" / "stacks" / "vllm_tiny_model.py"), str(folder)], check=True,
                       capture_output=True)
        config = Path(tmp) / "config.yaml"
        render(ROOT / space.base_config, {"model": str(folder)}, config)
        with get_stack("vllm").launch(LaunchSpec(config, Path(tmp) / "run", 600, None,
                                                 space.backend_options())) as running:
            procs, before = ticks(seconds)
            lags, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                res = running.replay(plan, replay_options(space))
                lags += [r.sent - r.scheduled for r in res.records if r.sent is not None]
            row = summary("vLLM serving 20 req/s", procs, before)
    lags.sort()
    print(f"replay client while vLLM served: send lag p99 {lags[int(0.99 * (len(lags) - 1))] * 1e3:.1f} ms over "
          f"{len(lags)} requests (bound 25 ms)")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase")
    ap.add_argument("--python", help="interpreter of the venv with vLLM: adds the vLLM phase")
    ap.add_argument("--vllm", nargs="*", default=[], metavar="OVERRIDE",
                    help="overrides of the vLLM study, e.g. ++vllm.env.VLLM_CPU_OMP_THREADS_BIND=nobind")
    args = ap.parse_args()
    rows = [summary("idle", *ticks(args.seconds))]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        rows.append(summary("2 CPU burners", *ticks(args.seconds)))
    finally:
        for b in burners:
            b.kill()
            b.wait()
    if args.python:
        # absolute (vLLM starts in a scratch folder), a venv's python never resolved past its link
        python = os.path.abspath(shutil.which(args.python) or args.python)
        rows.append(with_vllm(python, args.seconds, args.vllm))
    table(["phase", "stalls > 100 ms, core 0", "core 1", "longest", "core 0's with one on core 1", "stalled (sum)",
           "steal (all CPUs)", "load"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("host", main))
