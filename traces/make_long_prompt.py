"""Regenerate traces/long_prompt_1500.jsonl: long prompts, short outputs (summarising, RAG, classifying).

  python traces/make_long_prompt.py [--n 1500] [--seed 0] [--to traces/long_prompt_1500.jsonl]

Written in the Mooncake/Dynamo form (lengths, no text: prompts are synthesized in the
stack's tokenizer when the trace is read): prompt lengths log-normal around 450 tokens
(128 to 900), outputs around 16 (1 to 64), so prompt + BOS + output stays under 1,024
tokens and the trace runs on the tiny embedded model (seq_length 1024) as on a 7B config.
A third of the prompts open with one of 8 shared 512-token documents (equal first
``hash_ids``: a prefix cache can reuse them). Timestamps are Poisson at 5 requests/s, for
``load.arrivals=trace``. Same seed, same file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.workload.formats import BLOCK_TOKENS  # noqa: E402
from tuner.runtime.writes import write_chunks  # noqa: E402

SHARED_DOCS, SHARED_SHARE, RATE = 8, 1 / 3, 5.0


def long_prompt_records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    plen = np.clip(np.round(rng.lognormal(np.log(450), 0.35, n)), 128, 900).astype(int)
    olen = np.clip(np.round(rng.lognormal(np.log(16), 0.6, n)), 1, 64).astype(int)
    times = np.concatenate([[0.0], np.cumsum(rng.exponential(1 / RATE, n - 1))])
    shared = rng.random(n) < SHARED_SHARE
    doc = rng.integers(0, SHARED_DOCS, n)
    next_id, out = SHARED_DOCS, []
    for i in range(n):
        blocks = -(-int(plen[i]) // BLOCK_TOKENS)
        ids = list(range(next_id, next_id + blocks))
        next_id += blocks
        if shared[i] and plen[i] > BLOCK_TOKENS:
            ids[0] = int(doc[i])
        out.append({"timestamp": int(round(times[i] * 1000)), "input_length": int(plen[i]),
                    "output_length": int(olen[i]), "hash_ids": ids})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--to", type=Path, default=ROOT / "traces" / "long_prompt_1500.jsonl")
    args = ap.parse_args()
    rows = long_prompt_records(args.n, args.seed)   # a rebuild replaces the shipped file: force
    write_chunks(args.to, (json.dumps(r) + "\n" for r in rows), force=True, key="--to")
    print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
