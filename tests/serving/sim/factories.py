"""Builders for simulator tests: round-number latency models, tiny plans, step records of a known model."""
from __future__ import annotations

import numpy as np

from serving.sim.latency import LatencyModel
from serving.workload import TraceRequest


def flat_model(prefill: float = 0.1, decode: float = 0.01, host: float = 0.0, single_prefill: bool = False,
               per_row: float = 0.0) -> LatencyModel:
    """Fixed step costs, easy to add up by hand."""
    return LatencyModel.from_dict({"single_prefill": single_prefill,
                                   "prefill": {"compute": {"base": prefill}, "host": {"base": host}},
                                   "decode": {"compute": {"base": decode, "per_live_row": per_row},
                                              "host": {"base": host}}})


def req(i: int, prompt_words: int = 3, output_len: int = 4) -> TraceRequest:
    return TraceRequest(i, " ".join(["w"] * prompt_words), output_len, prompt_words)


def burst(n: int, prompt_words: int = 3, output_len: int = 4, gap: float = 0.0):
    return [(i * gap, req(i, prompt_words, output_len)) for i in range(n)]


DECODE_BASE = {1: 0.001, 4: 0.002, 16: 0.004}
PER_CTX, PER_ROW, HOST, PER_HOST_ROW = 2e-6, 5e-5, 3e-4, 2e-5


def prefill_cost(bucket, longest):
    return 0.002 * bucket + 1e-4 * bucket * longest + 5e-7 * bucket * longest ** 2


def synthetic_steps(noise=0.0, seed=0):
    """What /metrics/steps serves (tokens and context after the new token was appended), from the
    costs above, one run per bucket."""
    rng = np.random.default_rng(seed)
    steps, t = [], 0.0
    for bucket, base in DECODE_BASE.items():
        for longest in (5, 17, 65):
            for rows in range(1, bucket + 1):
                d = prefill_cost(bucket, longest) * (1 + noise * rng.standard_normal())
                steps.append({"kind": "prefill", "rows": rows, "bucket": bucket, "tokens": rows * (longest + 1),
                              "context": rows * (longest + 1), "start": t, "duration": d, "run": bucket})
                t += d + HOST
        for _ in range(300):
            rows = int(rng.integers(1, bucket + 1))
            ctx = int(rng.integers(rows * 5, rows * 300))
            d = base + PER_ROW * rows + PER_CTX * ctx
            d *= 1 + noise * rng.standard_normal()
            steps.append({"kind": "decode", "rows": rows, "bucket": bucket, "tokens": rows, "context": ctx + rows,
                          "start": t, "duration": d, "run": bucket})
            t += d + HOST + PER_HOST_ROW * rows
    return steps
