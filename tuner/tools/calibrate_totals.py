"""``tune calibrate`` for a stack that reports no per-step timings and has the simulator as its
surrogate (llm-serving): the profile's host terms fitted to whole trials of the real stack.

A few configurations of the study's space (five along its diagonal, from all-first to all-last values) are
launched on the real stack and replayed with the study's own workload, ``passes`` times each
(alternate passes in reverse order, against a drifting CPU). The simulator's decode host terms
(``decode.host.base`` and ``per_live_row``: the serving layer's time per step, while the device
waits) are then fitted so that its total time matches the measured medians: least squares on the
log ratio (scipy.optimize.least_squares, terms >= 0). The compute terms are kept: on an Ascend
host they are the profile's device time, at RUN_LEVEL 5 with an emulated profile they are what
the stubbed forward sleeps; what this host's serving layer adds is what differs (on the
llm-serving ground-truth table the 910B profile's error was a per-regime bias, x1.36 at decode
batch 1 down to x1.07 at 16).

Every trial is kept in ``measured.json`` of the run folder as it ends, so ``tune calibrate
--from DIR`` refits without launching. The profile is written by editing the surrogate's own
file (ruamel.yaml keeps its comments and tokenizer), only the fitted terms changed.
"""
from __future__ import annotations

import datetime
import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.sim.profile_io import default_profile, profile_path
from serving.stacks import get_stack
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial
from tuner.screening.prescreen import first_objective, sim_space, simulate_params
from tuner.space.spec import StudySpace
from tuner.study.run import StudyRun

MEASURED = "measured.json"
TERMS = ("base", "per_live_row")   # of decode.host, in seconds (fitted in ms: the solver's steps are relative)
POINTS = 5                          # configurations measured: more than the terms fitted


def diagonal(space: StudySpace, n: int = POINTS) -> list[dict[str, Any]]:
    """``n`` configurations along the space's diagonal: each parameter at the same fraction of its grid
    (its first value, ..., its last), so every size the step terms depend on moves together."""
    grids = {k: spec.grid() for k, spec in space.param_specs().items()}
    picks = [{k: g[round(i * (len(g) - 1) / (n - 1))] for k, g in grids.items()} for i in range(n)]
    return [p for i, p in enumerate(picks) if p not in picks[:i]]


def measure(space: StudySpace, root: Path, run_dir: Path, passes: int, tag: str | None,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Launch and replay each corner ``passes`` times; every trial appended to ``measured.json`` as it ends."""
    plan = StudyRun(space, root, "").plan()
    configs = diagonal(space)
    out: list[dict[str, Any]] = []
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in range(passes):
        for i, params in enumerate(configs if p % 2 == 0 else configs[::-1]):
            o = run_trial(TrialContext(space, root, run_dir / f"pass{p}_{i}", plan, tag=tag), params)
            value = first_objective(space, o)
            out.append({"params": params, "value": None if math.isnan(value) else value,
                        "fail": None if o.ok else f"{o.fail_class}: {o.fail_detail}"[:300]})
            (run_dir / MEASURED).write_text(json.dumps(out, indent=1) + "\n")
            log(f"calibrate: {json.dumps(params)}: " + (f"{value:.3f} s" if o.ok else f"failed ({out[-1]['fail']})"))
    return out


def load_measured(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / MEASURED
    if not path.is_file():
        raise ConfigError(f"no {MEASURED} under {run_dir} (what an earlier `tune calibrate` of this stack keeps)",
                          key="--from")
    return json.loads(path.read_text())


def medians(measured: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """(configuration, median measured objective) of each configuration measured at least once."""
    by: dict[str, list[float]] = {}
    for m in measured:
        if m.get("value") is not None:
            by.setdefault(json.dumps(m["params"], sort_keys=True), []).append(m["value"])
    return [(json.loads(k), statistics.median(v)) for k, v in by.items()]


def refit_document(source: Path, host: dict[str, float], header: str) -> CommentedMap:
    """The profile ``source`` with ``decode.host`` replaced by ``host``, everything else as written."""
    y = YAML()
    doc = y.load(source.read_text())
    decode = doc.setdefault("decode", CommentedMap())
    flow = CommentedMap((k, round(float(v), 7)) for k, v in host.items())
    flow.fa.set_flow_style()
    decode["host"] = flow
    doc.yaml_set_start_comment(header)
    return doc


def write_refit(source: Path, host: dict[str, float], header: str, out: Path) -> None:
    import io
    y = YAML()
    y.width = 4096
    text = io.StringIO()               # rendered whole first: a failure leaves no half-written file
    y.dump(refit_document(source, host, header), text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.getvalue())


def fit_host(space: StudySpace, root: Path, source: Path, cases: list[tuple[dict[str, Any], float]],
             log: Callable[[str], None] = print) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """Decode host terms (s) that bring the simulated objective of ``cases`` nearest the measured one,
    and (simulated, measured) per case with them."""
    from scipy.optimize import least_squares  # here: scipy.optimize adds ~0.5 s to every `tune` start
    plan = StudyRun(space, root, "").plan()
    start = dict(YAML(typ="safe").load(source.read_text()).get("decode", {}).get("host") or {})
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        candidate = Path(tmp) / "profile.yaml"
        on_sim = sim_space(space, root, {"profile": str(candidate)})

        def simulated(x_ms: np.ndarray) -> list[float]:
            write_refit(source, dict(zip(TERMS, np.asarray(x_ms) / 1e3)), "# candidate", candidate)
            return [first_objective(on_sim, simulate_params(on_sim, root, params, plan)) for params, _ in cases]

        def residuals(x_ms: np.ndarray) -> np.ndarray:
            return np.array([math.log(s / m) if s > 0 else 10.0 for s, (_, m) in zip(simulated(x_ms), cases)])

        x0 = np.array([1e3 * float(start.get(t, 0.0)) for t in TERMS])
        failed = [params for s, (params, _) in zip(simulated(x0), cases) if not s > 0]
        if failed:   # a configuration the simulator cannot run has nothing to fit (its rules refuse it)
            raise ConfigError(f"the simulator fails the measured configuration {json.dumps(failed[0])} "
                              f"({source.name}), so it cannot be fitted to it")
        res = least_squares(residuals, x0, bounds=(0.0, np.inf), diff_step=0.05, x_scale=np.maximum(x0, 1.0))
        host = dict(zip(TERMS, (float(v) / 1e3 for v in res.x)))
        sims = simulated(res.x)
    log("calibrate: decode.host " + ", ".join(f"{k} {1e3 * start.get(k, 0.0):.2f} -> {1e3 * v:.2f} ms"
                                                for k, v in host.items()))
    return host, [(s, m) for s, (_, m) in zip(sims, cases)]


def calibrate(space: StudySpace, root: Path, out: Path, run_dir: Path, passes: int = 1, refit: bool = False,
              tag: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Measure (or, ``refit``, read what ``run_dir`` kept), fit, write ``out``; the profile written."""
    surrogate = get_stack(space.backend).surrogate
    named = (sim_space(space, root).stack_options.get(surrogate) or {}).get("profile")
    source = profile_path(named or default_profile(load_serving_yaml(root / space.base_config)))
    measured = load_measured(run_dir) if refit else measure(space, root, run_dir, passes, tag, log)
    cases = medians(measured)
    if len(cases) < 2:
        raise ConfigError(f"calibrate needs at least 2 configurations measured, got {len(cases)} "
                          f"(failures: {[m['fail'] for m in measured if m.get('fail')][:3]})", key="--from" if refit else None)
    host, pairs = fit_host(space, root, source, cases, log)
    errors = [abs(s / m - 1) for s, m in pairs]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (f"decode.host fitted by `tune calibrate --study {space.study}` on {stamp} to {len(measured)} trials of "
              f"{len(cases)} configurations ({run_dir / MEASURED});\nsimulated vs measured after the fit: mean error "
              f"{100 * statistics.mean(errors):.1f} %, max {100 * max(errors):.1f} %. Everything else is {source.name}'s.")
    write_refit(source, host, header, out)
    for (params, m), (s, _) in zip(cases, pairs):
        log(f"calibrate: {json.dumps(params)}: measured {m:.3f} s, simulated {s:.3f} s ({100 * (s / m - 1):+.1f} %)")
    log(f"wrote {out}")
    return out
