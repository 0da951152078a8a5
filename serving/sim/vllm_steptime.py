"""The step time of vLLM's engine core, as the vLLM surrogate charges it (stdlib only).

One engine step (schedule, forward, sample, update) costs

    base + per_prefill_token * prefill tokens + per_decode_seq * decode sequences
         + per_context_token * context tokens

seconds: prefill tokens are the step's prompt tokens (chunks included), decode sequences the
requests that get one new token, context tokens the KV tokens the step's requests attend to
(their computed tokens after the step). ``arrival_delay`` is the API process's share before a
request reaches the scheduler (HTTP, tokenising), ``delivery_delay`` the one after a step's token
(detokenising, the SSE chunk). Both processes share the host's cores with the engine on a CPU,
so the per-token costs fitted there include the API process's work per token.

This module is imported by the worker inside vLLM's interpreter (serving/sim/vllm_worker.py, as
a top-level module next to it) and by the fit in the tuner's own, so it imports nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

TERMS = ("base", "per_prefill_token", "per_decode_seq", "per_context_token")


@dataclass
class StepTime:
    base: float = 0.0
    per_prefill_token: float = 0.0
    per_decode_seq: float = 0.0
    per_context_token: float = 0.0
    arrival_delay: float = 0.0
    delivery_delay: float = 0.0

    def step(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        return (self.base + self.per_prefill_token * prefill_tokens + self.per_decode_seq * decode_seqs
                + self.per_context_token * context_tokens)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StepTime":
        """Every field must be a number >= 0 (a negative cost would let a step end before it began)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"step-time keys must be among {sorted(names)}, got {unknown}")
        bad = {k: v for k, v in data.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0}
        if bad:
            raise ValueError(f"step-time values must be numbers >= 0 (seconds), got {bad}")
        return cls(**{k: float(v) for k, v in data.items()})
