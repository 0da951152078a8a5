"""Request traces and performance_serving's arrival model.

A trace is JSON lines, one request each: ``{"prompt": str, "output_len": int}``, or
alpaca's ``{"instruction", "input", "output"}`` (prompt = instruction + ":" + input,
output_len = the output's word count, as the tiny tokenizer counts tokens).
Arrivals follow test_serving_performance.py: N = int(X * T) requests, started in
turn with exponential (Poisson) gaps of mean round(1 / X, 2) seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.workload import TraceRequest


def _record(i: int, obj: dict, path: Path) -> TraceRequest:
    if not isinstance(obj, dict):
        raise ConfigError(f"a JSON object per line must hold, found {type(obj).__name__}", path, f"line {i + 1}")
    if "prompt" in obj:
        prompt = obj["prompt"]
        out = obj.get("output_len")
    elif "instruction" in obj:
        prompt = f"{obj['instruction']}:{obj.get('input', '')}"
        out = obj.get("output_len", len(str(obj.get("output", "")).split()))
    else:
        raise ConfigError('each record needs "prompt" or "instruction"', path, f"line {i + 1}")
    if not isinstance(prompt, str) or not isinstance(out, int) or out < 1:
        raise ConfigError(f"output_len >= 1 (int) and a string prompt must hold, found {out!r}", path, f"line {i + 1}")
    return TraceRequest(i, prompt, out, len(prompt.split()))


def load_trace(path: str | Path) -> list[TraceRequest]:
    path = Path(path)
    if not path.exists():
        raise ConfigError("trace file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"UTF-8 JSON lines must hold; byte {err.start} is not UTF-8", path) from None
    except OSError as err:
        raise ConfigError(f"a readable trace file must hold; {err.strerror}", path) from None
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"not a JSON object: {err}", path, f"line {i + 1}") from None
        out.append(_record(len(out), obj, path))
    if not out:
        raise ConfigError("trace holds no requests", path)
    return out


def arrival_offsets(n: int, qps: float, seed: int = 0) -> np.ndarray:
    """Send offsets (s) of ``n`` requests: first at 0, then exponential gaps of mean round(1/X, 2)."""
    if qps <= 0:
        raise ValueError(f"qps > 0 must hold, got {qps}")
    mean = round(1.0 / qps, 2)
    gaps = np.random.default_rng(seed).exponential(mean, size=max(n - 1, 0)) if mean > 0 else np.zeros(max(n - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])


def schedule(trace: list[TraceRequest], qps: float, duration: float, seed: int = 0,
             limit: int | None = None) -> list[tuple[float, TraceRequest]]:
    """The first int(X*T) requests of the trace (cycled if short) with their send offsets."""
    n = int(qps * duration)
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise ValueError(f"X * T >= 1 must hold, got X={qps}, T={duration}")
    offsets = arrival_offsets(n, qps, seed)
    return [(float(offsets[i]), trace[i % len(trace)]) for i in range(n)]


_WORDS = ("give three tips for staying healthy describe the structure of an atom how can we reduce air "
          "pollution explain why the sky is blue write a short story about a robot who learns to paint "
          "summarize this article in two sentences translate the following sentence into french classify "
          "these animals list five ways to save water generate a poem about autumn leaves rewrite the text "
          "in a formal tone what is the capital of australia compare cats and dogs as pets").split()


def synthesize(n: int, seed: int = 0) -> list[dict]:
    """Alpaca-like records matching the contest set's lengths (prompt mean 20 / max 192 words,
    output mean 65 / median 46 / max 504), for shipping as a trace."""
    rng = np.random.default_rng(seed)
    plen = np.clip(np.round(rng.lognormal(np.log(15), 0.76, n)), 2, 192).astype(int)
    olen = np.clip(np.round(rng.lognormal(np.log(46), 0.84, n)), 1, 504).astype(int)
    return [{"prompt": " ".join(rng.choice(_WORDS, size=p)), "output_len": int(o)} for p, o in zip(plen, olen)]


def write_trace(records: list[dict], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in records))
