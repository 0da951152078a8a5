"""``tune calibrate``: measure the embedded engine's own steps, then fit and write the profile.

This module measures and orchestrates; the fit is serving.sim.fit, the profile file
serving.sim.profile_io. For each (decode batch, prefill batch) pair the embedded stack is
launched with the study's base config, and bursts of requests are replayed, one prompt
length per burst, so every prefill step's longest prompt is known from its token count.
A trickle of requests at a steady rate gives decode steps that run while requests arrive
(the arrival cost), and a few lone requests at the end the HTTP delays (client TTFT minus
the prefill step). Each run's step records (/metrics/steps) are kept in its folder, so
``tune calibrate --from DIR`` can refit them without measuring.
"""
from __future__ import annotations

import datetime
import json
import math
import shutil
from pathlib import Path

import numpy as np

from serving.config.errors import ConfigError
from serving.config.render import render
from serving.config.schema import load_serving_yaml
from serving.probes.engine import fetch_json
from serving.sim.fit import fit
from serving.sim.latency import LatencyModel
from serving.sim.profile_io import write_profile
from serving.stacks.base import LaunchSpec
from serving.stacks import Stack, get_stack
from serving.stacks.registry import DEFAULT_BACKEND
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


def burst(prompt_len: int, n: int, rng: np.random.Generator, out_range=(8, 128)) -> list[tuple[float, TraceRequest]]:
    """``n`` requests at once, all with ``prompt_len`` words, outputs drawn from ``out_range``."""
    prompt = " ".join(_WORDS[i % len(_WORDS)] for i in range(prompt_len))
    outs = rng.integers(out_range[0], out_range[1] + 1, size=n)
    return [(0.0, TraceRequest(i, prompt, int(o), prompt_len)) for i, o in enumerate(outs)]


def collect(base_config: Path, run_dir: Path, runs=RUNS, prompt_lens=PROMPT_LENS, seed: int = 0,
            ready_timeout: float = 60.0, log=print, env: dict[str, str] | None = None,
            stack: Stack | None = None) -> tuple[list[dict], list[float]]:
    """Step records of every run, and the lone requests' TTFT minus their prefill step (s), from a
    stack that reports its steps (``Stack.steps_route``; the default stack when none is given)."""
    stack = stack or get_stack(DEFAULT_BACKEND)
    route = stack.steps_route
    if route is None:
        raise ConfigError(f"calibrate needs a stack that reports its per-step timings; backend {stack.name!r} "
                          f"reports none", key="backend")
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
        running = stack.launch(LaunchSpec(cfg, d, ready_timeout, env=dict(env or {})))
        n_lone = len(delays)
        try:
            for plen in prompt_lens:
                running.replay(burst(plen, max(2 * decode, 3 * prefill, 8), rng), ReplayOptions())
            n, rate = TRICKLE
            running.replay([(i / rate, r) for i, (_, r) in enumerate(burst(8, n, rng, (8, 64)))], ReplayOptions())
            for _ in range(LONE):
                [rec] = running.replay(burst(8, 1, rng, (4, 4)), ReplayOptions()).records
                got = fetch_json(running.url + route)["steps"]
                pre = [s for s in got if s["kind"] == "prefill"]
                if rec.ok and pre:
                    delays.append(rec.first_token - rec.sent - pre[-1]["duration"])
            run_steps = fetch_json(running.url + route)["steps"]
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


def header(source: str, runs=RUNS) -> str:
    """The profile's opening comment: what was measured, and how."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"Latency profile of the embedded engine, written by `tune calibrate` on {when}.\n"
            f"Base config: {source}. Runs (decode batch, prefill batch): {list(runs)};\n"
            f"one burst per prompt length {list(PROMPT_LENS)} words, outputs 8-128 tokens, then {TRICKLE[0]} short\n"
            f"requests at {TRICKLE[1]:g}/s (decode steps while requests arrive) and {LONE} lone ones.\n"
            "Machine-specific (CPU, BLAS, load): re-run `tune calibrate` where the embedded stack runs.\n"
            "compute = the engine's own step duration (/metrics/steps `duration`, what its busy % counts);\n"
            "host = the gap to the next back-to-back step (token delivery, queue draining, GIL share of HTTP).\n"
            "Coefficients are seconds per unit (see serving/sim/latency.py); decode terms are fitted by\n"
            "non-negative least squares, the prefill table holds mean step times (6-MAD outliers left out).")


def fit_and_write(steps: list[dict], delays: list[float], out: Path, source: str, runs=RUNS,
                  log=print) -> LatencyModel:
    """Fit ``steps`` (serving.sim.fit) and write the profile to ``out`` (serving.sim.profile_io)."""
    model, fits = fit(steps, delays)
    write_profile(model, out, header(source, runs), fits, len(delays))
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
                 ready_timeout: float = 60.0, log=print, env: dict[str, str] | None = None,
                 stack: Stack | None = None) -> tuple[list[dict], list[float]]:
    """Pass ``i`` of the runs, in reverse order when ``i`` is odd, kept under ``run_dir/pass<i>``."""
    order = runs if i % 2 == 0 else tuple(reversed(runs))
    steps, delays = collect(base_config, run_dir / f"pass{i}", order, seed=seed + i,
                            ready_timeout=ready_timeout, log=log, env=env, stack=stack)
    for st in steps:
        st["run"] = f"pass{i}/{st['run']}"       # host gaps pair steps of one run only
    return steps, delays


def calibrate(base_config: Path, out: Path, run_dir: Path, runs=RUNS, seed: int = 0,
              ready_timeout: float = 60.0, log=print, passes: int = 1,
              env: dict[str, str] | None = None, stack: Stack | None = None) -> LatencyModel:
    """Measure, fit and write the profile. ``passes`` > 1 repeats the runs, every other pass in
    reverse order, and fits all steps at once: a shared CPU's speed drifts over minutes, and one
    pass lets each run's minute set its buckets' costs."""
    if passes < 1:
        raise ValueError(f"passes >= 1 must hold, got {passes}")
    clear_passes(run_dir)
    steps, delays = [], []
    for i in range(passes):
        got, lone = collect_pass(base_config, run_dir, i, runs, seed, ready_timeout, log, env, stack)
        steps += got
        delays += lone
    return fit_and_write(steps, delays, out, str(base_config), runs, log)
