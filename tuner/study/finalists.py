"""`tune finalize`: re-measure the top finalists and declare a winner only with confidence.

A study ranks configurations on one noisy measurement (or the median of a few); the best
and the runner-up are often within noise of each other. Before export the top_k feasible
trials are re-run ``repeats`` times each, interleaved (A B C A B C …, so drift over time
hits all alike), on the first objective. The best median wins only if a one-sided
Mann-Whitney test says it beats the runner-up at the stated confidence; otherwise the two
are reported tied. The verdict is stored in the study (user attr ``finalists``) and
best_trial/export follow it while no trial has completed since.
"""
from __future__ import annotations

import json
import math
from typing import Callable

import optuna

from tuner.trial_record import StudyKey, set_study_attr
from tuner.runtime.ownership import owner_id, trial_tag
from tuner.runtime.context import TrialContext
from tuner.runtime.measure import measure
from tuner.runtime.stats import compare, spread
from tuner.search.selection import feasible_trials, n_complete, trial_config

def select(study: optuna.Study, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """The top_k feasible trials on the first objective, one per distinct configuration."""
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    seen, out = set(), []
    for t in sorted(feasible_trials(study), key=lambda t: sign * t.values[0]):
        key = json.dumps(trial_config(t), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:top_k]


def finalize(run, study: optuna.Study, top_k: int | None = None, repeats: int | None = None,
             confidence: float | None = None, on_sample: Callable[[int, int, float], None] | None = None) -> dict:
    """Re-run the finalists, test best vs runner-up, store and return the verdict."""
    spec = run.space.finalists
    top_k, repeats = top_k or spec.top_k, repeats or spec.repeats
    confidence = confidence or spec.confidence
    metric = run.space.objectives[0]
    minimize = metric.direction == "minimize"
    finalists = select(study, top_k)
    if len(finalists) < 2:
        raise ValueError(f"finalize needs 2 feasible distinct trials, the study has {len(finalists)}")
    single = run.space.model_copy(update={"repeats": 1})
    samples: dict[int, list[float]] = {t.number: [] for t in finalists}
    owner, plan = owner_id(), run.plan()
    for r in range(repeats):
        for t in finalists:
            rdir = run.trials_dir / "finalists" / str(t.number) / f"r{r}"
            ctx = TrialContext(single, run.root, rdir, plan, run.device_id,
                               trial_tag(run.space.study, f"finalist{t.number}", owner))
            m = measure(ctx, trial_config(t))
            v = m.outcome.metrics.get(metric.name, math.nan) if m.outcome.ok else math.nan
            samples[t.number].append(v)
            if on_sample:
                on_sample(t.number, r, v)
    rows = []
    for t in finalists:
        ok = [v for v in samples[t.number] if not math.isnan(v)]
        rows.append({"trial": t.number, "params": trial_config(t), "samples": samples[t.number],
                     "failed_runs": len(samples[t.number]) - len(ok), **spread(ok)})
    sign = 1 if minimize else -1
    rows.sort(key=lambda r: math.inf if math.isnan(r["median"]) else sign * r["median"])
    best, second = rows[0], rows[1]
    v = compare([x for x in best["samples"] if not math.isnan(x)],
                [x for x in second["samples"] if not math.isnan(x)], minimize, confidence)
    verdict = {"metric": metric.name, "direction": metric.direction, "confidence": confidence,
               "repeats": repeats, "rows": rows, "p_value": v.p_value, "ci": list(v.ci),
               "winner": best["trial"] if v.winner_better else None,
               "tied": [] if v.winner_better else [best["trial"], second["trial"]],
               "n_complete": n_complete(study)}
    set_study_attr(study, StudyKey.FINALISTS, json.loads(json.dumps(verdict, default=str, allow_nan=True)))
    run.trials_dir.mkdir(parents=True, exist_ok=True)
    (run.trials_dir / "finalists.json").write_text(json.dumps(verdict, indent=1, default=str))
    return verdict


def describe(v: dict) -> str:
    """Human summary of a verdict, as `tune finalize` prints it."""
    lines = [f"finalists on {v['metric']} ({v['direction']}), {v['repeats']} fresh runs each:"]
    for r in v["rows"]:
        lines.append(f"  trial {r['trial']}: median {r['median']:.4g} (IQR {r['iqr']:.3g}, "
                     f"spread {100 * (r['rel_spread'] or 0):.1f} %, failed runs {r['failed_runs']})")
    lo, hi = v["ci"]
    conf = f"{100 * v['confidence']:.0f} %"
    if v["winner"] is not None:
        lines.append(f"winner: trial {v['winner']} beats the runner-up at {conf} confidence "
                     f"(Mann-Whitney p={v['p_value']:.3g}; runner-up worse by {lo:.3g}..{hi:.3g})")
    else:
        a, b = v["tied"]
        lines.append(f"tied: trials {a} and {b} are not distinguishable at {conf} confidence "
                     f"(Mann-Whitney p={v['p_value']:.3g}; difference {lo:.3g}..{hi:.3g}); "
                     f"export takes trial {a} (better median)")
    return "\n".join(lines)
