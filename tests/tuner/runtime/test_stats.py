"""tuner.runtime.stats against values worked out by hand."""
import math

import numpy as np
import pytest

from tuner.runtime.stats import bootstrap_median_diff, compare, mann_whitney_less, spread


def test_mann_whitney_exact_counts_the_arrangements():
    # 20 ways to pick x's 3 ranks of 6; U_x = #(x > y) = 1 here (4 > 3), and only U = 0 ({1,2,3})
    # and U = 1 ({1,2,4}) are as small: p = 2/20
    assert mann_whitney_less([1, 2, 4], [3, 5, 6]) == pytest.approx(0.1)
    assert mann_whitney_less([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1 / 252)
    assert mann_whitney_less([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert mann_whitney_less([], [1.0]) == 1.0


def test_mann_whitney_with_ties_is_the_corrected_normal_approximation():
    x, y = [1, 2, 2, 3], [2, 3, 4, 5]
    # U_x = #(x > y) + #(x == y) / 2 = (1) + (2 + 1) / 2 = 2.5; ties {2: 3, 3: 2} in the 8 pooled values
    n1, n2, n, u = 4, 4, 8, 2.5
    ties = (3 ** 3 - 3) + (2 ** 3 - 2)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2 + 0.5) / sigma                 # continuity correction towards the mean
    assert mann_whitney_less(x, y) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))


def test_bootstrap_interval_of_the_median_difference():
    assert bootstrap_median_diff([1, 1, 1], [3, 3, 3]) == (2.0, 2.0)
    lo, hi = bootstrap_median_diff([1, 2, 3], [10, 11, 12])
    assert 7 <= lo <= 9 <= hi <= 11                     # resampled medians: y* in 10..12, x* in 1..3
    assert bootstrap_median_diff([1, 2, 3], [10, 11, 12]) == (lo, hi)   # seeded: the same interval again
    assert all(math.isnan(v) for v in bootstrap_median_diff([1.0], [2.0, 3.0]))


def test_compare_flips_maximised_metrics():
    v = compare([10, 11, 12], [1, 2, 3], minimize=False, confidence=0.9)        # maximised: larger wins
    assert v.winner_better and v.p_value == pytest.approx(0.05) and v.ci[0] > 0
    v = compare([10, 11, 12], [1, 2, 3], minimize=True, confidence=0.9)
    assert not v.winner_better and v.p_value == pytest.approx(1.0) and v.ci[1] < 0


def test_spread():
    assert spread([3.0, 1.0, 2.0, float("nan")]) == {"median": 2.0, "min": 1.0, "max": 3.0, "iqr": 1.0,
                                                    "rel_spread": 1.0}
    assert all(math.isnan(v) for v in spread([]).values())
    rng = np.random.default_rng(0)
    a = rng.normal(10, 1, 101)
    assert spread(list(a))["iqr"] == pytest.approx(np.percentile(a, 75) - np.percentile(a, 25))
