"""Small-sample statistics for noisy measurements, numpy only (scipy is not a dependency).

Repeated replays of one configuration differ by a few percent on a shared machine, so a
winner is declared only when a rank test says it beats the runner-up: Mann-Whitney U,
exact over all relabellings for small samples (5 vs 5 is 252 of them), Monte Carlo beyond.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 200_000  # relabellings enumerated exactly; more are sampled


def spread(values: list[float]) -> dict[str, float]:
    """Median and dispersion of one configuration's repeats."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if a.size == 0:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "iqr": math.nan, "rel_spread": math.nan}
    med = float(np.median(a))
    q1, q3 = np.percentile(a, [25, 75])
    return {"median": med, "min": float(a.min()), "max": float(a.max()), "iqr": float(q3 - q1),
            "rel_spread": float((a.max() - a.min()) / med) if med else math.nan}


def _u_stat(pooled_ranks: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """U of the sample at positions ``idx`` (rows) within the pooled ranks."""
    n = idx.shape[-1]
    return pooled_ranks[idx].sum(axis=-1) - n * (n + 1) / 2


def _ranks(a: np.ndarray) -> np.ndarray:
    """Mid-ranks (ties share the average rank), 1-based."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=float)
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tied = a == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def mann_whitney_less(x: list[float], y: list[float], seed: int = 0, n_mc: int = 20_000) -> float:
    """One-sided p-value of H1 "x tends to be smaller than y" (Mann-Whitney U, permutation null)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size == 0 or y.size == 0:
        return 1.0
    pooled = np.concatenate([x, y])
    ranks = _ranks(pooled)
    n = x.size
    observed = _u_stat(ranks, np.arange(n))
    if math.comb(pooled.size, n) <= EXACT_LIMIT:
        idx = np.array(list(itertools.combinations(range(pooled.size), n)))
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_mc, pooled.size)), axis=1)[:, :n]
    null = _u_stat(ranks, idx)
    return float(np.mean(null <= observed + 1e-9))


def bootstrap_median_diff(x: list[float], y: list[float], level: float = 0.95, seed: int = 0,
                          n_boot: int = 5000) -> tuple[float, float]:
    """Percentile bootstrap interval of median(y) - median(x) (positive: x is smaller)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bx = np.median(rng.choice(x, (n_boot, x.size)), axis=1)
    by = np.median(rng.choice(y, (n_boot, y.size)), axis=1)
    lo, hi = np.percentile(by - bx, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


@dataclass
class Verdict:
    winner_better: bool      # the best beats the runner-up at the stated confidence
    p_value: float
    ci: tuple[float, float]  # median(runner-up) - median(best), in the metric's unit (sign: better > 0)
    confidence: float


def compare(best: list[float], runner_up: list[float], minimize: bool, confidence: float) -> Verdict:
    """Does ``best`` beat ``runner_up``? Samples are flipped for maximised metrics."""
    sign = 1.0 if minimize else -1.0
    b = [sign * v for v in best]
    r = [sign * v for v in runner_up]
    p = mann_whitney_less(b, r)
    lo, hi = bootstrap_median_diff(b, r, confidence)
    return Verdict(p <= 1 - confidence, p, (lo, hi), confidence)
