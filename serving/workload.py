"""Types both layers share: a request of the workload and the timing record of its replay.

They live in ``serving`` because stacks replay requests and return records; ``tuner`` builds
the requests (tuner.workload) and scores the records (tuner.runtime.metrics).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

__all__ = ["TraceRequest", "RequestRecord", "Plan", "first_event_time"]


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
    """One request's timestamps (s from replay start); statistics come later (tuner.runtime.metrics,
    whose definitions are in docs/metrics.md).

    Each stream event is stamped when the client parses it: ``chunk_times`` holds one time per
    content event (a chunk carrying one token or several), ``token_times`` one per generated token
    (a token gets the time of the event that carried it: the per-token view).
    """
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
    chunk_times: list[float] = field(default_factory=list)   # last: the fields above keep their positions

    @property
    def ok(self) -> bool:
        return self.error is None and self.done is not None

    @property
    def events(self) -> list[float]:
        """Times of the content events: the chunks, or for a record that has none (a stack stamping
        one event per token, such as the simulator) the tokens."""
        return self.chunk_times or self.token_times

    @property
    def last_token(self) -> float | None:
        """When the last content event came (what E2E ends at), or ``done`` for an unstreamed answer."""
        events = self.events
        return events[-1] if events else self.done

    def add_chunk(self, t: float, n: int = 1) -> None:
        """One content event parsed at ``t`` carrying ``n`` tokens."""
        if self.first_token is None:
            self.first_token = t
        self.chunk_times.append(t)
        self.token_times.extend([t] * n)
        self.n_tokens += n

    def as_row(self) -> dict:
        row = asdict(self)
        row["token_times"] = ";".join(f"{t:.6f}" for t in self.token_times)
        row["chunk_times"] = ";".join(f"{t:.6f}" for t in self.chunk_times)
        return row


class Plan(list):
    """The requests of a replay in send order: ``(send offset s, TraceRequest)`` pairs.

    ``concurrency`` None is open loop: each request goes at its offset whatever the server
    does. ``concurrency`` N is closed loop (LMDeploy's profile, vLLM's ``--max-concurrency``):
    at most N requests are in flight, a request goes at its offset or when a slot frees,
    whichever is later (offsets all 0: the next one as soon as one finishes).
    """

    def __init__(self, items=(), concurrency: int | None = None):
        super().__init__(items)
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency >= 1 must hold, got {concurrency}")
        self.concurrency = concurrency

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Plan(out, self.concurrency) if isinstance(i, slice) else out

    def __repr__(self) -> str:
        return f"Plan({list.__repr__(self)}, concurrency={self.concurrency})"


def first_event_time(records: list[RequestRecord], holds: Callable[[float], bool]) -> float | None:
    """The earliest event time of ``records`` (a send, a token, a completion) at which ``holds`` is
    true, for a condition that once true stays true (bisected); None when it never holds. Where a
    live stop condition, polled as events arrive, would have ended a replay that ran to its end."""
    times = sorted({t for r in records for t in (r.sent, r.first_token, r.done, *r.token_times) if t is not None})
    if not times or not holds(times[-1]):
        return None
    lo, hi = 0, len(times) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(times[mid]):
            hi = mid
        else:
            lo = mid + 1
    return times[lo]
