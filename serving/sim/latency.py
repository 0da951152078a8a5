"""Step time of the simulated engine: a model over what a step computes.

A step costs ``compute`` (what the accelerator, or the embedded engine's busy
counter, is busy for) plus ``host`` (the gap before the next step: token
delivery, queue draining, host pre/post-processing the device waits on). Only
``compute`` counts towards the busy percentage. Coefficients are seconds per
unit of their feature:

  prefill compute: base, per_row (bucket), per_padded_token (bucket * longest prompt),
                   per_padded_token_sq (bucket * longest prompt ** 2, attention)
  decode compute:  base, per_row (bucket), per_live_row, per_context_token (context of live rows)
  host (both):     base, per_row (bucket: llm-serving's host work on its padded batch), per_live_row

Measured tables may replace the row terms, because a CPU's cost is not linear in
small batches: ``decode.by_bucket`` {bucket: s} replaces base + per_row * bucket,
and ``prefill.table`` {bucket: {longest prompt: s}} is added to the prefill terms.
Both are interpolated linearly between entries and extrapolated from the two
nearest. ``request.arrival_cost`` is step time added per request that arrives
while a step runs (the embedded server parses and tokenises it on the GIL the
engine thread needs). Profiles are YAML files (serving/sim/profiles/<name>.yaml, read and
written by serving.sim.profile_io) whose comments say where each constant comes from.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serving.config.errors import ConfigError, from_validation_error
from serving.sim.profile_schema import DECODE_COMPUTE, HOST, PREFILL_COMPUTE, ProfileFile

def interp(points: dict[int, float], x: float) -> float:
    """Piecewise-linear through ``points``; beyond them, the nearest segment extended (>= 0)."""
    if x in points:
        return points[x]
    keys = sorted(points)
    if len(keys) == 1:
        return points[keys[0]] * x / keys[0]        # one point: proportional
    i = min(max(bisect.bisect_left(keys, x), 1), len(keys) - 1)
    lo, hi = keys[i - 1], keys[i]
    return max(0.0, points[lo] + (points[hi] - points[lo]) * (x - lo) / (hi - lo))


@dataclass(frozen=True)
class LatencyModel:
    prefill_compute: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PREFILL_COMPUTE, 0.0))
    prefill_host: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOST, 0.0))
    decode_compute: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DECODE_COMPUTE, 0.0))
    decode_host: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOST, 0.0))
    prefill_table: dict[int, dict[int, float]] = field(default_factory=dict)   # bucket -> longest -> s
    decode_by_bucket: dict[int, float] = field(default_factory=dict)          # bucket -> s
    arrival_delay: float = 0.0     # client send -> request queued in the scheduler
    delivery_delay: float = 0.0    # step end -> client reads the token
    arrival_cost: float = 0.0      # step time added per request arriving while the step runs
    single_prefill: bool = False   # llm-serving's PA path: one prompt per prefill, prefill_batch_size ignored
    name: str = "custom"

    def prefill(self, rows: int, bucket: int, longest: int) -> tuple[float, float]:
        """(compute, host) seconds of a prefill of ``rows`` prompts padded to ``bucket`` x ``longest``."""
        c, h = self.prefill_compute, self.prefill_host
        padded = bucket * longest
        compute = (c["base"] + c["per_row"] * bucket + c["per_padded_token"] * padded
                   + c["per_padded_token_sq"] * padded * longest)
        if self.prefill_table:
            t = self.prefill_table
            compute += (interp(t[bucket], longest) if bucket in t
                        else interp({b: interp(t[b], longest) for b in t}, bucket))
        return compute, h["base"] + h["per_row"] * bucket + h["per_live_row"] * rows

    def decode(self, rows: int, bucket: int, context: int) -> tuple[float, float]:
        """(compute, host) seconds of one decode step of ``rows`` live rows in a ``bucket``."""
        c, h = self.decode_compute, self.decode_host
        base = interp(self.decode_by_bucket, bucket) if self.decode_by_bucket else c["base"] + c["per_row"] * bucket
        compute = base + c["per_live_row"] * rows + c["per_context_token"] * context
        return compute, h["base"] + h["per_row"] * bucket + h["per_live_row"] * rows

    def to_dict(self) -> dict[str, Any]:
        """The profile file's sections (serving.sim.profile_schema), empty tables left out."""
        pre = {"compute": dict(self.prefill_compute), "table": {b: dict(r) for b, r in self.prefill_table.items()},
               "host": dict(self.prefill_host)}
        dec = {"compute": dict(self.decode_compute), "by_bucket": dict(self.decode_by_bucket),
               "host": dict(self.decode_host)}
        return {"name": self.name, "single_prefill": self.single_prefill,
                "prefill": {k: v for k, v in pre.items() if v}, "decode": {k: v for k, v in dec.items() if v},
                "request": {"arrival_delay": self.arrival_delay, "delivery_delay": self.delivery_delay,
                            "arrival_cost": self.arrival_cost}}

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> LatencyModel:
        """A model from a profile file's content, checked by serving.sim.profile_schema."""
        if not isinstance(data, dict):
            raise ConfigError(f"a latency profile must be a mapping of sections, found {type(data).__name__}", path)
        try:
            p = ProfileFile.model_validate(data)
        except ValidationError as err:
            raise from_validation_error(err, path) from None
        return cls(prefill_compute=p.prefill.compute.model_dump(), prefill_host=p.prefill.host.model_dump(),
                   decode_compute=p.decode.compute.model_dump(), decode_host=p.decode.host.model_dump(),
                   prefill_table={b: dict(r) for b, r in p.prefill.table.items()},
                   decode_by_bucket=dict(p.decode.by_bucket), single_prefill=p.single_prefill,
                   name=p.name or (Path(path).stem if path else "custom"), **p.request.model_dump())
