"""The peers' benchmark clients, run as their users run them, and their figures in our metric names.

vLLM's ``bench serve`` runs from its module in the vLLM venv (the CPU build's console script is
broken: its distribution is not named "vllm"); GuideLLM runs as its console script from its own
venv (.ci/guidellm.sh). Both read the same requests from one JSONL file (prompt + output tokens,
EOS ignored) and return our names (tuner/runtime/metrics.py), in seconds:
ttft/tpot/itl/e2e _p50/_p99, requests_ok, tokens_out, throughput_rps, tokens_per_s.
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

#: ``vllm bench serve`` through its module; python -P keeps the working directory off sys.path
BENCH_SERVE = ("from vllm.utils.argparse_utils import FlexibleArgumentParser as P;"
               "from vllm.benchmarks.serve import add_cli_args, main;"
               "p = P(); add_cli_args(p); main(p.parse_args())")
LATENCIES = ("ttft", "tpot", "itl", "e2e")
FIGURES = (*(f"{m}_p{p}" for m in LATENCIES for p in (50, 99)), "requests_ok", "tokens_out",
           "throughput_rps", "tokens_per_s")


def write_dataset(requests, path: Path) -> Path:
    """One JSON line per request: ``prompt`` and its output length under both peers' column names."""
    path.write_text("".join(json.dumps({"prompt": r.prompt, "output_tokens": r.output_len,
                                        "output_tokens_count": r.output_len}) + "\n" for r in requests))
    return path


def vllm_bench_argv(python: str, url: str, served: str, tokenizer: Path, dataset: Path, n: int) -> list[str]:
    """``vllm bench serve`` on our requests, in order, exactly their output lengths; the rate is added."""
    return [python, "-P", "-c", BENCH_SERVE, "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
            "--model", served, "--tokenizer", str(tokenizer), "--dataset-name", "custom",
            "--dataset-path", str(dataset), "--custom-output-len", "-1", "--skip-chat-template", "--disable-shuffle",
            "--num-prompts", str(n), "--ignore-eos", "--temperature", "0"]


def run_vllm_client(base: list[str], rate: float, poisson: bool, seed: int, out: Path, env: dict) -> dict:
    """One ``vllm bench serve`` run; its result (with per-request start times) as vLLM saved it."""
    argv = [*base, "--request-rate", "inf" if math.isinf(rate) else f"{rate:g}",
            "--burstiness", "1" if poisson else "inf", "--seed", str(seed),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            "--save-result", "--save-detailed", "--result-dir", str(out.parent), "--result-filename", out.name]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=out.parent, env=env)
    if proc.returncode:
        raise RuntimeError(f"vllm bench serve exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def from_vllm(res: dict) -> dict:
    m = {f"{k}_p{p}": res[f"{'median' if p == 50 else 'p99'}_{'e2el' if k == 'e2e' else k}_ms"] / 1e3
         for k in LATENCIES for p in (50, 99)}
    return m | {"requests_ok": float(res["completed"]), "tokens_out": float(res["total_output_tokens"]),
                "throughput_rps": res["request_throughput"], "tokens_per_s": res["output_throughput"]}


def run_guidellm(guidellm: str, url: str, served: str, tokenizer: Path, dataset: Path, n: int, rate: float,
                 poisson: bool, seed: int, out: Path) -> dict:
    """One GuideLLM run (rate inf: its ``throughput`` profile, every request in flight at once); its JSON report."""
    if math.isinf(rate):
        profile = f"kind=throughput,max_concurrency={n}"
    else:
        profile = f"kind={'poisson' if poisson else 'constant'},rate={rate:g}"
    argv = [guidellm, "run", "--backend", f"kind=openai_http,target={url},model={served},request_format=/v1/completions",
            "--profile", profile, "--constraint", f"kind=max_requests,count={n}",
            "--data", f"kind=json_file,path={dataset}", "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
            "--seed", f"kind=static,value={seed}", "--output", f"kind=json,path={out}", "--disable-console"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=out.parent)
    if proc.returncode:
        raise RuntimeError(f"guidellm exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def from_guidellm(report: dict) -> dict:
    """GuideLLM's first benchmark in our names. Its ``inter_token_latency_ms`` is (E2E - TTFT) / (tokens - 1)
    per request, our TPOT (its percentiles weigh each request by its tokens - 1); it has no per-chunk ITL."""
    b = report["benchmarks"][0]
    m = b["metrics"]
    dist = lambda key, p: m[key]["successful"]["percentiles"][f"p{p}"]   # noqa: E731
    ok = float(m["request_latency"]["successful"]["count"])
    tokens = float(m["output_token_count"]["successful"]["total_sum"])
    out = {f"e2e_p{p}": dist("request_latency", p) for p in (50, 99)}
    out |= {f"ttft_p{p}": dist("time_to_first_token_ms", p) / 1e3 for p in (50, 99)}
    out |= {f"tpot_p{p}": dist("inter_token_latency_ms", p) / 1e3 for p in (50, 99)}
    return out | {"requests_ok": ok, "tokens_out": round(tokens), "throughput_rps": ok / b["duration"],
                  "tokens_per_s": tokens / b["duration"]}
