"""Before the first trial: how many of the plan's requests are longer than the stack's base
config allows (seq_length, max_model_len, its KV pool), and how to leave them out.

A long-context trace (Mooncake, Azure, BurstGPT) against a 4096-token base config makes every
trial that keeps those limits fail ``config_rejected``; saying so once, before the study
spends its budget, is the point. The stack's own pre-launch rules are asked (``breaks(n)``:
the rules a request of n tokens breaks), so every stack's limits are covered.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from serving.workload import Plan


def _rules(breaks: Callable[[int], list[str]], n: int) -> set[str]:
    """The rules broken at length ``n``, with the length written as N (so they compare across lengths)."""
    return {r.replace(f"{n:,}", "N").replace(str(n), "N") for r in breaks(n)}


def limits_note(plan: Plan, breaks: Callable[[int], list[str]], load=None) -> str | None:
    """One line when some planned requests break the base config's length rules (None when none do);
    ``breaks(n)`` takes a request's ``total_len`` (prompt + BOS + output), as ``Stack.check`` does."""
    lengths = np.array([r.total_len for _, r in plan], dtype=np.int64)
    if not len(lengths):
        return None
    shortest, longest = int(lengths.min()), int(lengths.max())
    floor = _rules(breaks, shortest)
    if not _rules(breaks, longest) - floor:
        return None
    uniq = np.unique(lengths)
    lo, hi = 0, len(uniq) - 1      # rules only get broken as requests grow: the first length that breaks one
    while lo < hi:
        mid = (lo + hi) // 2
        if _rules(breaks, int(uniq[mid])) - floor:
            hi = mid
        else:
            lo = mid + 1
    first = int(uniq[lo])
    over = int(np.count_nonzero(lengths >= first))
    ok, bad = int(uniq[lo - 1]) if lo else shortest, first     # the exact limit lies between: what max_tokens
    while bad - ok > 1:                                         # to suggest, whatever lengths the trace holds
        mid = (ok + bad) // 2
        if _rules(breaks, mid) - floor:
            bad = mid
        else:
            ok = mid
    rules = "; ".join(r for r in breaks(longest) if r.replace(str(longest), "N") not in floor)
    already = f" (load.max_tokens={load.max_tokens} is set)" if load is not None and load.max_tokens else ""
    # the stack's rules count BOS too (TraceRequest.total_len); load.max_tokens is prompt + output
    return (f"preflight: {over} of {len(lengths)} planned requests (prompt + output {first - 1} to {longest - 1} "
            f"tokens) exceed the base config's limits: {rules}. Every trial that keeps these limits is rejected "
            f"(config_rejected); leave those requests out with load.max_tokens={ok - 1}{already}, or raise "
            f"the limits in the base config or the search space")
