"""``results.json``: a study's outcome for programs (as vLLM's ``bench serve --save-result`` and
GuideLLM write one): the study, its best trial with its configuration and metrics, and every
trial's summary. Written by ``tune run`` into the study's folder (trials/<study>-<uid8>/), beside
its trials' run folders, replaced whole at each run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna

from tuner.trial_record import StudyKey, record, study_attr
from tuner.runtime.constraints import outcome as _outcome
from tuner.runtime.writes import write_text
from tuner.study.identity import study_dir
from tuner.search.selection import best_trial
from tuner.study.storage import shown

SCHEMA = 1
#: user attrs that are not figures of the trial (long text, or what is written out apart)


def _clean(v: Any) -> Any:
    """JSON without NaN/Infinity (not JSON, and most readers choke on them): null instead."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _metrics(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {k: v for k, v in sorted(record(t).metrics.items()) if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _summary(t: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    out = {"number": t.number, "outcome": _outcome(t),
           "values": dict(zip(names, t.values)) if t.values else None,
           "config": record(t).config,
           "duration_s": t.duration.total_seconds() if t.duration else None}
    for key, v in record(t).model_dump(include={"fail_class", "infeasible_because", "run_dir"}).items():
        if v is not None:
            out[key] = v
    return out


def results(study: optuna.Study, storage: str) -> dict[str, Any]:
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    trials = study.get_trials(deepcopy=False)
    try:
        best = best_trial(study)
    except ValueError:  # no feasible trial yet: the summaries say why
        best = None
    out = {"schema": SCHEMA, "study": study.study_name, "uid": study_attr(study, StudyKey.UID), "storage": shown(storage),
           "objectives": [{"name": n, "direction": d.name.lower()} for n, d in zip(names, study.directions)],
           "conditions": study_attr(study, StudyKey.FINGERPRINT),
           "trials_total": len(trials), "trials_feasible": sum(_outcome(t) == "feasible" for t in trials),
           "best": None if best is None else {**_summary(best, names), "metrics": _metrics(best)},
           "trials": [_summary(t, names) for t in trials]}
    return _clean(out)


def write_results(study: optuna.Study, root: Path, storage: str) -> Path:
    out = study_dir(root, study) / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, json.dumps(results(study, storage), indent=2, allow_nan=False) + "\n", force=True,
                      key="results.json")
