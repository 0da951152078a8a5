"""Pre-screening with the simulator, and a short real probe promoted to a full run.

Two fidelities below a full trial:
  1. the simulator (milliseconds): ``rank`` simulates candidates and marks the best
     ``top_fraction`` (or those within ``within`` of the best) as promising; ``PreScreener``
     does the same one candidate at a time for a study loop, against every candidate seen;
  2. a real trial on the first ``probe_fraction`` of the plan: ``probe_then_full`` scales the
     simulator's full-plan prediction by how far the real probe was from the simulated probe,
     and runs the full plan only if that prediction is within ``promote_within`` of the best.
Ranking is on the study's first objective.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from serving.stacks import get_stack
from tuner.trial_record import record
from tuner.space.rigour import PrescreenSpec  # noqa: F401  (the section's model, typed at load)
from tuner.space.spec import StudySpace
from serving.workload import TraceRequest
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import TrialOutcome, run_trial

Plan = list[tuple[float, TraceRequest]]


@dataclass
class Screened:
    params: dict[str, Any]
    value: float                    # simulated first objective (NaN when the config failed)
    promising: bool = False
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def attrs(self, objectives: list[str] | None = None) -> dict[str, Any]:
        out = {"prescreen_value": None if math.isnan(self.value) else self.value,
               "prescreen_promising": self.promising, "prescreen_reason": self.reason}
        if objectives:   # every objective as simulated: what a pruned trial stands in with (tuner.search.sampler)
            vals = [self.metrics.get(o) for o in objectives]
            out["prescreen_objectives"] = [None if v is None or math.isnan(v) else v for v in vals]
        return out


def sim_space(space: StudySpace, root: Path, options: dict[str, Any] | None = None) -> StudySpace:
    """The space on the stack's surrogate (the space refuses ``prescreen:`` for a stack without one): the
    surrogate's options are the stack's for it, then what the space's own section for the surrogate sets,
    then ``options``."""
    stack = get_stack(space.backend)
    backend = stack.surrogate
    if backend is None:
        raise ValueError(f"the {space.backend} stack has no surrogate to simulate it")
    opts = stack.surrogate_options(space.backend_options(), Path(root) / "trials" / space.study)
    if backend == space.backend and opts is None and not options:
        return space
    update: dict[str, Any] = {"backend": backend}
    if opts is not None or options:
        own = {k: v for k, v in (space.stack_options.get(backend) or {}).items() if v is not None}
        update["stack_options"] = {**space.stack_options, backend: {**(opts or {}), **own, **(options or {})}}
    return space.model_copy(update=update)


def simulate_params(space: StudySpace, root: Path, params: dict[str, Any], plan: Plan,
                    run_dir: Path | None = None) -> TrialOutcome:
    """One simulated trial of ``params`` (same render, checks and scoring as a real one)."""
    if run_dir is not None:
        return run_trial(TrialContext(sim_space(space, root), root, run_dir, plan), params)
    with tempfile.TemporaryDirectory(prefix="prescreen-") as tmp:
        return run_trial(TrialContext(sim_space(space, root), root, Path(tmp), plan), params)


def first_objective(space: StudySpace, outcome: TrialOutcome) -> float:
    """A trial's first objective (NaN when it failed or did not report it)."""
    v = outcome.metrics.get(space.objectives[0].name, math.nan) if outcome.ok else math.nan
    return float(v) if v is not None else math.nan


def first_sign(space: StudySpace) -> float:
    """1 when the first objective is minimised, -1 when maximised (sign * value: lower is better)."""
    return 1.0 if space.objectives[0].direction == "minimize" else -1.0


def _gate(value: float, seen: list[float], sign: float, spec: PrescreenSpec) -> tuple[bool, str]:
    """Whether ``value`` ranks among the best of ``seen`` (which includes it)."""
    if math.isnan(value):
        return False, "the simulated trial failed"
    ok = sorted(sign * v for v in seen if not math.isnan(v))
    best = ok[0]
    if spec.within is not None:
        limit = best + abs(best) * spec.within
        return sign * value <= limit, f"{value:.4g} vs best {sign * best:.4g} (within {spec.within:.0%})"
    k = max(1, math.ceil(spec.top_fraction * len(ok)))
    cut = ok[k - 1]
    return sign * value <= cut, f"{value:.4g}; top {spec.top_fraction:.0%} of {len(ok)} ends at {sign * cut:.4g}"


def rank(space: StudySpace, root: Path, candidates: list[dict[str, Any]], plan: Plan,
         spec: PrescreenSpec | None = None) -> list[Screened]:
    """Simulate every candidate; mark the promising ones. Returned best first (failures last)."""
    spec = spec or PrescreenSpec()
    out = []
    for params in candidates:
        o = simulate_params(space, root, params, plan)
        out.append(Screened(params, first_objective(space, o), metrics=o.metrics,
                            reason=o.fail_detail if not o.ok else ""))
    seen, sign = [s.value for s in out], first_sign(space)
    if any(not math.isnan(v) for v in seen):
        for s in out:
            if not s.reason:
                s.promising, s.reason = _gate(s.value, seen, sign, spec)
    return sorted(out, key=lambda s: (math.isnan(s.value), sign * s.value if not math.isnan(s.value) else 0))


MIN_PAIRS = 5   # measured trials before the simulator's ranking is judged


def measured_pairs(study: optuna.Study) -> list[tuple[float, float]]:
    """(simulated, measured) first objective of every complete trial the pre-screen simulated, both finite."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        sim = record(t).prescreen_value
        if sim is not None and t.values and math.isfinite(sim) and math.isfinite(t.values[0]):
            out.append((float(sim), float(t.values[0])))
    return out


class PreScreener:
    """For a study loop: ``check(params)`` simulates one candidate and gates it against all seen.

    ``seed(values)`` adds values simulated elsewhere (the warm start's simulator study): the gate
    then ranks against them from the first candidate on, and the warm-up is over."""

    def __init__(self, space: StudySpace, root: Path, plan: Plan, spec: PrescreenSpec):
        self.space, self.root, self.plan, self.spec = space, root, plan, spec
        self.seen: list[float] = []
        self.seeded = 0
        self.pairs: list[tuple[float, float]] = []   # measured_pairs of the study, set before each check

    def trusted(self) -> tuple[bool, str]:
        """Whether the gate may prune: the simulator must rank the measured trials as they measured
        (Kendall tau >= ``min_tau`` once MIN_PAIRS were measured). A simulator that mis-ranks a regime
        prunes the configurations that win (bench/results/tabular-embedded-*: tau 0.59, the optimum
        at its rank 20, and 13 of 20 tabular seeds never within 2 % where GP alone got there)."""
        if len(self.pairs) < MIN_PAIRS:
            return True, ""
        from scipy.stats import kendalltau
        tau = kendalltau([s for s, _ in self.pairs], [r for _, r in self.pairs]).statistic
        if not tau >= self.spec.min_tau:
            return False, (f"gate open: the simulator ranks the {len(self.pairs)} measured trials at Kendall tau "
                           f"{tau:.2f} (prescreen.min_tau {self.spec.min_tau:g})")
        return True, ""

    def seed(self, values: list[float]) -> None:
        self.seen.extend(values)
        self.seeded += len(values)

    def check(self, params: dict[str, Any]) -> Screened:
        o = simulate_params(self.space, self.root, params, self.plan)
        return self.judge(params, first_objective(self.space, o), o.metrics, o.fail_detail)

    def simulate(self, params: dict[str, Any]) -> float:
        """The first objective of ``params`` simulated on the full plan (NaN when the simulated trial fails)."""
        return first_objective(self.space, simulate_params(self.space, self.root, params, self.plan))

    def judge(self, params: dict[str, Any], value: float, metrics: dict[str, float] | None = None,
              fail_detail: str = "") -> Screened:
        """Gate a candidate whose full plan simulated to ``value`` (NaN: the simulated trial failed)."""
        self.seen.append(value)
        s = Screened(params, value, metrics=metrics or {})
        if not self.seeded and len(self.seen) <= self.spec.warmup:
            s.promising, s.reason = not math.isnan(value), f"warm-up {len(self.seen)}/{self.spec.warmup}"
            if math.isnan(value):
                s.reason = fail_detail or "the simulated trial failed"
            return s
        s.promising, s.reason = _gate(value, self.seen, first_sign(self.space), self.spec)
        if math.isnan(value) and fail_detail:
            s.reason = fail_detail
        trusted, why = self.trusted()
        if not trusted and not math.isnan(value):   # a simulated failure stays out: it cannot start
            s.promising, s.reason = True, why
        return s


def needs_probe(best: float | None) -> bool:
    """A probe can only stop a candidate against a best so far; before one, run the full plan at once."""
    return best is not None and not math.isnan(best)


def promotes(predicted: float, best: float | None, promote_within: float, sign: float) -> bool:
    """Whether a probe's predicted first objective is within ``promote_within`` of ``best``."""
    if math.isnan(predicted):
        return False
    return not needs_probe(best) or sign * predicted <= sign * best + abs(best) * promote_within


@dataclass
class ProbeResult:
    outcome: TrialOutcome           # the full trial if promoted, else the probe
    promoted: bool
    predicted: float                # the full plan's first objective, predicted from the probe
    factor: float                   # real probe / simulated probe


def probe_then_full(ctx: TrialContext, params: dict[str, Any], best: float | None, probe_fraction: float = 0.2,
                    promote_within: float = 0.1, min_probe: int = 8, sim_full: float | None = None) -> ProbeResult:
    """Real trial on a prefix of the plan; the full plan only if its corrected prediction is close to ``best``.

    ``sim_full`` is the full plan's simulated first objective when the caller has it already (the
    study's sim gate), else it is simulated here."""
    space, root, plan = ctx.space, ctx.root, ctx.plan
    metric, sign = space.objectives[0].name, first_sign(space)
    n = min(len(plan), max(min_probe, int(len(plan) * probe_fraction)))
    probe = run_trial(ctx.at(ctx.run_dir / "probe").on(plan[:n]), params)
    sim_probe = simulate_params(space, root, params, plan[:n])
    if sim_full is None:
        sim_full = first_objective(space, simulate_params(space, root, params, plan))
    real_v, sim_v, full_v = first_objective(space, probe), first_objective(space, sim_probe), sim_full
    factor = real_v / sim_v if sim_v and not math.isnan(sim_v) else math.nan
    predicted = factor * full_v if not math.isnan(factor) else math.nan
    probe.metrics[f"predicted_{metric}"] = predicted
    if not probe.ok or not promotes(predicted, best, promote_within, sign):
        return ProbeResult(probe, False, predicted, factor)
    full = run_trial(ctx, params)
    full.metrics[f"predicted_{metric}"] = predicted
    return ProbeResult(full, True, predicted, factor)
