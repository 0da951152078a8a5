"""``tune calibrate``: fit the simulator's latency model to the embedded engine's own steps.

For each (decode batch, prefill batch) pair the embedded stack is launched with the
study's base config, and bursts of requests are replayed, one prompt length per
burst, so every prefill step's longest prompt is known from its token count. The
engine's step records (/metrics/steps: kind, rows, bucket, tokens, context, start,
duration, arrivals, after_idle) are then fitted by non-negative least squares: step
durations give the compute terms, the gaps between back-to-back steps the host terms
(not a wait for the client's next burst). A trickle of requests at a steady rate gives
decode steps that run while requests arrive (the arrival cost), and a few lone requests
at the end the HTTP delays (client TTFT minus the prefill step). Each run's records are
kept in its folder, so ``tune calibrate --from DIR`` can refit them without measuring.
"""
from __future__ import annotations

import datetime
import itertools
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.config.render import render
from serving.config.schema import load_serving_yaml
from serving.probes.engine import fetch_json
from serving.sim.latency import DECODE_COMPUTE, HOST, PREFILL_COMPUTE, LatencyModel
from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedStack
from serving.replay import ReplayOptions
from serving.workload import TraceRequest

RUNS = ((1, 1), (2, 2), (4, 4), (8, 8), (16, 1), (32, 2), (64, 4))   # (decode, prefill): pa_batching's buckets
PROMPT_LENS = (4, 8, 16, 32, 64, 128, 256)      # words; one burst each (the trace: mean 20, max 161;
                                                # 256 covers recompute prefills of preempted requests, prompt + output)
LONE = 6
TRICKLE = (64, 40.0)                            # short requests at a steady rate: decode steps that run while
                                                # requests arrive (request.arrival_cost)
STEPS_FILE = "steps.json"
_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "tired", "owls", "watch"]


@dataclass
class Fit:
    coef: dict[str, float]
    n: int
    r2: float
    rmse: float


def burst(prompt_len: int, n: int, rng: np.random.Generator, out_range=(8, 128)) -> list[tuple[float, TraceRequest]]:
    """``n`` requests at once, all with ``prompt_len`` words, outputs drawn from ``out_range``."""
    prompt = " ".join(_WORDS[i % len(_WORDS)] for i in range(prompt_len))
    outs = rng.integers(out_range[0], out_range[1] + 1, size=n)
    return [(0.0, TraceRequest(i, prompt, int(o), prompt_len)) for i, o in enumerate(outs)]


def collect(base_config: Path, run_dir: Path, runs=RUNS, prompt_lens=PROMPT_LENS, seed: int = 0,
            ready_timeout: float = 60.0, log=print) -> tuple[list[dict], list[float]]:
    """Step records of every run, and the lone requests' TTFT minus their prefill step (s)."""
    rng = np.random.default_rng(seed)
    base = load_serving_yaml(base_config)
    steps: list[dict] = []
    delays: list[float] = []
    for decode, prefill in runs:
        d = run_dir / f"d{decode}_p{prefill}"
        d.mkdir(parents=True, exist_ok=True)
        bs = base.pa_config.block_size
        longest = max(prompt_lens) + 1 + 128 + 1
        blocks = max(base.pa_config.num_blocks, decode * -(-longest // bs) + 2)   # no preemption: clean records
        cfg = d / "config.yaml"
        render(base_config, {"model_config.decode_batch_size": decode, "model_config.prefill_batch_size": prefill,
                             "pa_config.num_blocks": blocks}, cfg)
        running = EmbeddedStack().launch(LaunchSpec(cfg, d, ready_timeout))
        n_lone = len(delays)
        try:
            for plen in prompt_lens:
                running.replay(burst(plen, max(2 * decode, 3 * prefill, 8), rng), ReplayOptions())
            n, rate = TRICKLE
            running.replay([(i / rate, r) for i, (_, r) in enumerate(burst(8, n, rng, (8, 64)))], ReplayOptions())
            for _ in range(LONE):
                [rec] = running.replay(burst(8, 1, rng, (4, 4)), ReplayOptions()).records
                got = fetch_json(running.url + "/metrics/steps")["steps"]
                pre = [s for s in got if s["kind"] == "prefill"]
                if rec.ok and pre:
                    delays.append(rec.first_token - rec.sent - pre[-1]["duration"])
            run_steps = fetch_json(running.url + "/metrics/steps")["steps"]
        finally:
            running.stop()
        # kept beside the run's config and log, so `tune calibrate --from` can refit without measuring
        (d / STEPS_FILE).write_text(json.dumps({"steps": run_steps, "delays": delays[n_lone:]}))
        for s in run_steps:
            s["run"] = f"d{decode}_p{prefill}"
        steps += run_steps
        log(f"calibrate: decode {decode} prefill {prefill}: {len(run_steps)} steps")
    return steps, delays


def load_runs(run_dir: Path) -> tuple[list[dict], list[float]]:
    """The step records and lone-request delays that earlier calibration runs kept under ``run_dir``."""
    files = sorted(run_dir.rglob(STEPS_FILE))
    if not files:
        raise ConfigError(f"no {STEPS_FILE} under this folder: `tune calibrate` keeps one per run there", run_dir)
    steps, delays = [], []
    for f in files:
        try:
            data = json.loads(f.read_text())
            run = str(f.parent.relative_to(run_dir))
            steps += [dict(s, run=run) for s in data["steps"]]
            delays += [float(x) for x in data["delays"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"not a calibration run's step records ({{steps: [...], delays: [...]}}): {err!r}",
                              f) from None
    return steps, delays


def mark_arrivals(steps: list[dict]) -> list[dict]:
    """Add ``arrived_during``: requests the server took in while each step ran. The engine counts
    them on the step that queued them, the next one; their HTTP parsing and tokenising shared the
    GIL with the step in flight."""
    for a, b in itertools.pairwise(steps):
        a["arrived_during"] = b.get("arrivals", 0) if a.get("run") == b.get("run") else 0
    if steps:
        steps[-1]["arrived_during"] = 0
    return steps


def nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with coefficients >= 0: drop the most negative column and refit until none is."""
    active = list(range(X.shape[1]))
    coef = np.zeros(X.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(X[:, active], y, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def fit_terms(X: np.ndarray, y: np.ndarray, names: tuple[str, ...], trim: float = 6.0) -> Fit:
    """NNLS, then once more without points beyond ``trim`` robust sigmas (GC pauses, a busy neighbour)."""
    if len(y) == 0:
        return Fit(dict.fromkeys(names, 0.0), 0, float("nan"), float("nan"))
    coef = nnls(X, y)
    res = y - X @ coef
    mad = 1.4826 * np.median(np.abs(res - np.median(res)))
    keep = np.abs(res) <= trim * mad if mad > 0 else np.ones(len(y), bool)
    coef = nnls(X[keep], y[keep])
    res = y[keep] - X[keep] @ coef
    var = float(np.var(y[keep]))
    r2 = 1.0 - float(np.mean(res ** 2)) / var if var > 0 else float("nan")
    return Fit({n: float(c) for n, c in zip(names, coef)}, int(keep.sum()), r2, float(np.sqrt(np.mean(res ** 2))))


def _steps_up(buckets: np.ndarray, keys: list[int]) -> np.ndarray:
    """Column j is 1 where the bucket is >= keys[j]: with coefficients >= 0 (NNLS), the base cost
    per bucket (their cumulative sum) can only grow with the bucket, as more padded rows are
    computed. One-hot columns let each bucket absorb its own run's noise (a slower minute of a
    shared CPU), which gave bucket 4 a lower cost than bucket 2."""
    return (buckets[:, None] >= np.array(keys)[None, :]).astype(float)


def _trimmed_mean(y: np.ndarray, trim: float = 6.0) -> float:
    mad = 1.4826 * np.median(np.abs(y - np.median(y)))
    return float(y[np.abs(y - np.median(y)) <= trim * mad].mean()) if mad > 0 else float(y.mean())


def fit_prefill(steps: list[dict]) -> tuple[Fit, dict[int, dict[int, float]]]:
    """Mean step time per (bucket, longest prompt): a table, since a padded numpy prefill is far
    from linear in its shape. Records are taken after the token was appended, so each prompt
    counts one token more than the step computed; every prompt of a burst has the same length."""
    groups: dict[tuple[int, int], list[float]] = {}
    for s in steps:
        if s["kind"] == "prefill":
            groups.setdefault((s["bucket"], round(s["tokens"] / s["rows"]) - 1), []).append(s["duration"])
    table: dict[int, dict[int, float]] = {}
    res = []
    for (b, t), ys in sorted(groups.items()):
        y = np.array(ys)
        table.setdefault(b, {})[t] = _trimmed_mean(y)
        res += list(y - table[b][t])
    r = np.array(res)
    y_all = np.array([v for ys in groups.values() for v in ys])
    r2 = 1 - float(np.mean(r ** 2)) / float(np.var(y_all)) if len(r) > 1 and np.var(y_all) > 0 else float("nan")
    rmse = float(np.sqrt(np.mean(r ** 2))) if len(r) else float("nan")
    return Fit(dict.fromkeys(PREFILL_COMPUTE, 0.0), len(r), r2, rmse), table


def fit_decode(steps: list[dict]) -> tuple[Fit, dict[int, float]]:
    """A base per bucket (non-decreasing in the bucket) plus per live row, per context token and
    per request that arrived while the step ran (``arrival_cost``; see :func:`mark_arrivals`).
    ``context`` is recorded after the new token was appended: one token per row comes off."""
    ss = [s for s in mark_arrivals(steps) if s["kind"] == "decode"]
    if not ss:
        return Fit(dict.fromkeys((*DECODE_COMPUTE, "arrival_cost"), 0.0), 0, float("nan"), float("nan")), {}
    bucket = np.array([s["bucket"] for s in ss])
    rows = np.array([s["rows"] for s in ss], float)
    keys = sorted(set(bucket.tolist()))
    X = np.column_stack([_steps_up(bucket, keys), rows, np.array([s["context"] for s in ss]) - rows,
                         [s["arrived_during"] for s in ss]])
    f = fit_terms(X, np.array([s["duration"] for s in ss]),
                  tuple(f"b{k}" for k in keys) + ("per_live_row", "per_context_token", "arrival_cost"))
    table = dict(zip(keys, np.cumsum([f.coef[f"b{k}"] for k in keys]).tolist()))
    f.coef = {n: f.coef.get(n, 0.0) for n in (*DECODE_COMPUTE, "arrival_cost")}
    return f, table


def _gaps(steps: list[dict], kind: str, max_gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Host time after each ``kind`` step that was followed at once by another in the same run
    (not after the engine ran dry and waited for the client's next burst)."""
    X, y = [], []
    for a, b in itertools.pairwise(steps):
        gap = b["start"] - a["start"] - a["duration"]
        if a["kind"] == kind and a.get("run") == b.get("run") and not b.get("after_idle") and 0 <= gap < max_gap:
            X.append([1.0, a["rows"]])
            y.append(gap)
    return np.array(X).reshape(-1, 2), np.array(y)


def fit(steps: list[dict], delays: list[float] = ()) -> tuple[LatencyModel, dict[str, Fit]]:
    (fp, tp), (fd, td) = fit_prefill(steps), fit_decode(steps)
    fits = {"prefill.compute": fp, "decode.compute": fd,
            "prefill.host": fit_terms(*_gaps(steps, "prefill"), HOST),
            "decode.host": fit_terms(*_gaps(steps, "decode"), HOST)}
    half = max(float(np.median(delays)), 0.0) / 2 if len(delays) else 0.0
    decode = {n: v for n, v in fd.coef.items() if n in DECODE_COMPUTE}
    model = LatencyModel(prefill_compute=fp.coef, prefill_host=fits["prefill.host"].coef,
                         decode_compute=decode, decode_host=fits["decode.host"].coef,
                         prefill_table=tp, decode_by_bucket=td, arrival_delay=half, delivery_delay=half,
                         arrival_cost=fd.coef["arrival_cost"], single_prefill=False, name="embedded")
    return model, fits


def _flow(points: dict[int, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in points.items()) + "}"


def profile_text(model: LatencyModel, fits: dict[str, Fit], source: str, n_delays: int, runs=RUNS) -> str:
    """The profile YAML, with comments saying where each number comes from."""
    def block(kind: str, part: str) -> str:
        f = fits[f"{kind}.{part}"]
        terms = ", ".join(f"{k}: {v:.4g}" for k, v in getattr(model, f"{kind}_{part}").items())
        rows = ""
        if part == "compute" and kind == "decode" and model.decode_by_bucket:
            rows = (f"  by_bucket: {_flow(model.decode_by_bucket)}"
                    "   # base cost of a decode step padded to each bucket\n")
        if part == "compute" and kind == "prefill" and model.prefill_table:
            rows = "  table:   # mean step time by bucket, then by longest prompt (tokens)\n" + "".join(
                f"    {b}: {_flow(r)}\n" for b, r in model.prefill_table.items())
        return (f"  {part}: {{{terms}}}\n{rows}"
                f"  # {part} fit: {f.n} steps, R^2 {f.r2:.3f}, rmse {f.rmse * 1e3:.3f} ms\n")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"# Latency profile of the embedded engine, written by `tune calibrate` on {when}.\n"
            f"# Base config: {source}. Runs (decode batch, prefill batch): {list(runs)};\n"
            f"# one burst per prompt length {list(PROMPT_LENS)} words, outputs 8-128 tokens, then {TRICKLE[0]} short\n"
            f"# requests at {TRICKLE[1]:g}/s (decode steps while requests arrive) and {LONE} lone ones.\n"
            "# Machine-specific (CPU, BLAS, load): re-run `tune calibrate` where the embedded stack runs.\n"
            "# compute = the engine's own step duration (/metrics/steps `duration`, what its busy % counts);\n"
            "# host = the gap to the next back-to-back step (token delivery, queue draining, GIL share of HTTP).\n"
            "# Coefficients are seconds per unit (see serving/sim/latency.py); decode terms are fitted by\n"
            "# non-negative least squares, the prefill table holds mean step times (6-MAD outliers left out).\n"
            f"name: embedded\n"
            "single_prefill: false         # the embedded engine batches prompts up to prefill_batch_size\n"
            f"prefill:\n{block('prefill', 'compute')}{block('prefill', 'host')}"
            f"decode:\n{block('decode', 'compute')}{block('decode', 'host')}"
            f"# request delays: half each of the median (client TTFT - prefill step) of {n_delays} lone requests;\n"
            "# arrival_cost: step time added per request the server takes in while a step runs (HTTP\n"
            "# parsing and tokenising share the GIL with the engine thread), fitted on decode steps\n"
            f"request: {{arrival_delay: {model.arrival_delay:.4g}, delivery_delay: {model.delivery_delay:.4g}, "
            f"arrival_cost: {model.arrival_cost:.4g}}}\n")


def write_profile(steps: list[dict], delays: list[float], out: Path, source: str, runs, log=print) -> LatencyModel:
    """Fit ``steps`` and write the profile YAML to ``out``."""
    model, fits = fit(steps, delays)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profile_text(model, fits, source, len(delays), runs))
    for k, f in fits.items():
        log(f"calibrate: {k}: " + ", ".join(f"{n}={v:.3g}" for n, v in f.coef.items())
            + (f" (R^2 {f.r2:.3f}, {f.n} steps)" if not math.isnan(f.r2) else ""))
    log(f"calibrate: wrote {out}")
    return model


def clear_passes(run_dir: Path) -> None:
    """Remove an earlier calibration's pass folders, so ``--from`` never mixes two calibrations."""
    for old in run_dir.glob("pass*"):
        shutil.rmtree(old)


def collect_pass(base_config: Path, run_dir: Path, i: int, runs=RUNS, seed: int = 0,
                 ready_timeout: float = 60.0, log=print) -> tuple[list[dict], list[float]]:
    """Pass ``i`` of the runs, in reverse order when ``i`` is odd, kept under ``run_dir/pass<i>``."""
    order = runs if i % 2 == 0 else tuple(reversed(runs))
    steps, delays = collect(base_config, run_dir / f"pass{i}", order, seed=seed + i,
                            ready_timeout=ready_timeout, log=log)
    for st in steps:
        st["run"] = f"pass{i}/{st['run']}"       # host gaps pair steps of one run only
    return steps, delays


def calibrate(base_config: Path, out: Path, run_dir: Path, runs=RUNS, seed: int = 0,
              ready_timeout: float = 60.0, log=print, passes: int = 1) -> LatencyModel:
    """Measure, fit and write the profile. ``passes`` > 1 repeats the runs, every other pass in
    reverse order, and fits all steps at once: a shared CPU's speed drifts over minutes, and one
    pass lets each run's minute set its buckets' costs."""
    if passes < 1:
        raise ValueError(f"passes >= 1 must hold, got {passes}")
    clear_passes(run_dir)
    steps, delays = [], []
    for i in range(passes):
        got, lone = collect_pass(base_config, run_dir, i, runs, seed, ready_timeout, log)
        steps += got
        delays += lone
    return write_profile(steps, delays, out, str(base_config), runs, log)
