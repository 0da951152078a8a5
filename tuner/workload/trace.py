"""Request traces: records of any known format (tuner.workload.formats) as TraceRequests.

Lengths are tokens of the stack's tokenizer (``counter``; None = the word count the
embedded engine's tokenizer gives): a prompt given as text is counted, a prompt given as
a length is synthesized to exactly that many tokens (tuner.workload.synth), an output
given as text is counted. Records are produced lazily, so a plan built from a million-
record trace holds only the records it schedules.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.tokenizers import counter_name, word_counter
from serving.workload import Plan, TraceRequest
from tuner.workload import formats
from tuner.workload.arrivals import arrival_offsets
from tuner.workload.formats import RawRecord, Skipped
from tuner.workload.synth import PromptSynth


@dataclass
class Tally:
    """What reading a trace found: its format, the counter, records kept and skipped (by reason)."""
    path: str = ""
    format: str = ""
    counter: str = ""
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    synthesized: int = 0         # prompts made up to a given length

    def describe(self) -> str:
        skip = "".join(f", {n} skipped ({why})" for why, n in self.skipped.most_common())
        synth = f", {self.synthesized} prompts synthesized" if self.synthesized else ""
        return (f"{self.path}: {self.format} format, {self.kept} records read{skip}{synth}; "
                f"tokens counted with {self.counter}")


@dataclass(frozen=True)
class TimedRequest:
    request: TraceRequest
    timestamp: float | None      # the trace's own arrival time (s), when it has one


def records(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None,
            tally: Tally | None = None) -> Iterator[tuple[RawRecord, int, int]]:
    """(record, prompt tokens, output tokens) of each record kept, lazily; text is counted with
    ``counter``, nothing is synthesized (trace statistics need lengths only)."""
    path = Path(path)
    count = counter or word_counter
    tally = tally if tally is not None else Tally()
    trace_format, raw = formats.read(path, fmt)
    tally.path, tally.format, tally.counter = str(path), trace_format.name, counter_name(counter)
    try:
        for rec in raw:
            if isinstance(rec, Skipped):
                tally.skipped[rec.reason] += 1
                continue
            prompt_len = rec.prompt_tokens if rec.prompt is None else count(rec.prompt)
            out = rec.output_tokens if rec.output_tokens is not None else count(rec.output)
            if out < 1:
                tally.skipped["no output tokens"] += 1
                continue
            tally.kept += 1         # before the yield: a reader that stops here has still read it
            yield rec, prompt_len, out
    finally:
        raw.close()
    if tally.kept == 0:
        skipped = f" ({sum(tally.skipped.values())} skipped)" if tally.skipped else ""
        raise ConfigError(f"trace holds no requests{skipped}", path)


def requests(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None, seed: int = 0,
             tally: Tally | None = None) -> Iterator[TimedRequest]:
    """The trace's requests, lazily, numbered from 0 in file order (skipped records take no number)."""
    tally = tally if tally is not None else Tally()
    synth: PromptSynth | None = None
    it = records(path, fmt, counter, tally)
    try:
        for rec, prompt_len, out in it:
            index, prompt = tally.kept - 1, rec.prompt
            if prompt is None:
                if synth is None:
                    synth = PromptSynth(counter, seed)
                prompt = synth.prompt(prompt_len, rec.hash_ids, key=str(index))
                tally.synthesized += 1
            yield TimedRequest(TraceRequest(index, prompt, out, prompt_len), rec.timestamp)
    finally:
        it.close()


def load_trace(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None,
               seed: int = 0) -> list[TraceRequest]:
    """Every request of a (small) trace, in a list."""
    return [t.request for t in requests(path, fmt, counter, seed)]


def schedule(trace: list[TraceRequest], qps: float, duration: float, seed: int = 0,
             limit: int | None = None) -> Plan:
    """performance_serving's plan: the first int(X*T) requests of the trace (cycled if short), Poisson gaps."""
    n = int(qps * duration)
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise ValueError(f"X * T >= 1 must hold, got X={qps}, T={duration}")
    offsets = arrival_offsets(n, qps, seed)
    return Plan((float(offsets[i]), trace[i % len(trace)]) for i in range(n))


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


def write_trace(records, path: str | Path) -> None:
    """JSON lines, written to a temporary file then renamed: a failure leaves nothing behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
