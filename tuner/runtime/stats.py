"""Small-sample statistics for noisy measurements, through scipy.stats.

Repeated replays of one configuration differ by a few percent on a shared machine, so a
winner is declared only when a rank test says it beats the runner-up: Mann-Whitney U
(scipy.stats.mannwhitneyu, method "auto": the exact null distribution while a sample has
8 values or fewer and no value is tied, the normal approximation with a tie correction
otherwise), and a percentile bootstrap interval of the median difference
(scipy.stats.bootstrap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Verdict", "bootstrap_median_diff", "compare", "mann_whitney_less", "spread"]


def spread(values: list[float]) -> dict[str, float]:
    """Median and dispersion of one configuration's repeats."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if a.size == 0:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "iqr": math.nan, "rel_spread": math.nan}
    med = float(np.median(a))
    from scipy import stats  # in each function: scipy.stats adds ~0.5 s to every `tune` start
    return {"median": med, "min": float(a.min()), "max": float(a.max()), "iqr": float(stats.iqr(a)),
            "rel_spread": float((a.max() - a.min()) / med) if med else math.nan}


def mann_whitney_less(x: list[float], y: list[float]) -> float:
    """One-sided p-value of H1 "x tends to be smaller than y" (1.0 when a sample is empty)."""
    if len(x) == 0 or len(y) == 0:
        return 1.0
    from scipy import stats
    return float(stats.mannwhitneyu(x, y, alternative="less", method="auto").pvalue)


def _median_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(y, axis=axis) - np.median(x, axis=axis)


def bootstrap_median_diff(x: list[float], y: list[float], level: float = 0.95, seed: int = 0,
                          n_boot: int = 5000) -> tuple[float, float]:
    """Percentile bootstrap interval of median(y) - median(x) (positive: x is smaller); NaN when a
    sample has fewer than two values, which a bootstrap cannot resample."""
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    from scipy import stats
    res = stats.bootstrap((np.asarray(x, float), np.asarray(y, float)), _median_diff, n_resamples=n_boot,
                          confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


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
