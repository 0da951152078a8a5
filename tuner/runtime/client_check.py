"""Did the replay client keep up? Judged on every replay, so what is measured is never the client.

Two figures (docs/metrics.md): the send lag (a request sent after its scheduled time) and the
read lag (the client's event loop waking late, so answers wait unread and are stamped late).
A replay over either bound (``capacity.max_send_lag``, ``capacity.max_read_lag``) measured its
client: the trial is re-measured once (tuner.runtime.measure), then fails as ``client_overloaded``,
a FAIL trial that is never best and never exported (tuner.runtime.constraints).
A burst (every request due at once) has no schedule to keep: only its read lag is judged.
"""
from __future__ import annotations

import math
from typing import Any

from tuner.space.capacity import CapacitySpec

__all__ = ["CLIENT_OVERLOADED", "is_burst", "behind", "kept_up"]

CLIENT_OVERLOADED = "client_overloaded"


def is_burst(plan) -> bool:
    """Every request due at one instant: sending them takes time, and that is no lag."""
    return len(plan) > 1 and plan[0][0] == plan[-1][0] and getattr(plan, "concurrency", None) is None


def behind(metrics: dict[str, Any], spec: CapacitySpec, burst: bool = False) -> str | None:
    """Why the client of one replay fell behind (its figures over their bounds), or None."""
    why = []
    send = metrics.get("send_lag_p99", math.nan)
    if not burst and send > spec.max_send_lag:
        why.append(f"send lag p99 {send * 1e3:.1f} ms over {spec.max_send_lag * 1e3:g} ms (capacity.max_send_lag)")
    read = metrics.get("read_lag_p99", math.nan)
    if read > spec.max_read_lag:
        why.append(f"read lag p99 {read * 1e3:.1f} ms over {spec.max_read_lag * 1e3:g} ms (capacity.max_read_lag)")
    return "; ".join(why) or None


def kept_up(judged: list[tuple[dict[str, Any], bool]], spec: CapacitySpec) -> dict[str, Any]:
    """``client_kept_up`` over replays ``(metrics, burst)``: False when one fell behind, None when no
    replay had a figure to judge (nothing sent)."""
    known = [(m, b) for m, b in judged
             if not (b or math.isnan(m.get("send_lag_p99", math.nan))) or not math.isnan(m.get("read_lag_p99", math.nan))]
    if not known:
        return {"client_kept_up": None}
    return {"client_kept_up": all(behind(m, spec, b) is None for m, b in known)}
