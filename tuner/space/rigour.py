"""The study-rigour sections of a search space: noise (finalists), early stopping, pre-screening.

Kept apart from tuner.space.spec so the space schema only gains these fields:
  repeats: 3                                            # each configuration measured 3 times
  finalists: {top_k: 2, repeats: 5, confidence: 0.95}   # `tune finalize` re-runs and compares
  early_stop: {metric: total_time, margin: 0.5}         # abort replays 50 % slower than the best
  prescreen: {top_fraction: 0.3, warmup: 5}             # simulate first (tuner.screening)
  prescreen: {warm_start: 3, sim_trials: 60}            # first a study on the simulator, its best 3 run first
PrescreenSpec lives here, not in tuner.screening.prescreen (which re-exports it), because that
module needs StudySpace and the space must type its ``prescreen:`` section when it is loaded.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FinalistSpec(_Strict):
    """``tune finalize``: re-run the top_k trials ``repeats`` times each and test the winner."""
    top_k: int = Field(2, ge=2, description="finalists re-run (the best and its runners-up)")
    repeats: int = Field(5, ge=2, description="fresh measurements of each finalist")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="one-sided Mann-Whitney confidence")


class EarlyStopSpec(_Strict):
    """Abort a replay once its elapsed time exceeds the best known ``metric`` by ``margin``."""
    metric: str = "total_time"
    margin: float | None = Field(None, gt=0, description="fraction over the best; null = never stop early")
    grace: float = Field(1.0, ge=0, description="seconds added to the limit (startup jitter)")


class PrescreenSpec(_Strict):
    """The study option ``prescreen:`` (tuner.screening.gate uses it)."""
    top_fraction: float = Field(0.3, gt=0, le=1, description="promising = among this best fraction simulated")
    within: float | None = Field(None, ge=0, description="or: within this fraction of the best simulated value")
    warmup: int = Field(5, ge=0, description="candidates always let through before the screen starts")
    probe_fraction: float | None = Field(None, gt=0, lt=1, description="real probe on this share of the plan")
    promote_within: float = Field(0.1, ge=0, description="promote a probe predicted within this of the best")
    warm_start: int = Field(3, ge=0, description="real trials run first: the simulator study's best distinct "
                            "configurations (0 = off)")
    sim_trials: int = Field(60, ge=1, description="trials of the simulator study behind the warm start")
    min_tau: float = Field(0.5, ge=-1, le=1, description="the gate stays open while the simulator ranks the "
                           "measured trials worse than this (Kendall tau, from 5 measured on)")
