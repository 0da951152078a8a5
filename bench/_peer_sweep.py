"""vLLM's own sweep of load levels (``vllm bench sweep serve_workload``, vLLM 0.32) beside our capacity
search (tuner/runtime/capacity.py), each on a launch of its own with the same vLLM settings.

vLLM's sweep launches its server from ``--serve-cmd`` (here the very command and YAML our stack
runs, with our stack's environment), runs a serial pass (concurrency 1) and a batch pass
(concurrency = all requests), then ``iters - 2`` Poisson request rates spaced evenly between
their throughputs, one run each; it answers with a curve, not a rate: the highest rate meeting the
SLO is read from it here. ``--after-bench-cmd true``: its default cache reset works only when the
server command is the ``vllm`` script, which the CPU build lacks; our search resets nothing either.
"""
from __future__ import annotations

import math
import os
import shlex
import subprocess
import time
from pathlib import Path

from _peer_clients import vllm_bench_argv, write_dataset

from serving.config.vllm_yaml import load_vllm_yaml
from serving.replay import ReplayOptions
from serving.stacks import LaunchSpec, get_stack
from serving.stacks.ports import free_ports
from serving.stacks.vllm import MODULE, environment, parse_options
from tuner.runtime.capacity import CapacitySearch, ClientOverloaded
from tuner.space.capacity import CapacitySpec
from tuner.workload.trace import load_trace

TRACE = "traces/alpaca_like_1500.jsonl"
#: our SLO keys -> the sweep's summary columns (the sweep asks vLLM's client for p99 only)
COLUMNS = {"ttft_p99": "p99_ttft_ms", "tpot_p99": "p99_tpot_ms", "e2e_p99": "p99_e2el_ms", "itl_p99": "p99_itl_ms"}


def _loads() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ours(options: dict, config: Path, tmp: Path, reqs, n: int, slo: dict, seed: int) -> tuple[dict, Path]:
    stack = get_stack("vllm")
    t = time.monotonic()
    with stack.launch(LaunchSpec(config, tmp / "capacity_run", 900, None, options)) as run:
        up = time.monotonic() - t
        cs = CapacitySearch(run, reqs, slo, CapacitySpec(requests=n),
                            ReplayOptions(parameters={"do_sample": False}, request_timeout=300), seed)
        try:
            res = cs.run()
        except ClientOverloaded as err:   # the search's own verdict on a host too busy for its client
            res = None
            error = f"client_overloaded: {err}"
    wall = time.monotonic() - t
    probes = [p.row() | {"ttft_p99": p.metrics.get("ttft_p99"), "tpot_p99": p.metrics.get("tpot_p99")}
              for p in cs.probes]
    if res is None:
        return {"error": error, "wall_s": wall, "startup_s": up, "capacity_rps": math.nan,
                "first_fail_rps": math.nan, "requests_sent": sum(p.replayed for p in cs.probes),
                "replays": len(cs.probes), "probes": probes, "load_after": _loads()}, tmp / "capacity_run" / "vllm.yaml"
    return ({"capacity_rps": res.capacity, "first_fail_rps": res.high, "saturation_rps": res.saturation_rps,
             "requests_sent": sum(p.replayed for p in cs.probes), "replays": len(cs.probes),
             "wall_s": wall, "startup_s": up, "probes": probes, "load_after": _loads()},
            tmp / "capacity_run" / "vllm.yaml")


def vllm_sweep(options: dict, launch_yaml: Path, served: str, folder: Path, dataset: Path, n: int, iters: int,
               slo: dict, seed: int, tmp: Path) -> dict:
    """``launch_yaml``: the file our stack launched vLLM with (dashed keys, as vLLM's --config honours
    them); ``served``: the model name it serves under."""
    import pandas as pd
    opts = parse_options(options)
    python = opts.python
    env = environment(opts, LaunchSpec(launch_yaml, tmp), None)
    [port] = free_ports(1)
    serve = [python, "-m", MODULE, "--config", str(launch_yaml), "--host", "127.0.0.1", "--port", str(port)]
    bench = [*vllm_bench_argv(python, f"http://127.0.0.1:{port}", served, folder, dataset, n), "--seed", str(seed)]
    out = tmp / "sweep"
    argv = [python, "-P", "-m", "vllm.benchmarks.sweep.serve_workload", "--serve-cmd", shlex.join(serve),
            "--bench-cmd", shlex.join(bench), "--after-bench-cmd", "true", "--workload-var", "request_rate",
            "--workload-iters", str(iters), "--num-runs", "1", "--server-ready-timeout", "900",
            "-o", str(out), "-e", "peers"]
    t = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=tmp, env=env)
    wall = time.monotonic() - t
    if proc.returncode:
        raise RuntimeError(f"vllm bench sweep serve_workload exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-3000:]}")
    df = pd.read_csv(out / "peers" / "summary.csv")
    curve = []
    for _, row in df.iterrows():
        rate = row.get("request_rate")
        conc = row.get("max_concurrency")
        level = (f"concurrency {int(conc)}" if isinstance(conc, (int, float)) and not math.isnan(conc)
                 else f"{float(rate):g} req/s")
        meets = all(row[COLUMNS[k]] / 1e3 <= b for k, b in slo.items() if k in COLUMNS) and row["failed"] == 0
        curve.append({"level": level, "rate": None if level.startswith("conc") else float(rate),
                      "throughput_rps": row["request_throughput"], **{k: row[COLUMNS[k]] / 1e3 for k in COLUMNS},
                      "requests": int(row["completed"] + row["failed"]), "meets_slo": bool(meets)})
    rated = [c for c in curve if c["rate"] is not None]
    passed = [c["rate"] for c in rated if c["meets_slo"]]
    best = max(passed, default=0.0)
    above = [c["rate"] for c in rated if not c["meets_slo"] and c["rate"] > best]
    return {"capacity_rps": best, "first_fail_rps": min(above, default=math.inf),
            "requests_sent": sum(c["requests"] for c in curve), "replays": len(curve), "wall_s": wall,
            "curve": curve, "load_after": _loads()}


def compare_capacity(options: dict, folder: Path, config: Path, tmp: Path, n: int, iters: int, slo: dict,
                     seed: int) -> dict:
    stack = get_stack("vllm")
    reqs = load_trace(Path(__file__).resolve().parents[1] / TRACE,
                      counter=stack.token_counter(config, options))[:n]
    dataset = write_dataset(reqs, tmp / "sweep_requests.jsonl")
    print(f"\ncapacity under {slo}: our search (one launch) ...", flush=True)
    mine, launch_yaml = ours(options, config, tmp, reqs, n, slo, seed)
    print(f"vLLM's sweep serve_workload, {iters} levels (one launch) ...", flush=True)
    theirs = vllm_sweep(options, launch_yaml, load_vllm_yaml(config).name, folder, dataset, n, iters, slo, seed, tmp)
    print("\nvLLM's curve:")
    for c in theirs["curve"]:
        print(f"  {c['level']:>16}: {c['throughput_rps']:.3g} req/s done, TTFT p99 {c['ttft_p99'] * 1e3:.0f} ms, "
              f"TPOT p99 {c['tpot_p99'] * 1e3:.1f} ms, {'meets' if c['meets_slo'] else 'breaks'} the SLO")
    print("our probes:" if "error" not in mine else f"our probes, then {mine['error']}")
    for p in mine["probes"]:
        print(f"  {p}")
    print(f"{'':>18}{'highest rate meeting SLO':>26}{'lowest failing above':>22}{'requests':>10}{'wall s':>8}")
    for name, r in (("ours (capacity)", mine), ("vLLM sweep", theirs)):
        print(f"{name:>18}{r['capacity_rps']:>26.3g}{r['first_fail_rps']:>22.3g}{r['requests_sent']:>10}"
              f"{r['wall_s']:>8.0f}")
    return {"slo": slo, "ours": mine, "vllm_sweep": theirs}
