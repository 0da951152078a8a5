"""``tune calibrate`` for a stack that reports no per-step timings and has the simulator as its
surrogate (llm-serving): the profile's decode host terms fitted to the decode steps its replays show.

Five configurations along the study's space diagonal (each parameter at the same fraction of its
grid, all-first to all-last) are launched on the real stack and replayed with the study's own
workload, ``passes`` times each (alternate passes in reverse order, against a drifting CPU). The
client stamps every token as it is parsed, and a decode step streams one token to each live
request at once: the tokens that arrive together are one step, how many they are its live rows,
the time to the next such burst its duration. Less the profile's device time for that step (the
compute terms: on an Ascend host the profile's, at RUN_LEVEL 5 with an emulated profile what the
stubbed forward sleeps), the rest is the serving layer's, fitted as ``decode.host`` = base +
per_row x bucket (llm-serving pre-processes its whole padded batch) + per_live_row x rows by
serving.sim.fit.fit_terms (non-negative, outliers trimmed). On the llm-serving ground-truth table
the 910B profile's host terms made a per-regime bias (x1.36 at decode batch 1 down to x1.07 at 16);
whole-trial totals alone could not tell per_row from per_live_row and ranked batch 16 before 8.
The fitted profile is then checked on the trials' total times (printed and written in its header).

Every trial is kept in ``measured.json`` of the run folder as it ends (its requests.csv and config
beside it), so ``tune calibrate --from DIR`` refits without launching. The profile is written by
editing the surrogate's own file (ruamel.yaml keeps its comments and tokenizer), only the fitted
terms changed.
"""
from __future__ import annotations

import datetime
import io
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.sim.fit import Fit, fit_terms
from serving.sim.latency import LatencyModel
from serving.sim.profile_io import default_profile, load_profile, profile_path
from serving.stacks import get_stack
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial
from tuner.screening.prescreen import first_objective, sim_space, simulate_params
from tuner.space.spec import StudySpace
from tuner.study.run import StudyRun

MEASURED = "measured.json"
TERMS = ("base", "per_row", "per_live_row")   # decode.host
POINTS = 5            # configurations along the diagonal
JOIN = 0.004          # s: tokens this close are one step's (llm-serving's steps take >= 28 ms here)
MIN_STEPS = 20        # decode steps needed for a fit
WARN_ERROR = 0.2      # mean error of the simulated totals after the fit above which calibrate warns


def diagonal(space: StudySpace, n: int = POINTS) -> list[dict[str, Any]]:
    """``n`` configurations along the space's diagonal: each parameter at the same fraction of its grid
    (its first value, ..., its last), so every size the step terms depend on moves together."""
    grids = {k: spec.grid() for k, spec in space.param_specs().items()}
    picks = [{k: g[round(i * (len(g) - 1) / (n - 1))] for k, g in grids.items()} for i in range(n)]
    return [p for i, p in enumerate(picks) if p not in picks[:i]]


def measure(space: StudySpace, root: Path, run_dir: Path, passes: int, tag: str | None,
            points: int = POINTS, requests: int | None = None,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Launch and replay each of ``points`` configurations ``passes`` times, the study's plan or its first
    ``requests``; every trial appended to ``measured.json`` as it ends (``run``: its folder under
    ``run_dir``, with requests.csv and config.yaml)."""
    plan = StudyRun(space, root, "").plan()[:requests]
    configs = diagonal(space, points)
    out: list[dict[str, Any]] = []
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in range(passes):
        for i, params in enumerate(configs if p % 2 == 0 else configs[::-1]):
            name = f"pass{p}_{i}"
            t0 = time.monotonic()
            o = run_trial(TrialContext(space, root, run_dir / name, plan, tag=tag), params)
            value = first_objective(space, o)
            out.append({"params": params, "run": name, "value": None if math.isnan(value) else value,
                        "fail": None if o.ok else f"{o.fail_class}: {o.fail_detail}"[:300],
                        "trial_s": round(time.monotonic() - t0, 3), "requests": requests})   # what it cost
            (run_dir / MEASURED).write_text(json.dumps(out, indent=1) + "\n")
            log(f"calibrate: {json.dumps(params)}: " + (f"{value:.3f} s" if o.ok else f"failed ({out[-1]['fail']})"))
    return out


def load_measured(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / MEASURED
    if not path.is_file():
        raise ConfigError(f"no {MEASURED} under {run_dir} (what an earlier `tune calibrate` of this stack keeps)",
                          key="--from")
    try:
        rows = json.loads(path.read_text())
    except ValueError as err:
        raise ConfigError(f"not valid JSON ({err})", path) from None
    if not isinstance(rows, list) or not all(isinstance(m, dict) and "params" in m for m in rows):
        raise ConfigError("must hold a list of trials, each with its params", path)
    return rows


def client_steps(frame, buckets: list[int]) -> list[dict[str, float]]:
    """The decode steps a replay's requests.csv shows: bursts of tokens less than JOIN apart, each
    with its live rows (tokens), bucket (the smallest of ``buckets`` that holds them), context (the
    rows' prompt + tokens so far) and duration (from the previous burst). A burst holding a first
    token is a prefill and is left out, as are the burst after it (its time holds the prefill's host
    work) and the first burst (no start)."""
    events = []
    for r in frame.itertuples():
        if not isinstance(r.token_times, str) or not r.token_times:
            continue
        for k, t in enumerate(float(x) for x in r.token_times.split(";")):
            events.append((t, r.prompt_len + k, k == 0))
    events.sort()
    bursts: list[list[tuple[float, int, bool]]] = []
    for e in events:
        if bursts and e[0] - bursts[-1][-1][0] < JOIN:
            bursts[-1].append(e)
        else:
            bursts.append([e])
    out = []
    for prev, cur in zip(bursts, bursts[1:]):
        if any(first for *_, first in prev + cur):   # a prefill's, or the step after one (its host tail is in)
            continue
        rows = len(cur)
        bucket = min([b for b in buckets if b >= rows] or [max(buckets)])
        out.append({"rows": rows, "bucket": bucket, "context": sum(c for _, c, _ in cur),
                    "duration": cur[0][0] - prev[0][0]})
    return out


def steps_of(measured: list[dict[str, Any]], run_dir: Path) -> list[dict[str, float]]:
    """The decode steps of every trial that ran (its requests.csv and rendered config under ``run_dir``)."""
    import pandas as pd   # here: pandas adds ~0.4 s to every `tune` start
    steps: list[dict[str, float]] = []
    for m in measured:
        trial = run_dir / str(m.get("run", ""))
        if m.get("value") is None or not (trial / "requests.csv").is_file():
            continue
        buckets = list(load_serving_yaml(trial / "config.yaml").model.decode_batch_size)
        steps += client_steps(pd.read_csv(trial / "requests.csv"), buckets)
    return steps


def fit_host(steps: list[dict[str, float]], model: LatencyModel) -> Fit:
    """decode.host from the steps: each step's duration less ``model``'s device time for it."""
    X = np.array([[1.0, s["bucket"], s["rows"]] for s in steps]).reshape(-1, len(TERMS))
    y = np.array([s["duration"] - model.decode(s["rows"], s["bucket"], s["context"])[0] for s in steps])
    return fit_terms(X, y, TERMS, floor=0.001)   # the client's stamps jitter by a millisecond: never an outlier


def medians(measured: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """(configuration, median measured objective) of each configuration measured at least once."""
    by: dict[str, list[float]] = {}
    for m in measured:
        if m.get("value") is not None:
            by.setdefault(json.dumps(m["params"], sort_keys=True), []).append(m["value"])
    return [(json.loads(k), statistics.median(v)) for k, v in by.items()]


def refit_document(source: Path, host: dict[str, float], header: str) -> CommentedMap:
    """The profile ``source`` with ``decode.host`` replaced by ``host``, everything else as written."""
    doc = YAML().load(source.read_text())
    decode = doc.setdefault("decode", CommentedMap())
    flow = CommentedMap((k, float(f"{v:.4g}")) for k, v in host.items())
    flow.fa.set_flow_style()
    decode["host"] = flow
    doc.yaml_set_start_comment(header)
    return doc


def write_refit(source: Path, host: dict[str, float], header: str, out: Path) -> Path:
    y = YAML()
    y.width = 4096
    text = io.StringIO()               # rendered whole first: a failure leaves no half-written file
    y.dump(refit_document(source, host, header), text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.getvalue())
    return out


def check_totals(space: StudySpace, root: Path, profile: Path, cases: list[tuple[dict[str, Any], float]],
                 requests: int | None = None) -> list[float]:
    """The simulated objective of each measured configuration with ``profile``, on the plan they replayed."""
    plan = StudyRun(space, root, "").plan()[:requests]
    on_sim = sim_space(space, root, {"profile": str(profile)})
    return [first_objective(on_sim, simulate_params(on_sim, root, params, plan)) for params, _ in cases]


def calibrate(space: StudySpace, root: Path, out: Path, run_dir: Path, passes: int = 1, refit: bool = False,
              tag: str | None = None, points: int = POINTS, requests: int | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Measure (or, ``refit``, read what ``run_dir`` kept), fit, write ``out``; the profile written.
    ``points`` configurations, each replaying the study's plan or its first ``requests`` (a few hundred
    decode steps are enough for the fit: on a host whose launch takes minutes, fewer and shorter trials)."""
    surrogate = get_stack(space.backend).surrogate
    named = (sim_space(space, root).stack_options.get(surrogate) or {}).get("profile")
    source = profile_path(named or default_profile(load_serving_yaml(root / space.base_config)))
    model = load_profile(source)   # before any launch: a profile that does not load is refused at once
    measured = load_measured(run_dir) if refit else measure(space, root, run_dir, passes, tag, points, requests, log)
    steps = steps_of(measured, run_dir)
    if len(steps) < MIN_STEPS:
        failed = [m["fail"] for m in measured if m.get("fail")][:2]
        raise ConfigError(f"calibrate needs at least {MIN_STEPS} decode steps from trials that ran, got {len(steps)} "
                          f"from {len(measured) - len(failed)} trials" + (f" (failures: {failed})" if failed else ""),
                          key="--from" if refit else None)
    fit = fit_host(steps, model)
    start = model.decode_host
    log("calibrate: decode.host " + ", ".join(f"{k} {1e3 * start[k]:.2f} -> {1e3 * v:.2f} ms"
                                                for k, v in fit.coef.items())
        + f" ({fit.n} steps, R^2 {fit.r2:.2f}, rmse {1e3 * fit.rmse:.1f} ms)")
    cases = medians(measured)
    shortened = next((m["requests"] for m in measured if m.get("requests")), None)   # as measured, also on --from
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (f"decode.host fitted by `tune calibrate --study {space.study}` on {stamp} to {fit.n} decode steps "
              f"(R^2 {fit.r2:.2f}, rmse {1e3 * fit.rmse:.1f} ms) of {len(measured)} trials ({run_dir / MEASURED})")
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:   # out is written once, whole, at the end
        sims = check_totals(space, root, write_refit(source, fit.coef, header, Path(tmp) / out.name), cases, shortened)
    errors = [abs(s / m - 1) for s, (_, m) in zip(sims, cases) if not math.isnan(s)]
    for (params, m), s in zip(cases, sims):
        log(f"calibrate: {json.dumps(params)}: measured {m:.3f} s, simulated {s:.3f} s ({100 * (s / m - 1):+.1f} %)")
    if errors:
        header += (f";\ntotal time simulated vs measured: mean error {100 * statistics.mean(errors):.1f} %, "
                   f"max {100 * max(errors):.1f} % over {len(errors)} configurations"
                   + (f" (each replaying the first {shortened} requests)" if shortened else ""))
    write_refit(source, fit.coef, header + f". Everything else is {source.name}'s.", out)
    log(f"wrote {out}")
    if errors and statistics.mean(errors) > WARN_ERROR:   # host terms cannot mend a device time that is not the stack's
        log(f"calibrate: warning: the simulated total times are {100 * statistics.mean(errors):.0f} % off on average "
            f"after the fit: {source.name}'s device time is not this stack's (on a host without its accelerator the "
            f"stack must wait the profile's device time: docs/simulator.md)")
    return out
