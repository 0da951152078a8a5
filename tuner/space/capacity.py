"""The ``slo:`` and ``capacity:`` sections of a search space, for the ``capacity_rps`` objective.

  objectives: [{name: capacity_rps, direction: maximize}]
  slo: {ttft_p99: 2.0, tpot_p99: 0.1, failed: 0}     # seconds; failed = fraction of requests
  capacity: {requests: 100, tolerance: 0.05}         # the rate search (tuner.runtime.capacity)

An SLO key is a latency percentile the scorer computes (``<ttft|tpot|e2e|itl>_p<50|90|99>``,
an upper bound in seconds, finite and > 0: NaN passed every probe and 0 made a capacity of 0 the
"feasible" best) or ``failed`` (the largest fraction of failed requests allowed, in [0, 1]).
"""
from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field

CAPACITY = "capacity_rps"
FAILED = "failed"
LATENCIES = ("ttft", "tpot", "e2e", "itl")
PCT_KEY = re.compile(rf"^({'|'.join(LATENCIES)})_p(50|90|99)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapacitySpec(_Strict):
    """How the highest rate meeting the SLOs is searched on one running stack."""
    requests: int = Field(100, ge=10, description="requests per rate tried (vLLM auto_tune uses 100)")
    saturation_requests: int | None = Field(None, ge=10, description="requests of the all-at-once "
                                            "burst whose throughput is the first rate tried "
                                            "(default: a quarter of requests, at least 10)")
    tolerance: float = Field(0.05, gt=0, lt=1, description="stop when (high - low) / high is below this")
    max_probes: int = Field(10, ge=1, description="rates tried after the saturation probe, at most")
    min_rate: float = Field(0.05, gt=0, description="req/s; below it the capacity is 0")
    max_send_lag: float = Field(0.025, gt=0, description="s; a client whose send lag p99 is over this "
                                "did not keep up: the trial (any trial, not only a capacity search) "
                                "fails as client_overloaded (docs/metrics.md)")
    max_read_lag: float = Field(0.025, gt=0, description="s; a client whose read lag p99 (its event loop "
                                "waking late) is over this did not keep up: client_overloaded too")


def check_slo(slo: dict[str, float]) -> dict[str, float]:
    """The SLO mapping, or ValueError naming the key that is not one and what keys are."""
    for key, bound in slo.items():
        if key != FAILED and not PCT_KEY.match(key):
            raise ValueError(f"slo.{key}: an SLO key must be {FAILED!r} or <{'|'.join(LATENCIES)}>_p<50|90|99>, "
                             f"found {key!r}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ValueError(f"slo.{key}: a number must hold, found {bound!r}")
        if key == FAILED and not 0 <= bound <= 1:   # NaN fails this too
            raise ValueError(f"slo.{FAILED}: a fraction of requests in [0, 1] must hold, found {bound!r}")
        if key != FAILED and not (math.isfinite(bound) and bound > 0):
            raise ValueError(f"slo.{key}: a finite number of seconds > 0 must hold, found {bound!r}")
    return {k: float(v) for k, v in slo.items()}
