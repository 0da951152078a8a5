"""Scores from per-request records, computed afterwards, never in the HTTP loop.

What each figure means (TTFT, TPOT, ITL, E2E, send and read lag, the phase times) is defined in
one place, docs/metrics.md; the code here follows it.
"""
from __future__ import annotations

import math

import numpy as np

from serving.workload import RequestRecord

from tuner.space.metric_names import METRICS, PCTS, USAGE_SUFFIXES, is_known_metric, known_metrics_text  # noqa: F401


def records_frame(records: list[RequestRecord]) -> "pd.DataFrame":
    import pandas as pd  # here: pandas adds ~0.4 s to every `tune` start, and bad input never scores
    return pd.DataFrame([r.as_row() for r in records])


def _pcts(prefix: str, values) -> dict[str, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return {f"{prefix}_p{p}": float("nan") for p in PCTS} | {f"{prefix}_mean": float("nan")}
    out = {f"{prefix}_p{p}": float(np.percentile(arr, p)) for p in PCTS}
    out[f"{prefix}_mean"] = float(arr.mean())
    return out


def read_lag_figures(read_lags: list[float] | None) -> dict[str, float]:
    """The replay client's read lag (its loop-lag samples): percentiles and max; NaN without samples
    (a replay with no client of its own, the simulator's: not measured, so not judged)."""
    return _pcts("read_lag", read_lags or []) | {"read_lag_max": float(max(read_lags)) if read_lags else float("nan")}


def score(records: list[RequestRecord], service_times: dict[int, float] | None = None,
          read_lags: list[float] | None = None) -> dict[str, float]:
    """Exec Time (first send to last completion), rates, latency percentiles, failures.

    ``service_times`` (request index -> its unloaded service time) adds the
    arrival-bound lower limit: the last send plus that request's own service time.
    ``read_lags`` (the replay client's loop-lag samples) adds the read-lag figures.
    """
    df = records_frame(records)
    ok = df[df["error"].isna() & df["done"].notna()]
    sent = df["sent"].dropna()
    m: dict[str, float] = {"requests": float(len(df)), "requests_ok": float(len(ok)),
                           "requests_failed": float(len(df) - len(ok))}
    # the client's figure: known once anything was sent, answered or not
    m |= _pcts("send_lag", (df["sent"] - df["scheduled"]).dropna())
    m |= read_lag_figures(read_lags)
    if len(ok) == 0 or sent.empty:
        m["total_time"] = float("nan")
        return m
    start, end = float(sent.min()), float(ok["done"].max())
    total = end - start
    m["total_time"] = total
    m["throughput_rps"] = len(ok) / total if total > 0 else float("nan")
    m["tokens_per_s"] = float(ok["n_tokens"].sum()) / total if total > 0 else float("nan")
    m["tokens_out"] = float(ok["n_tokens"].sum())
    good = [r for r in records if r.ok]
    m |= _pcts("ttft", [r.first_token - r.sent for r in good if r.first_token is not None])
    m |= _pcts("e2e", [r.last_token - r.sent for r in good])
    m |= _pcts("tpot", [(r.last_token - r.first_token) / (r.n_tokens - 1) for r in good
                        if r.n_tokens > 1 and r.first_token is not None])
    m |= _pcts("itl", [b - a for r in good for a, b in zip(r.events, r.events[1:])])
    if service_times:
        last = df.loc[df["sent"].idxmax()]
        bound = float(last["sent"]) - start + service_times.get(int(last["index"]), 0.0)
        m["arrival_bound"] = bound
        m["efficiency"] = bound / total if total > 0 else float("nan")
    return m


def energy(usage: dict[str, float], tokens_out: float) -> dict[str, float]:
    """Energy the accelerator drew during the replay (the power probes' ``_joules``) and per output
    token; nothing when no probe reports power."""
    joules = [v for k, v in usage.items() if k.endswith("_joules")]
    if not joules:
        return {}
    total = float(sum(joules))
    return {"energy_j": total, "energy_j_per_token": total / tokens_out if tokens_out else float("nan")}
