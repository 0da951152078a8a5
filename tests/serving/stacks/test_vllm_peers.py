"""Our replay client against vLLM's own benchmark client (``vllm bench serve``): the same 50
requests at a fixed rate, on one launched vLLM (CPU build, tiny LLaMA, dummy weights: the vLLM the
surrogate's fidelity test also replays on, tests/serving/conftest.py).

The medians must agree within what CI's noise allows: the two clients run one after the other
on 2 shared cores, where the server's own speed drifts between runs, so our client replays before
and after vLLM's and vLLM's median must lie within the tolerance of the range ours spans
(bench/peers.py judges the 5 % goal over repeats, where vLLM's client is steady). Both clients
take ITL per content chunk (docs/metrics.md); it is left to the bench, since how a loaded server
coalesces tokens into chunks varies most from run to run. vLLM's console
script is broken in the CPU build (its distribution is not named "vllm"), so its client runs
through its module, in the vLLM venv (.ci/vllm.sh adds the pandas its dataset loader needs).
"""
import json
import subprocess
import sys

import pytest

from serving.replay import ReplayOptions
from serving.stacks import get_stack
from serving.workload import Plan
from tests.conftest import ROOT
from tuner.runtime.metrics import score
from tuner.workload.trace import load_trace

pytestmark = pytest.mark.xdist_group("vllm_real")

N, RATE = 50, 5.0
# relative, plus seconds for figures of a few ms, where one time slice of a busy host is already 30 %.
# Wide, for the server's own speed drifts between back-to-back runs: at load 12-19 on 2 cores here
# our TTFT p50 was 16 and 58 ms either side of vLLM's run, which gave 106 ms; our TPOT p50
# 9.8 and 19.4 ms, vLLM's 34 ms.
# What it catches is a gross disagreement (e.g. TPOT near 0 when one read carries a request's tokens).
TOLERANCE = {"ttft_p50": (0.5, 0.030), "e2e_p50": (0.5, 0.050), "tpot_p50": (0.5, 0.005)}
PEER = {"ttft_p50": "median_ttft_ms", "e2e_p50": "median_e2el_ms", "tpot_p50": "median_tpot_ms"}
TRIES = 3
# `vllm bench serve` run from its module; -P: the working directory never shadows a package
BENCH_SERVE = ("from vllm.utils.argparse_utils import FlexibleArgumentParser as P;"
               "from vllm.benchmarks.serve import add_cli_args, main;"
               "p = P(); add_cli_args(p); main(p.parse_args())")


def vllm_client(python, url, served, folder, dataset, out_dir):
    """vLLM's client at RATE req/s, evenly spaced (burstiness inf); its result file, as saved."""
    argv = [python, "-P", "-c", BENCH_SERVE, "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
            "--model", served, "--tokenizer", str(folder), "--dataset-name", "custom", "--dataset-path", str(dataset),
            "--custom-output-len", "-1", "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(N),
            "--ignore-eos", "--temperature", "0", "--request-rate", str(RATE), "--burstiness", "inf",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            "--save-result", "--result-dir", str(out_dir), "--result-filename", "vllm.json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=out_dir)
    assert proc.returncode == 0, f"vllm bench serve failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads((out_dir / "vllm.json").read_text())


def test_our_client_and_vllms_agree_on_one_server(tmp_path, shared_vllm):
    python, folder, running = shared_vllm.python, shared_vllm.model, shared_vllm.running
    requests = load_trace(ROOT / "traces" / "alpaca_like_1500.jsonl",
                          counter=get_stack("vllm").token_counter(shared_vllm.base, shared_vllm.options))[:N]
    dataset = tmp_path / "requests.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": r.prompt, "output_tokens": r.output_len}) + "\n"
                               for r in requests))
    opts = ReplayOptions(parameters={"do_sample": False}, request_timeout=120)
    ours, theirs, misses = [], [], []
    running.replay(Plan([(0.0, r) for r in requests[:5]]), opts)   # warm-up, as vLLM's client does its own
    plan = Plan([(i / RATE, r) for i, r in enumerate(requests)])
    ours.append(score(running.replay(plan, opts).records))
    # vLLM's client between two of ours; again (at most TRIES times) when it falls outside them: on
    # this 2-core VM the whole machine stops for up to seconds while vLLM runs (bench/host.py), and a
    # stop inside one 10 s run moves its medians by more than any tolerance (CI: vLLM's TTFT p50
    # 337 ms between ours of 85 and 133 ms). A disagreement that is the clients' own repeats.
    for _ in range(TRIES):
        theirs.append(vllm_client(python, running.url, running.protocol.model, folder, dataset, tmp_path))
        ours.append(score(running.replay(plan, opts).records))
        misses = outside(ours[-2], ours[-1], theirs[-1])
        if not misses:
            break
    for run in ours:
        print(f"ours: {json.dumps({k: run[k] for k in ('requests_ok', 'tokens_out', *TOLERANCE)})}", file=sys.stderr)
        assert run["requests_ok"] == N
        assert run["tokens_out"] == sum(r.output_len for r in requests)
    for run in theirs:
        print(f"vLLM's: {json.dumps({k: run[k] for k in ('completed', 'total_output_tokens', *PEER.values())})}",
              file=sys.stderr)
        assert run["completed"] == N
        assert run["total_output_tokens"] == sum(r.output_len for r in requests)
    assert not misses, f"in {len(theirs)} runs of vLLM's client, the last: " + "; ".join(misses)


def outside(before: dict, after: dict, theirs: dict) -> list[str]:
    """The medians of vLLM's run outside the tolerance of the range our two runs around it span."""
    out = []
    for key, (rel, slack) in TOLERANCE.items():
        lo, hi = sorted((before[key], after[key]))
        peer = theirs[PEER[key]] / 1e3
        if not lo * (1 - rel) - slack <= peer <= hi * (1 + rel) + slack:
            out.append(f"{key}: vLLM's {peer * 1e3:.1f} ms outside ours {lo * 1e3:.1f}-{hi * 1e3:.1f} ms "
                       f"+- {rel:.0%} + {slack * 1e3:g} ms")
    return out
