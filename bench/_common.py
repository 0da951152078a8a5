"""Shared bits of the bench scripts: project import path, percentiles, aligned tables."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def pct(values, p: float) -> float:
    """p-th percentile (linear), NaN for no values; numpy-free so the client loop stays lean."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = (len(vals) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def median(values) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def table(head: list[str], rows: list[list]) -> None:
    cells = [[str(x) for x in head]] + [[f"{x:.3g}" if isinstance(x, float) else str(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for r in cells:
        print("  ".join(x.rjust(w) for x, w in zip(r, widths)))
