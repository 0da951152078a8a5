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
- a request's mean inter-token time in a burst of N requests decoding together, prompt L and
  output O: one decode step of N sequences over about N * (L + O / 2) context tokens.
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
    kind: str            # "ttft" (a lone request) or "itl" (a request of a burst)
    seqs: int            # requests decoding together (1 for a lone one)
    prompt: int          # prompt tokens
    output: int          # output tokens
    seconds: float

    def row(self) -> list[float]:
        if self.kind == "ttft":
            return [1.0, self.prompt, 0.0, self.prompt, 1.0]
        return [1.0, 0.0, self.seqs, self.seqs * (self.prompt + self.output / 2), 0.0]


def observations(records: list[RequestRecord], seqs: int, lone: bool) -> list[Observation]:
    """Rows from one replay's records: every successful request's TTFT when it was ``lone``, and its
    mean inter-token time (done - first token over the tokens after the first) when it had two tokens
    or more. Coalesced chunks (vLLM under load) do not bias the mean: it spans first to last."""
    out = []
    for r in records:
        if not r.ok or r.first_token is None or r.sent is None:
            continue
        if lone:
            out.append(Observation("ttft", 1, r.prompt_len, r.output_len, r.first_token - r.sent))
        if r.n_tokens >= 2 and r.done > r.first_token:
            out.append(Observation("itl", seqs, r.prompt_len, r.output_len, (r.done - r.first_token) / (r.n_tokens - 1)))
    return out


def fit_steptime(obs: list[Observation]) -> tuple[StepTime, dict[str, float]]:
    """The step-time model and the fit's n, R^2 and RMSE (s)."""
    if len(obs) < len(COLUMNS):
        raise ValueError(f"at least {len(COLUMNS)} observations must be given to fit {len(COLUMNS)} terms, "
                         f"got {len(obs)}")
    X = np.array([o.row() for o in obs], float)
    y = np.array([o.seconds for o in obs], float)
    f = fit_terms(X, y, COLUMNS)
    c = f.coef
    st = StepTime(**{k: c[k] for k in TERMS}, arrival_delay=c["delay"] / 2, delivery_delay=c["delay"] / 2)
    return st, {"n": float(f.n), "r2": f.r2, "rmse": f.rmse}
