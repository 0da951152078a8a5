"""One timing record per request: timestamps only, statistics come later (tuner.metrics)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RequestRecord:
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
