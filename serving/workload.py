"""Types both layers share: a request of the workload and the timing record of its replay.

They live in ``serving`` because stacks replay requests and return records; ``tuner`` builds
the requests (tuner.workload) and scores the records (tuner.runtime.metrics).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["TraceRequest", "RequestRecord"]


@dataclass(frozen=True)
class TraceRequest:
    index: int
    prompt: str
    output_len: int
    prompt_len: int       # tokens of the prompt as the trace's tokenizer counts them (BOS not included)

    @property
    def total_len(self) -> int:
        return self.prompt_len + 1 + self.output_len


@dataclass
class RequestRecord:
    """One request's timestamps (s from replay start); statistics come later (tuner.runtime.metrics)."""
    index: int
    prompt_len: int
    output_len: int                     # tokens asked for (max_new_tokens)
    scheduled: float                    # planned send offset, s from replay start
    sent: float | None = None
    first_token: float | None = None
    done: float | None = None
    token_times: list[float] = field(default_factory=list)
    n_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None            # why the request failed; None when it succeeded

    @property
    def ok(self) -> bool:
        return self.error is None and self.done is not None

    def as_row(self) -> dict:
        row = asdict(self)
        row["token_times"] = ";".join(f"{t:.6f}" for t in self.token_times)
        return row
