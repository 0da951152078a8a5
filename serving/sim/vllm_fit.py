"""Fitting the vLLM surrogate's step time (serving/sim/vllm_steptime.py) to per-request timings.

Source: the per-request timings (RequestRecord) of controlled replays against a real vLLM
(tuner/tools/calibrate_vllm.py), not vLLM's per-iteration log or its /metrics histograms. Why:
vLLM v1 logs throughput every few seconds, not each step, and its histograms pool every step
of a run into buckets, so neither says what one step of a known shape cost; the records are what
every replay already keeps, their shapes are set by the replay (one request alone, or N equal
requests at once), and they see what a user sees, the API process's share included.

Two kinds of observation, each a row of a non-negative least squares (scipy.optimize.nnls):
- a lone request's TTFT: arrival delay + one prefill step of its L prompt tokens (context L)
  + delivery delay;
- a burst's makespan (first send to last completion, what ``total_time`` is): N requests of
  L prompt and O output tokens sent at once, i.e. the delays, ceil(N L / budget) prefill steps,
  then O - 1 decode steps of N sequences whose context grows by N tokens a step.
Inter-token times are not used: under load vLLM's API process sends a request's tokens in a few
chunks, sometimes one, so first-to-last spans say little; a makespan is what the tuner scores.
The two delays are one column (only their sum is seen); it is split evenly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.sim.fit import fit_terms
from serving.sim.vllm_steptime import TERMS, StepTime
from serving.workload import RequestRecord

COLUMNS = (*TERMS, "delay")


@dataclass
class Observation:
    kind: str            # "ttft" (a lone request) or "makespan" (a burst sent at once)
    seqs: int            # requests in the burst (1 for a lone one)
    prompt: int          # prompt tokens of each
    output: int          # output tokens of each
    seconds: float
    budget: int = 0      # max_num_batched_tokens of the server (0: no limit)

    def row(self) -> list[float]:
        n, L, O = self.seqs, self.prompt, self.output
        if self.kind == "ttft":
            return [1.0, L, 0.0, L, 1.0]
        total = n * L
        chunks = -(-total // self.budget) if self.budget else 1
        prefill_context = sum(min(k * self.budget, total) for k in range(1, chunks + 1)) if self.budget else total
        decode_context = n * ((O - 1) * L + O * (O - 1) / 2)
        return [chunks + O - 1, total, n * (O - 1), prefill_context + decode_context, 1.0]


def observations(records: list[RequestRecord], budget: int = 0) -> list[Observation]:
    """Rows from one replay of requests sent at once, all of one shape: its makespan, and each
    request's TTFT when it was alone. None when a request failed (the shape would be wrong)."""
    if not records or not all(r.ok and r.sent is not None for r in records):
        return []
    r0 = records[0]
    span = max(r.done for r in records) - min(r.sent for r in records)
    out = [Observation("makespan", len(records), r0.prompt_len, r0.output_len, span, budget)]
    if len(records) == 1:
        out.append(Observation("ttft", 1, r0.prompt_len, r0.output_len, r0.first_token - r0.sent, budget))
    return out


def fit_steptime(obs: list[Observation]) -> tuple[StepTime, dict[str, float]]:
    """The step-time model (least relative error) and the fit's n, R^2 and RMSE (s) over all observations."""
    if len(obs) < len(COLUMNS):
        raise ValueError(f"at least {len(COLUMNS)} observations must be given to fit {len(COLUMNS)} terms, "
                         f"got {len(obs)}")
    X = np.array([o.row() for o in obs], float)
    y = np.array([o.seconds for o in obs], float)
    if (y <= 0).any():
        raise ValueError(f"observed seconds > 0 must hold, got {y[y <= 0].tolist()}")
    # relative errors: a 0.2 s lone request counts as much as a 6 s burst (the tuner compares ratios)
    f = fit_terms(X / y[:, None], np.ones_like(y), COLUMNS)
    res = X @ np.array([f.coef[c] for c in COLUMNS]) - y
    f.rmse = float(np.sqrt(np.mean(res ** 2)))
    f.r2 = 1.0 - float(np.mean(res ** 2)) / float(np.var(y)) if np.var(y) > 0 else float("nan")
    c = f.coef
    st = StepTime(**{k: c[k] for k in TERMS}, arrival_delay=c["delay"] / 2, delivery_delay=c["delay"] / 2)
    return st, {"n": float(f.n), "r2": f.r2, "rmse": f.rmse}
