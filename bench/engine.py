"""Embedded engine throughput by decode batch, and block manager ops/s.

    python bench/engine.py [--config configs/llama/tiny_llama_pa.yaml] [--requests 128] [--output 96]

Requests are all queued at once (a saturated server), so the figure is the
engine's capacity at each decode batch, without HTTP. Decode-only tokens/s
leaves out the prefill steps, which do not depend on the decode batch.
"""
from __future__ import annotations

import os

# as the embedded stack does for its server process (engine_config.threads, default 1)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses
import time
from pathlib import Path

from _common import run_recorded
from serving.config.schema import load_serving_yaml
from serving.engine.settings import engine_settings
from serving.engine.block_manager import BlockManager
from serving.engine.engine import LLMEngine
from serving.engine.sequence import SamplingParams, Sequence

ROOT = Path(__file__).resolve().parents[1]


def engine_run(settings, batch: int, n: int, prompt: int, output: int) -> dict:
    s = dataclasses.replace(settings, decode_batch_size=(batch,), prefill_batch_size=(8,),
                            num_blocks=n * -(-(prompt + output + 1) // settings.block_size) + 1)
    eng = LLMEngine(s)
    words = " ".join(["tell me about paged attention"] * (prompt // 5 + 1)).split()[:prompt]
    for _ in range(n):
        eng.add_request(eng.tokenizer.encode(" ".join(words)), SamplingParams(max_new_tokens=output, ignore_eos=True))
    t0 = time.perf_counter()
    while eng.has_work():
        eng.step()
    wall = time.perf_counter() - t0
    dec = [r for r in eng.steps if r.kind == "decode"]
    dec_time = sum(r.duration for r in dec)
    return {"batch": batch, "tokens": eng.tokens_generated, "wall_s": wall, "tok_s": eng.tokens_generated / wall,
            "decode_tok_s": sum(r.rows for r in dec) / dec_time, "ms_per_decode_step": 1e3 * dec_time / len(dec)}


def block_ops(num_blocks: int = 4096, block_size: int = 16, rounds: int = 20000) -> float:
    """allocate + 8 appends + deallocate cycles per second, counted as 10 ops each."""
    bm = BlockManager(num_blocks, block_size)
    seqs = [Sequence(list(range(3, 3 + 40))) for _ in range(64)]
    t0 = time.perf_counter()
    for i in range(rounds):
        seq = seqs[i % 64]
        bm.allocate(seq)
        for _ in range(8):
            seq.output_ids.append(5)
            bm.may_append(seq)
        bm.deallocate(seq)
        del seq.output_ids[:]
    return rounds * 10 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/llama/tiny_llama_pa.yaml"))
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=20)
    ap.add_argument("--output", type=int, default=96)
    ap.add_argument("--batches", default="1,8,32,128")
    args = ap.parse_args()
    settings = engine_settings(load_serving_yaml(args.config))
    d = settings.dims
    print(f"model: hidden {d.hidden_size}, layers {d.num_layers}, heads {d.num_heads}/{d.num_kv_heads} kv, "
          f"vocab {d.vocab_size}, backend {settings.backend}; {args.requests} requests x "
          f"({args.prompt} prompt + {args.output} output) tokens")
    print(f"{'decode batch':>12} {'tokens/s':>10} {'decode tok/s':>13} {'ms/decode step':>15} {'wall s':>8}")
    rows = [engine_run(settings, int(b), args.requests, args.prompt, args.output) for b in args.batches.split(",")]
    for r in rows:
        print(f"{r['batch']:>12} {r['tok_s']:>10.0f} {r['decode_tok_s']:>13.0f} {r['ms_per_decode_step']:>15.2f} "
              f"{r['wall_s']:>8.2f}")
    print("throughput vs batch 1: " + ", ".join(f"b{r['batch']} x{r['tok_s'] / rows[0]['tok_s']:.2f}" for r in rows))
    print(f"block manager: {block_ops():,.0f} ops/s (allocate, append, deallocate)")


if __name__ == "__main__":
    raise SystemExit(run_recorded("engine", main))
