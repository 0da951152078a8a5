"""What a trace holds: request count, length percentiles, arrival rate and burstiness, prefix reuse.

Read in one streaming pass (lengths and times are kept as numbers, never the text).
Prefix reuse is the share of prompt tokens in blocks whose whole prefix an earlier
request already sent (what a prefix cache could serve): 512-token ``hash_ids`` blocks
where the trace has them, else blocks of 16 words of the prompt text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.workload.arrivals import gap_cv
from tuner.workload.formats import BLOCK_TOKENS
from tuner.workload.trace import Tally, order_note, records

WORD_BLOCK = 16
#: prefix blocks remembered for the reuse share; past this, later requests are not scored
REUSE_BLOCKS = 4_000_000
PCTS = (50, 90, 99)


@dataclass
class TraceStats:
    tally: Tally
    prompt: np.ndarray
    output: np.ndarray
    times: np.ndarray | None          # arrival times (s from the first), None when the trace has none
    reused: float                     # prompt tokens (or words) in blocks seen before
    scored: float                     # prompt tokens (or words) looked at for reuse
    reuse_unit: str
    reuse_requests: int               # requests scored for reuse (all, unless REUSE_BLOCKS was reached)

    @property
    def requests(self) -> int:
        return len(self.prompt)

    @property
    def reuse_share(self) -> float:
        return self.reused / self.scored if self.scored else float("nan")

    @property
    def rate(self) -> float:
        if self.times is None or len(self.times) < 2 or np.ptp(self.times) <= 0:
            return float("nan")
        return (len(self.times) - 1) / float(np.ptp(self.times))

    @property
    def burstiness(self) -> float:
        return float("nan") if self.times is None else gap_cv(self.times)


class _Prefixes:
    """Chained block hashes seen so far (a block counts as reused only if its whole prefix was sent)."""

    def __init__(self):
        self.seen: set[bytes] = set()
        self.full = False

    def score(self, blocks: list[tuple[object, int]]) -> float:
        prev, reused = b"", 0.0
        for block, size in blocks:
            prev = hashlib.blake2b(prev + repr(block).encode(), digest_size=8).digest()
            if prev in self.seen:
                reused += size
            elif len(self.seen) < REUSE_BLOCKS:
                self.seen.add(prev)
            else:
                self.full = True
        return reused


def trace_stats(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None,
                meter: Callable[[], None] | None = None) -> TraceStats:
    tally = Tally()
    prompt, output, times = [], [], []
    prefixes, reused, scored, scored_requests, unit = _Prefixes(), 0.0, 0.0, 0, ""
    for rec, p, o in records(path, fmt, counter, tally, meter=meter):
        prompt.append(p)
        output.append(o)
        times.append(rec.timestamp)
        if prefixes.full:
            continue
        if rec.hash_ids:
            unit = f"{BLOCK_TOKENS}-token hash_ids blocks"
            ids = rec.hash_ids[: -(-p // BLOCK_TOKENS)]
            blocks = [(h, min(BLOCK_TOKENS, p - k * BLOCK_TOKENS)) for k, h in enumerate(ids)]
            total = p
        elif rec.prompt is not None:
            unit = unit or f"{WORD_BLOCK}-word blocks of the prompt text"
            words = rec.prompt.split()
            blocks = [(tuple(words[i:i + WORD_BLOCK]), len(words[i:i + WORD_BLOCK]))
                      for i in range(0, len(words), WORD_BLOCK)]
            total = len(words)
        else:
            continue                  # lengths only, no block ids: no prefix is known to be shared
        reused += prefixes.score(blocks)
        scored += total
        scored_requests += 1
    t = None
    if all(x is not None for x in times):
        t = np.asarray(times, dtype=float)
        note = order_note(t)
        if note:
            tally.notes.append(note)     # the figures below are of the sorted times, as a study replays them
        t -= t.min()
    return TraceStats(tally, np.asarray(prompt), np.asarray(output), t, reused, scored, unit or "none",
                      scored_requests)


def histogram(values: np.ndarray, bins: int = 12, width: int = 40, log: bool = False) -> list[str]:
    """Text bars, one per bin (``log``: bins spaced by powers, for long-tailed lengths)."""
    v = np.asarray(values, dtype=float)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return [f"{lo:>10.4g}  {'█' * width} {len(v)}"]
    edges = np.geomspace(max(lo, 1.0), hi, bins + 1) if log and lo >= 0 else np.linspace(lo, hi, bins + 1)
    edges[0] = min(edges[0], lo)
    counts, edges = np.histogram(v, edges)
    top = counts.max()
    return [f"{a:>10.4g} – {b:<10.4g}{'█' * round(width * c / top):<{width}} {c}"
            for a, b, c in zip(edges[:-1], edges[1:], counts)]


def describe(stats: TraceStats, bars: bool = True) -> str:
    q = lambda a: "  ".join(f"p{p} {np.percentile(a, p):.0f}" for p in PCTS) + f"  max {a.max()}  mean {a.mean():.1f}"
    lines = [f"trace {stats.tally.describe()}",
             f"requests        {stats.requests}",
             f"prompt tokens   {q(stats.prompt)}",
             f"output tokens   {q(stats.output)}"]
    if stats.times is None:
        lines.append("arrivals        no timestamps in the trace (the study's load section draws them)")
    else:
        span = float(np.ptp(stats.times))
        lines.append(f"arrivals        {stats.rate:.4g} req/s over {span:.4g} s; burstiness (cv of gaps, 1 = Poisson) "
                     f"{stats.burstiness:.2f}")
    if stats.scored:
        part = "" if stats.reuse_requests == stats.requests else f" (first {stats.reuse_requests} requests)"
        lines.append(f"prefix reuse    {100 * stats.reuse_share:.1f}% of prompt tokens in {stats.reuse_unit} "
                     f"an earlier request sent{part}")
    else:
        lines.append("prefix reuse    unknown (lengths only, no block ids)")
    if bars:
        lines += ["", "prompt tokens", *histogram(stats.prompt, log=True), "", "output tokens",
                  *histogram(stats.output, log=True)]
        if stats.times is not None and len(stats.times) > 1 and np.ptp(stats.times) > 0:
            lines += ["", "arrivals over time (requests per bin)", *histogram(stats.times, bins=12)]
    return "\n".join(lines)
