"""Fitting the latency model to the engine's step records (what ``tune calibrate`` measures).

Step records are what the embedded engine serves at /metrics/steps (kind, rows, bucket,
tokens, context, start, duration, arrivals, after_idle), each tagged with the ``run`` it
came from. Step durations give the compute terms, the gaps between back-to-back steps the
host terms (not a wait for the client's next burst): decode terms by non-negative least
squares (scipy.optimize.nnls), the prefill cost as a table of mean step times, outliers
beyond 6 robust sigmas left out of both.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from serving.sim.latency import DECODE_COMPUTE, HOST, PREFILL_COMPUTE, LatencyModel

__all__ = ["Fit", "fit", "fit_decode", "fit_prefill", "fit_terms", "mark_arrivals"]


@dataclass
class Fit:
    coef: dict[str, float]
    n: int
    r2: float
    rmse: float


def fit_terms(X: np.ndarray, y: np.ndarray, names: tuple[str, ...], trim: float = 6.0, floor: float = 1e-6) -> Fit:
    """NNLS, then once more without points beyond ``trim`` robust sigmas (GC pauses, a busy neighbour),
    never nearer than ``floor`` seconds (exact data leaves a robust sigma of float noise)."""
    if len(y) == 0:
        return Fit(dict.fromkeys(names, 0.0), 0, float("nan"), float("nan"))
    from scipy.optimize import nnls  # here, not at the top: scipy.optimize adds ~0.5 s to every `tune` start
    coef, _ = nnls(X, y)
    res = y - X @ coef
    dev = np.abs(res - np.median(res))   # about the median: outliers on one side shift the first fit
    keep = dev <= max(trim * 1.4826 * np.median(dev), floor)
    coef, _ = nnls(X[keep], y[keep])
    res = y[keep] - X[keep] @ coef
    var = float(np.var(y[keep]))
    r2 = 1.0 - float(np.mean(res ** 2)) / var if var > 0 else float("nan")
    return Fit({n: float(c) for n, c in zip(names, coef)}, int(keep.sum()), r2, float(np.sqrt(np.mean(res ** 2))))


def mark_arrivals(steps: list[dict]) -> list[dict]:
    """Add ``arrived_during``: requests the server took in while each step ran. The engine counts
    them on the step that queued them, the next one; their HTTP parsing and tokenising shared the
    GIL with the step in flight."""
    for a, b in itertools.pairwise(steps):
        a["arrived_during"] = b.get("arrivals", 0) if a.get("run") == b.get("run") else 0
    if steps:
        steps[-1]["arrived_during"] = 0
    return steps


def _steps_up(buckets: np.ndarray, keys: list[int]) -> np.ndarray:
    """Column j is 1 where the bucket is >= keys[j]: with coefficients >= 0 (NNLS), the base cost
    per bucket (their cumulative sum) can only grow with the bucket, as more padded rows are
    computed. One-hot columns let each bucket absorb its own run's noise (a slower minute of a
    shared CPU), which gave bucket 4 a lower cost than bucket 2."""
    return (buckets[:, None] >= np.array(keys)[None, :]).astype(float)


def _trimmed_mean(y: np.ndarray, trim: float = 6.0) -> float:
    mad = 1.4826 * np.median(np.abs(y - np.median(y)))
    return float(y[np.abs(y - np.median(y)) <= trim * mad].mean()) if mad > 0 else float(y.mean())


def fit_prefill(steps: list[dict]) -> tuple[Fit, dict[int, dict[int, float]]]:
    """Mean step time per (bucket, longest prompt): a table, since a padded numpy prefill is far
    from linear in its shape. Records are taken after the token was appended, so each prompt
    counts one token more than the step computed; every prompt of a burst has the same length."""
    groups: dict[tuple[int, int], list[float]] = {}
    for s in steps:
        if s["kind"] == "prefill":
            groups.setdefault((s["bucket"], round(s["tokens"] / s["rows"]) - 1), []).append(s["duration"])
    table: dict[int, dict[int, float]] = {}
    res = []
    for (b, t), ys in sorted(groups.items()):
        y = np.array(ys)
        table.setdefault(b, {})[t] = _trimmed_mean(y)
        res += list(y - table[b][t])
    r = np.array(res)
    y_all = np.array([v for ys in groups.values() for v in ys])
    r2 = 1 - float(np.mean(r ** 2)) / float(np.var(y_all)) if len(r) > 1 and np.var(y_all) > 0 else float("nan")
    rmse = float(np.sqrt(np.mean(r ** 2))) if len(r) else float("nan")
    return Fit(dict.fromkeys(PREFILL_COMPUTE, 0.0), len(r), r2, rmse), table


def fit_decode(steps: list[dict]) -> tuple[Fit, dict[int, float]]:
    """A base per bucket (non-decreasing in the bucket) plus per live row, per context token and
    per request that arrived while the step ran (``arrival_cost``; see :func:`mark_arrivals`).
    ``context`` is recorded after the new token was appended: one token per row comes off."""
    ss = [s for s in mark_arrivals(steps) if s["kind"] == "decode"]
    if not ss:
        return Fit(dict.fromkeys((*DECODE_COMPUTE, "arrival_cost"), 0.0), 0, float("nan"), float("nan")), {}
    bucket = np.array([s["bucket"] for s in ss])
    rows = np.array([s["rows"] for s in ss], float)
    keys = sorted(set(bucket.tolist()))
    X = np.column_stack([_steps_up(bucket, keys), rows, np.array([s["context"] for s in ss]) - rows,
                         [s["arrived_during"] for s in ss]])
    f = fit_terms(X, np.array([s["duration"] for s in ss]),
                  tuple(f"b{k}" for k in keys) + ("per_live_row", "per_context_token", "arrival_cost"))
    table = dict(zip(keys, np.cumsum([f.coef[f"b{k}"] for k in keys]).tolist()))
    f.coef = {n: f.coef.get(n, 0.0) for n in (*DECODE_COMPUTE, "arrival_cost")}
    return f, table


GAP_TERMS = ("base", "per_live_row")


def _gaps(steps: list[dict], kind: str, max_gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Host time after each ``kind`` step that was followed at once by another in the same run
    (not after the engine ran dry and waited for the client's next burst)."""
    X, y = [], []
    for a, b in itertools.pairwise(steps):
        gap = b["start"] - a["start"] - a["duration"]
        if a["kind"] == kind and a.get("run") == b.get("run") and not b.get("after_idle") and 0 <= gap < max_gap:
            X.append([1.0, a["rows"]])
            y.append(gap)
    return np.array(X).reshape(-1, 2), np.array(y)


def fit(steps: list[dict], delays: list[float] = ()) -> tuple[LatencyModel, dict[str, Fit]]:
    """The embedded engine's latency model from its step records and the lone requests' delays
    (client TTFT minus the prefill step, s), with each part's fit statistics."""
    (fp, tp), (fd, td) = fit_prefill(steps), fit_decode(steps)
    fits = {"prefill.compute": fp, "decode.compute": fd,
            "prefill.host": fit_terms(*_gaps(steps, "prefill"), GAP_TERMS),
            "decode.host": fit_terms(*_gaps(steps, "decode"), GAP_TERMS)}
    for part in ("prefill.host", "decode.host"):   # the engine's gap is per live row: it pads nothing on the host
        fits[part].coef = {n: fits[part].coef.get(n, 0.0) for n in HOST}
    half = max(float(np.median(delays)), 0.0) / 2 if len(delays) else 0.0
    decode = {n: v for n, v in fd.coef.items() if n in DECODE_COMPUTE}
    model = LatencyModel(prefill_compute=fp.coef, prefill_host=fits["prefill.host"].coef,
                         decode_compute=decode, decode_host=fits["decode.host"].coef,
                         prefill_table=tp, decode_by_bucket=td, arrival_delay=half, delivery_delay=half,
                         arrival_cost=fd.coef["arrival_cost"], single_prefill=False, name="embedded")
    return model, fits
