"""Builders for simulator tests: round-number latency models and tiny plans."""
from __future__ import annotations

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
