"""Before the first trial: how many of the plan's requests are longer than the stack's base
config allows (seq_length, max_model_len, its KV pool), and how to leave them out.

A long-context trace (Mooncake, Azure, BurstGPT) against a 4096-token base config makes every
trial that keeps those limits fail ``config_rejected``; saying so once, before the study
spends its budget, is the point. The stack's own pre-launch rules are asked (``breaks(n)``:
the rules a request of n tokens breaks), so every stack's limits are covered. A rule a
one-token request breaks too is not a length limit and is left to the trial to report.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from serving.workload import Plan

#: the ``total_len`` of the shortest request there is (a 1-token prompt, BOS, 1 output token)
TINY = 3


def limits_note(plan: Plan, breaks: Callable[[int], list[str]], load=None) -> str | None:
    """One line when some planned requests break the base config's length rules (None when none do);
    ``breaks(n)`` takes a request's ``total_len`` (prompt + BOS + output), as ``Stack.check`` does."""
    lengths = np.array([r.total_len for _, r in plan], dtype=np.int64)
    if not len(lengths):
        return None
    floor = len(breaks(TINY))
    over_at = lambda n: len(breaks(n)) > floor      # noqa: E731 - rules only get broken as requests grow
    longest = int(lengths.max())
    if not over_at(longest):
        return None
    uniq = np.unique(lengths)
    lo, hi = 0, len(uniq) - 1      # the first length the trace holds that breaks one
    while lo < hi:
        mid = (lo + hi) // 2
        if over_at(int(uniq[mid])):
            hi = mid
        else:
            lo = mid + 1
    first = int(uniq[lo])
    over = int(np.count_nonzero(lengths >= first))
    ok, bad = (int(uniq[lo - 1]) if lo else TINY), first     # the exact limit lies between: what max_tokens
    while bad - ok > 1:                                       # to suggest, whatever lengths the trace holds
        mid = (ok + bad) // 2
        if over_at(mid):
            bad = mid
        else:
            ok = mid
    broken = breaks(longest)
    rules = "; ".join([r for r in broken if str(longest) in r] or broken)    # the rules that name the length
    already = f" (load.max_tokens={load.max_tokens} is set)" if load is not None and load.max_tokens else ""
    # the stack's rules count BOS too (TraceRequest.total_len); load.max_tokens is prompt + output
    return (f"preflight: {over} of {len(lengths)} planned requests (prompt + output {first - 1} to {longest - 1} "
            f"tokens) exceed the base config's limits: {rules}. Every trial that keeps these limits is rejected "
            f"(config_rejected); leave those requests out with load.max_tokens={ok - 1}{already}, or raise "
            f"the limits in the base config or the search space")
