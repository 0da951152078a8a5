"""Next-token choice per row: greedy, or temperature / top-k / top-p with a per-request seed."""
from __future__ import annotations

import numpy as np

from serving.engine.sequence import Sequence


def sample(logits: np.ndarray, seqs: list[Sequence], rngs: dict[int, np.random.Generator]) -> list[int]:
    out = []
    for row, seq in zip(logits, seqs):
        sp = seq.sampling
        if not sp.do_sample:
            out.append(int(np.argmax(row)))
            continue
        rng = rngs.setdefault(seq.seq_id, np.random.default_rng(sp.seed))
        scaled = row.astype(np.float64) / max(sp.temperature, 1e-5)
        k = min(max(sp.top_k, 1), scaled.size)
        top = np.argpartition(-scaled, k - 1)[:k]
        top = top[np.argsort(-scaled[top])]
        p = np.exp(scaled[top] - scaled[top[0]])
        p /= p.sum()
        keep = min(k, max(1, int(np.searchsorted(np.cumsum(p), sp.top_p) + 1)))
        p = p[:keep] / p[:keep].sum()
        out.append(int(top[rng.choice(keep, p=p)]))
    return out
