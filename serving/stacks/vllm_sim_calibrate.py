"""Calibrating the vLLM surrogate (``tune calibrate`` on a backend=vllm study): one real launch, then the profile.

vLLM is launched once with the study's base config and its ``vllm:`` options (the user's own
stack: model, dtype, device, interpreter), with a running batch and token budget large enough
that every burst below decodes together (max_num_seqs 64, 4096 tokens per step). Then, on that
one server: lone requests of several prompt lengths, one at a time (TTFT: one prefill step and
the API process's delays), and bursts of N equal-shaped requests sent at once (their makespan:
the prefill, then decode steps of N sequences). Prompts are random words, distinct per request, so prefix
caching shares nothing. The records are fitted by serving.sim.vllm_fit and written by
serving.sim.vllm_profile, beside the study (trials/<study>/vllm_surrogate.yaml by default).
The records are kept (records.json) so ``--from`` can refit them.
"""
from __future__ import annotations

import datetime
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from serving.config.errors import ConfigError
from serving.config.render import render
from serving.replay import ReplayOptions
from serving.sim.vllm_fit import Observation, fit_steptime, observations
from serving.sim.vllm_profile import VllmProfile, write_vllm_profile
from serving.stacks.base import LaunchSpec, RunningStack
from serving.stacks.vllm import VLLMStack
from serving.workload import TraceRequest

LONE = (8, 64, 256, 512)                    # prompt tokens of the lone requests
LONE_OUTPUT = (4, 64)                       # output tokens of a lone request: each length once with each
PASSES = 3
BURSTS = ((4, 16), (4, 128), (16, 16), (16, 128), (32, 64), (48, 16), (48, 128), (64, 32))   # (requests, prompt tokens)
BURST_OUTPUT = (16, 64)                     # output tokens of every request of a burst: each burst once with each
SETTINGS = {"max_num_seqs": 64, "max_num_batched_tokens": 4096, "enable_chunked_prefill": True}
RECORDS_FILE = "records.json"
# A replay during which the client's event loop woke this late (its read lags: the host stopped it,
# e.g. a 2-core VM descheduled while vLLM runs, bench/host.py) timed the host, not vLLM: measured again
STALL_P99, STALL_MAX, TRIES = 0.025, 0.1, 3
_KV = re.compile(r"KV cache size: ([\d,]+) tokens")


def prompt(n: int, rng: np.random.Generator) -> str:
    """``n`` random filler words: distinct prompts, so prefix caching shares no block between them."""
    return " ".join(f"w{k}" for k in rng.integers(0, 200, size=n))


def burst(n: int, plen: int, olen: int, rng, counter: Callable[[str], int] | None) -> list[tuple[float, TraceRequest]]:
    out = []
    for i in range(n):
        text = prompt(plen, rng)
        out.append((0.0, TraceRequest(i, text, olen, counter(text) if counter else plen)))
    return out


def measure(running: RunningStack, counter: Callable[[str], int] | None, log=print, seed: int = 0,
            passes: int = PASSES) -> list[Observation]:
    """The lone requests and the bursts on a running vLLM (launched with SETTINGS), ``passes`` times,
    every other pass in reverse order: a shared host's speed drifts, and the fit trims outliers."""
    rng = np.random.default_rng(seed)
    budget = SETTINGS["max_num_batched_tokens"]
    shapes = [(1, plen, olen) for plen in LONE for olen in LONE_OUTPUT]
    shapes += [(n, plen, olen) for n, plen in BURSTS for olen in BURST_OUTPUT]
    obs: list[Observation] = []
    for i in range(passes):
        again = lost = 0
        for n, plen, olen in shapes if i % 2 == 0 else shapes[::-1]:
            plan = burst(n, plen, olen, rng, counter)
            for k in range(TRIES):
                res = running.replay(plan, ReplayOptions())
                if steady(res.read_lags):
                    obs += observations(res.records, budget)
                    break
            else:
                lost += 1
            again += k      # the tries before the last
        log(f"calibrate: pass {i + 1}/{passes}: {len(obs)} observations"
            + (f" ({again} replays measured again, {lost} left out: the host stalled the client)" if again else ""))
    return obs


def steady(read_lags: list[float]) -> bool:
    """The client woke on time through a replay (read lag p99 and max within STALL_P99, STALL_MAX)."""
    if not read_lags:
        return True
    lags = sorted(read_lags)
    return lags[int(0.99 * (len(lags) - 1))] <= STALL_P99 and lags[-1] <= STALL_MAX


def kv_tokens(running: RunningStack) -> int | None:
    """The KV pool's tokens vLLM reported at start (its log), None if it did not say."""
    found = _KV.search(running.log_tail(200_000))
    return int(found.group(1).replace(",", "")) if found else None


def launch(base_config: Path, options: dict[str, Any], run_dir: Path, ready_timeout: float,
           env: dict[str, str] | None = None) -> RunningStack:
    """vLLM with the base config and SETTINGS, in ``run_dir`` (emptied first: an old log would be read as this one's)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cfg = run_dir / "config.yaml"
    render(base_config, SETTINGS, cfg)
    return VLLMStack().launch(LaunchSpec(cfg, run_dir, ready_timeout, options=options, env=dict(env or {})))


def collect(base_config: Path, options: dict[str, Any], run_dir: Path, ready_timeout: float,
            log=print, env: dict[str, str] | None = None, seed: int = 0) -> tuple[list[dict], int | None]:
    """The replays' observations (as dicts) and the pool's tokens vLLM reported (None if not found)."""
    counter = VLLMStack().token_counter(base_config, options)
    running = launch(base_config, options, run_dir, ready_timeout, env)
    try:
        obs = measure(running, counter, log, seed)
        kv = kv_tokens(running)
    finally:
        running.stop()
    rows = [asdict(o) for o in obs]
    (run_dir / RECORDS_FILE).write_text(json.dumps({"observations": rows, "kv_tokens": kv}))
    return rows, kv


def load_observations(run_dir: Path) -> tuple[list[dict], int | None]:
    f = Path(run_dir) / RECORDS_FILE
    try:
        data = json.loads(f.read_text())
        return list(data["observations"]), data.get("kv_tokens")
    except FileNotFoundError:
        raise ConfigError(f"no {RECORDS_FILE} here: `tune calibrate` on a vLLM study keeps one", run_dir) from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"a vLLM calibration's records ({{observations: [...]}}) must hold, got {err!r}", f) from None


def fit_and_write(rows: list[dict], kv: int | None, out: Path, source: str, log=print) -> VllmProfile:
    st, stats = fit_steptime([Observation(**r) for r in rows])
    profile = VllmProfile(st, stats, kv)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (f"Step-time profile of the vLLM surrogate, written by `tune calibrate` on {when}.\n"
              f"Measured: {source}, one launch with {SETTINGS}, {PASSES} passes; lone requests of {list(LONE)}\n"
              f"prompt and {list(LONE_OUTPUT)} output tokens (TTFT, makespan) and bursts (requests, prompt tokens)\n"
              f"{list(BURSTS)} with {list(BURST_OUTPUT)} output tokens (makespan). Fitted by serving/sim/vllm_fit.py; the terms are serving/sim/vllm_steptime.py's.\n"
              "Machine- and model-specific: re-run `tune calibrate` where vLLM runs.")
    write_vllm_profile(profile, out, header)
    log("calibrate: " + ", ".join(f"{k}={v:.3g}" for k, v in st.as_dict().items())
        + f" (R^2 {stats['r2']:.3f}, {int(stats['n'])} observations)")
    log(f"calibrate: wrote {out}")
    return profile


def calibrate(base_config: Path, options: dict[str, Any], out: Path, run_dir: Path, ready_timeout: float,
              log=print, env: dict[str, str] | None = None) -> VllmProfile:
    rows, kv = collect(base_config, options, run_dir, ready_timeout, log, env)
    return fit_and_write(rows, kv, out, str(base_config), log)
