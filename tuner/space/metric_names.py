"""The names of the figures a trial reports: what a space's objectives, constraints and SLOs may
name, checked when the space loads (their definitions: docs/metrics.md; computed in
tuner.runtime.metrics)."""
from __future__ import annotations

PCTS = (50, 90, 99)
_SPREADS = ("ttft", "e2e", "tpot", "itl", "send_lag", "read_lag")
#: every figure a trial's metrics hold (score, then run_trial's utilisation), for checking the
#: names a space's objectives and constraints use before anything runs
METRICS = ("requests", "requests_ok", "requests_failed", "total_time", "throughput_rps", "tokens_per_s",
           "tokens_out", *(f"{p}_{s}" for p in _SPREADS for s in (*(f"p{q}" for q in PCTS), "mean")),
           "arrival_bound", "efficiency", "utilisation", "client_kept_up", "read_lag_max",
           # where a trial's time went (tuner.runtime.trial): launch to ready, the replay(s), the stop
           "startup_s", "replay_s", "stop_s",
           # capacity search (tuner.runtime.capacity) and energy (serving.probes energy counters)
           "capacity_rps", "capacity_low", "capacity_high", "capacity_uncertainty", "capacity_saturation_rps",
           "capacity_requests_replayed", "energy_j", "energy_j_per_token")
#: a usage probe's summary (serving.probes.base.ProbeSampler.summary): <probe>_mean, _peak, _samples
USAGE_SUFFIXES = ("_mean", "_peak", "_samples")


def is_known_metric(name: str) -> bool:
    """Whether a trial can report ``name``; probe names depend on the stack, so any probe summary passes."""
    return name in METRICS or (name.endswith(USAGE_SUFFIXES) and len(name) > len("_mean"))


def known_metrics_text() -> str:
    return ", ".join(METRICS) + ", or a usage probe's <probe>_mean/_peak/_samples (e.g. engine_busy_mean)"
