"""A study's identity in its storage, and the conditions its trials were measured under.

The same study name can live in two storages (a laptop's SQLite file and a team's PostgreSQL,
or two SQLite files), so a study's artifacts are keyed by a uid the study is given when it is
created (user attr ``uid``): ``trials/<study>-<uid[:8]>/<n>/``. Each trial also stores its own
``run_dir``; readers use that, never a path rebuilt from the name.

A study compares trials, so all of them must be measured alike. Its fingerprint (backend, the
base config's and the trace's content, the trace's format, the load, the objectives, and what
scores a trial feasible: the constraints, the SLOs and the capacity search) is stored at creation and
compared at every start: a study re-run under another load, trace or stack stops with what
differs, instead of mixing 10-request trials with 50-request ones and calling the short one best.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import optuna

from serving.config.errors import ConfigError
from tuner.trial_record import StudyKey, set_study_attr, study_attr
from tuner.space.spec import StudySpace
from tuner.workload import formats



def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fingerprint(space: StudySpace, root: Path) -> dict[str, Any]:
    """What every trial of a study must share to be compared (JSON-able, readable in the dashboard)."""
    return {"backend": space.backend,
            "base_config": f"{space.base_config} sha256:{_digest(root / space.base_config)}",
            "trace": f"{space.trace} sha256:{_digest(root / space.trace)}",
            # the format the records are read as (auto resolved): the same file read as another format
            # gives other requests (vLLM's reader ignores output_len, for one)
            "trace_format": formats.detect(root / space.trace)[0].name if space.trace_format == "auto"
            else space.trace_format,
            "load": space.load.model_dump(mode="json"),
            "objectives": [f"{o.name} ({o.direction})" for o in space.objectives],
            # a trial feasible under one SLO or constraint may not be under another: one study mixed
            # both and reported a best that broke the SLO in force (a study stored before these keys
            # existed is compared on the others only, see differences)
            "constraints": [c.model_dump(mode="json", exclude_none=True) for c in space.constraints],
            "slo": dict(space.slo or {}),
            "capacity": space.capacity.model_dump(mode="json") if space.capacity_search else None}


def differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs, key by key; a key the stored fingerprint lacks (a study made before it was
    fingerprinted) is not compared."""
    out = []
    for key in now:
        if key in stored and stored[key] != now[key]:
            a, b = stored[key], now[key]
            if isinstance(a, dict) and isinstance(b, dict):  # the load: name only the keys that changed
                changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
                a, b = {k: a.get(k) for k in changed}, {k: b.get(k) for k in changed}
            out.append(f"{key} was {a} and is now {b}")
    return out


def _legacy(stored: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint stored before ``load.round_gaps`` existed: Poisson gaps were rounded then."""
    load = stored.get("load")
    if isinstance(load, dict) and "round_gaps" not in load:
        stored = {**stored, "load": {**load, "round_gaps": load.get("arrivals", "poisson") == "poisson"}}
    return stored


def check(study: optuna.Study, space: StudySpace, root: Path, reading: bool = False) -> None:
    """Refuse (ConfigError) a study whose trials were measured under other conditions; ``reading``
    (tune export): the space given now must be the one its trials were measured under."""
    stored = study_attr(study, StudyKey.FINGERPRINT)
    if not isinstance(stored, dict):
        return
    stored = _legacy(stored)
    diff = differences(stored, fingerprint(space, root))
    if diff and reading:
        raise ConfigError(f"the space given must be the one study {study.study_name!r} was measured under: "
                          f"{'; '.join(diff)}. Give the overrides it was run with (tune run prints the export "
                          f"line), or name the study that was run with these", key="study")
    if diff:
        raise ConfigError(f"study {study.study_name!r} holds trials measured under other conditions, and one study "
                          f"must not mix them: {'; '.join(diff)}. Start a new study for these (e.g. add "
                          f"study={study.study_name}_2 to the command), or restore the old settings", key="study")


def claim(study: optuna.Study, space: StudySpace, root: Path) -> None:
    """At every start: check the fingerprint; give a new study (or one from before fingerprints) its
    fingerprint and uid."""
    check(study, space, root)
    if not isinstance(study_attr(study, StudyKey.FINGERPRINT), dict):
        set_study_attr(study, StudyKey.FINGERPRINT, fingerprint(space, root))
    if not study_attr(study, StudyKey.UID):
        set_study_attr(study, StudyKey.UID, uuid.uuid4().hex)


def key(study: optuna.Study) -> str:
    """``<name>-<uid[:8]>``: the study's folder name under trials/ (the bare name for a study made
    before studies had a uid, where its files are)."""
    uid = study_attr(study, StudyKey.UID)
    return f"{study.study_name}-{str(uid)[:8]}" if uid else study.study_name


def study_dir(root: Path, study: optuna.Study) -> Path:
    """trials/<name>-<uid8>/: the study's own folder (its trials' run dirs, finalists, report)."""
    return Path(root) / "trials" / key(study)
