"""When requests are sent: arrival models of an open-loop replay.

  poisson   the default: first at 0, then exponential gaps of mean 1/X s; with ``round_gaps``
            (load.round_gaps) performance_serving's own draw, mean round(1/X, 2) s as
            test_serving_performance.py has it (at X >= 200 that is 0: every request at once;
            at X = 30 or 40 the rate is 33.3);
  gamma     gamma gaps of mean 1/X and coefficient of variation ``cv`` (cv 1 is Poisson,
            above 1 burstier, below 1 smoother; vLLM's ``--burstiness`` is 1/cv^2);
  constant  exactly 1/X apart;
  trace     the trace's own timestamps (tuner.workload.plan), ``speedup`` times faster.
"""
from __future__ import annotations

import numpy as np

MODELS = ("poisson", "gamma", "constant", "trace")


def arrival_offsets(n: int, qps: float, seed: int = 0, round_gaps: bool = False) -> np.ndarray:
    """Send offsets (s) of ``n`` requests: first at 0, then exponential gaps of mean 1/X (``round_gaps``:
    round(1/X, 2), performance_serving's)."""
    if qps <= 0:
        raise ValueError(f"qps > 0 must hold, got {qps}")
    mean = round(1.0 / qps, 2) if round_gaps else 1.0 / qps
    gaps = np.random.default_rng(seed).exponential(mean, size=max(n - 1, 0)) if mean > 0 else np.zeros(max(n - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])


def gamma_offsets(n: int, qps: float, cv: float, seed: int = 0) -> np.ndarray:
    """First at 0, then gamma gaps of mean 1/qps and coefficient of variation ``cv`` (shape 1/cv^2)."""
    if qps <= 0 or cv <= 0:
        raise ValueError(f"qps > 0 and cv > 0 must hold, got qps={qps}, cv={cv}")
    shape = 1.0 / cv ** 2
    gaps = np.random.default_rng(seed).gamma(shape, 1.0 / (qps * shape), size=max(n - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])


def constant_offsets(n: int, qps: float) -> np.ndarray:
    if qps <= 0:
        raise ValueError(f"qps > 0 must hold, got {qps}")
    return np.arange(n, dtype=float) / qps


def offsets(model: str, n: int, qps: float, seed: int = 0, cv: float | None = None,
            round_gaps: bool = False) -> np.ndarray:
    """Send offsets of ``n`` requests under a rate model (not ``trace``, which reads its own times)."""
    if model == "poisson":
        return arrival_offsets(n, qps, seed, round_gaps)
    if model == "gamma":
        return gamma_offsets(n, qps, 1.0 if cv is None else cv, seed)
    if model == "constant":
        return constant_offsets(n, qps)
    raise ValueError(f"arrivals must be one of {MODELS[:3]} here, got {model!r}")


def gap_cv(times) -> float:
    """Coefficient of variation of the gaps between sorted arrival times (burstiness; 1 = Poisson)."""
    gaps = np.diff(np.sort(np.asarray(times, dtype=float)))
    if gaps.size < 2 or gaps.mean() <= 0:
        return float("nan")
    return float(gaps.std() / gaps.mean())
