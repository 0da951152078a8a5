"""Request traces: records of any known format (tuner.workload.formats) as TraceRequests.

Lengths are tokens of the stack's tokenizer (``counter``; None = the word count the
embedded engine's tokenizer gives): a prompt given as text is counted, a prompt given as
a length is synthesized to exactly that many tokens (tuner.workload.synth), an output
given as text is counted. Records are produced lazily, so a plan built from a million-
record trace holds only the records it schedules.
"""
from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Container, Iterator
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
    compression: str | None = None
    notes: list[str] = field(default_factory=list)    # what was done to the trace (sorted, ...)
    raw: int = 0                 # records of the format seen in the latest pass: a record's ordinal

    def describe(self) -> str:
        skip = "".join(f", {n} skipped ({why})" for why, n in self.skipped.most_common())
        synth = f", {self.synthesized} prompts synthesized" if self.synthesized else ""
        packed = f" ({self.compression}-compressed)" if self.compression else ""
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{self.path}{packed}: {self.format} format, {self.kept} records read{skip}{synth}; "
                f"tokens counted with {self.counter}{notes}")


@dataclass(frozen=True)
class TimedRequest:
    request: TraceRequest
    timestamp: float | None      # the trace's own arrival time (s), when it has one
    ordinal: int = 0             # the record's place among the format's records (tuner.workload.plan)


def records(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None,
            tally: Tally | None = None, max_tokens: int | None = None, only: Container[int] | None = None,
            meter: Callable[[], None] | None = None) -> Iterator[tuple[RawRecord, int, int]]:
    """(record, prompt tokens, output tokens) of each record kept, lazily; text is counted with
    ``counter``, nothing is synthesized (trace statistics need lengths only). ``max_tokens``: records
    whose prompt + output is longer are skipped (load.max_tokens); ``only``: the ordinals to read (the
    others are passed over uncounted); ``meter()`` is called once a record (a progress display)."""
    path = Path(path)
    count = counter or word_counter
    tally = tally if tally is not None else Tally()
    trace_format, raw = formats.read(path, fmt)
    tally.path, tally.format, tally.counter = str(path), trace_format.name, counter_name(counter)
    tally.compression, tally.raw = formats.compression(path), 0
    try:
        for rec in raw:
            if isinstance(rec, Skipped):
                if only is None:     # a reader of chosen records had them counted by its first pass
                    tally.skipped[rec.reason] += 1
                continue
            tally.raw += 1
            if meter is not None:
                meter()
            if only is not None and tally.raw - 1 not in only:
                continue
            prompt_len = rec.prompt_tokens if rec.prompt is None else count(rec.prompt)
            out = rec.output_tokens if rec.output_tokens is not None else count(rec.output)
            if out < 1:
                tally.skipped["no output tokens"] += 1
                continue
            if max_tokens is not None and prompt_len + out > max_tokens:
                tally.skipped[f"prompt + output over load.max_tokens={max_tokens}"] += 1
                continue
            tally.kept += 1         # before the yield: a reader that stops here has still read it
            yield rec, prompt_len, out
    finally:
        raw.close()
    if tally.kept == 0 and only is None:
        skipped = f" ({sum(tally.skipped.values())} skipped)" if tally.skipped else ""
        raise ConfigError(f"trace holds no requests{skipped}", path)


def requests(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None, seed: int = 0,
             tally: Tally | None = None, max_tokens: int | None = None, only: Container[int] | None = None,
             meter: Callable[[], None] | None = None) -> Iterator[TimedRequest]:
    """The trace's requests, lazily, numbered from 0 in file order (skipped records take no number)."""
    tally = tally if tally is not None else Tally()
    synth: PromptSynth | None = None
    it = records(path, fmt, counter, tally, max_tokens, only, meter)
    try:
        for rec, prompt_len, out in it:
            index, prompt = tally.kept - 1, rec.prompt
            if prompt is None:
                if synth is None:
                    synth = PromptSynth(counter, seed)
                prompt = synth.prompt(prompt_len, rec.hash_ids, key=str(index))
                tally.synthesized += 1
            yield TimedRequest(TraceRequest(index, prompt, out, prompt_len), rec.timestamp, tally.raw - 1)
    finally:
        it.close()


def arrival_times(path: str | Path, fmt: str = "auto", meter: Callable[[], None] | None = None,
                  missing_ok: bool = False, tally: Tally | None = None) -> np.ndarray:
    """Every record's timestamp (s) by ordinal, read without counting or synthesizing anything (a first
    pass: whether the trace is in time order is known only once it is read to its end). A record
    without one is refused (arrivals=trace needs them all), or NaN with ``missing_ok``. ``tally``
    counts the records the format skips."""
    trace_format, raw = formats.read(path, fmt)
    times: array = array("d")
    try:
        for rec in raw:
            if isinstance(rec, Skipped):
                if tally is not None:
                    tally.skipped[rec.reason] += 1
                continue
            if rec.timestamp is None and not missing_ok:
                raise ConfigError(f"arrivals=trace needs a timestamp on every record; {rec.where} has none "
                                  f"({trace_format.name} format)", path)
            times.append(float("nan") if rec.timestamp is None else rec.timestamp)
            if meter is not None:
                meter()
    finally:
        raw.close()
    return np.frombuffer(times, dtype=float) if times else np.zeros(0)


def order_note(times: np.ndarray) -> str | None:
    """What the summaries say of a trace whose timestamps are out of file order (it is replayed sorted)."""
    back = int(np.count_nonzero(np.diff(times) < 0))
    return f"timestamps out of order ({back} records earlier than the one before): sorted" if back else None


def converted(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None, seed: int = 0,
              tally: Tally | None = None, meter: Callable[[], None] | None = None) -> Iterator[dict]:
    """The trace as this project's JSON lines records (``tune trace convert``), in file order; times
    count from the earliest record, so none is negative even when the trace is out of order (a first
    pass over the times finds the earliest; the summary notes the order, and a study sorts)."""
    tally = tally if tally is not None else Tally()
    times = arrival_times(path, fmt, missing_ok=True)
    times = times[~np.isnan(times)]
    t0 = float(times.min()) if len(times) else None
    note = order_note(times)
    if note:
        tally.notes.append(note.replace(": sorted", ": kept in file order (tune sorts them when it reads them)"))
    for item in requests(path, fmt, counter, seed, tally, meter=meter):
        row = {"prompt": item.request.prompt, "output_len": item.request.output_len}
        if item.timestamp is not None and t0 is not None:
            row["timestamp"] = round(item.timestamp - t0, 6)
        yield row


def load_trace(path: str | Path, fmt: str = "auto", counter: Callable[[str], int] | None = None,
               seed: int = 0) -> list[TraceRequest]:
    """Every request of a (small) trace, in a list."""
    return [t.request for t in requests(path, fmt, counter, seed)]


def schedule(trace: list[TraceRequest], qps: float, duration: float, seed: int = 0,
             limit: int | None = None) -> Plan:
    """performance_serving's plan: the first int(X*T) requests of the trace (cycled if short), Poisson gaps
    of mean round(1/X, 2) as it draws them (the benches reproduce its published runs)."""
    n = int(qps * duration)
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise ValueError(f"X * T >= 1 must hold, got X={qps}, T={duration}")
    offsets = arrival_offsets(n, qps, seed, round_gaps=True)
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
