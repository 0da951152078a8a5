"""backend=vllm_sim: the vLLM stack's surrogate. "Launch" prepares a simulation; nothing is started
but the shared worker in vLLM's interpreter (serving/sim/vllm_client.py).

Its options are the ``vllm:`` section's (the same model, VLLMOptions): the interpreter, the
device and KV space, the model dims, and ``surrogate_profile``, the step-time profile that
``tune calibrate`` wrote (serving/sim/vllm_profile.py). The pool's size is what vLLM would give
itself: ``num_gpu_blocks_override``, else on the CPU VLLM_CPU_KVCACHE_SPACE over the bytes of a
block, else the pool's tokens the calibration launch reported (its log).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from serving.config.errors import ConfigError
from serving.config.vllm_yaml import GIB, VLLMConfig, VLLMYamlFormat, load_vllm_yaml, model_dims, resolve_model
from serving.stacks.sim import VirtualRunning
from serving.sim.vllm_client import SurrogateError, shared
from serving.sim.vllm_profile import VllmProfile, load_vllm_profile
from serving.stacks import failures
from serving.stacks.base import LaunchError, LaunchSpec, Plan, Stack
from serving.stacks.vllm import VLLMOptions, parse_options
from serving.workload import RequestRecord

CPU_DEFAULT_BLOCK = 128      # vLLM's block size on the CPU when the config leaves it out


def engine_flags(config_path: Path) -> dict[str, Any]:
    """The trial's vLLM flags as the worker's EngineArgs take them (a local model folder made absolute)."""
    data = yaml.safe_load(Path(config_path).read_text())
    folder = resolve_model(str(data.get("model", "")))
    if folder is not None:
        data["model"] = str(folder)
    return data


def pool_blocks(cfg: VLLMConfig, opts: VLLMOptions, profile: VllmProfile) -> int:
    """KV blocks of the pool, as vLLM sizes it (see the module's docstring)."""
    if cfg.num_gpu_blocks_override is not None:
        return cfg.num_gpu_blocks_override
    dims = model_dims(cfg, opts.model_dump())
    block = cfg.block_size or CPU_DEFAULT_BLOCK
    per_token = None
    if None not in (dims["num_layers"], dims["num_kv_heads"], dims["head_dim"], dims["dtype_bytes"]):
        per_token = 2 * dims["num_layers"] * dims["num_kv_heads"] * dims["head_dim"] * dims["dtype_bytes"]
    if opts.device == "cpu" and per_token:
        return int(opts.cpu_kvcache_space_gb * GIB // (per_token * block))
    if profile.kv_tokens is not None:
        return profile.kv_tokens // block
    raise ConfigError("num_gpu_blocks_override must be set for the vLLM surrogate off the CPU (or the profile's "
                      "kv_tokens), got neither", "vllm", "num_gpu_blocks_override")


class VllmSimRunning(VirtualRunning):
    url = "sim://vllm"
    utilisation = None         # as on vLLM's CPU stack: no busy figure (the steps' share is sim_busy_mean)

    def __init__(self, python: str, engine: dict[str, Any], num_blocks: int, profile: VllmProfile):
        self.python, self.engine, self.num_blocks, self.profile = python, engine, num_blocks, profile

    def simulate(self, plan: Plan) -> tuple[list[RequestRecord], dict[str, float]]:
        # the worker is shared and outlives the trial; it is ended at exit (serving.sim.vllm_client)
        try:
            res = shared(self.python).simulate(self.engine, self.num_blocks, self.profile.steptime, plan)
        except SurrogateError as err:   # every request fails with the reason: the trial fails, the study goes on
            return [RequestRecord(r.index, r.prompt_len, r.output_len, off, error=f"surrogate: {err}")
                    for off, r in plan], {}
        sent = [r.sent for r in res.records if r.sent is not None]
        done = [r.done for r in res.records if r.done is not None]
        span = max(done) - min(sent) if sent and done else 0.0
        busy = 100.0 * min(res.busy / span, 1.0) if span > 0 else float("nan")
        return res.records, {"sim_busy_mean": busy, "sim_steps": float(res.steps),
                             "sim_preemptions": float(res.preemptions)}


class VllmSimStack(Stack):
    name = "vllm_sim"
    options_model = VLLMOptions
    config_format = VLLMYamlFormat()
    serves_http = False
    surrogate = "vllm_sim"

    def calibrate(self, base_config: Path, options: dict[str, Any], run_dir: Path, ready_timeout: float,
                  refit: bool = False, log=print, env: dict[str, str] | None = None) -> VllmProfile:
        """Fit the profile (written to ``options['surrogate_profile']``) from one real launch of the stack
        ``options`` describe, its records kept in ``run_dir``; ``refit``: from the records kept there."""
        from serving.stacks import vllm_sim_calibrate as cal
        out = Path(parse_options(options).surrogate_profile)
        if refit:
            rows, kv = cal.load_observations(run_dir)
            return cal.fit_and_write(rows, kv, out, f"{run_dir} (refit)", log)
        return cal.calibrate(base_config, options, out, run_dir, ready_timeout, log, env)

    def preflight(self, options: dict[str, Any]) -> list[str]:
        """The profile must be there: a surrogate without one would reject every configuration."""
        path = parse_options(options).surrogate_profile
        if path is None:
            return ["vllm.surrogate_profile must name a profile for the vLLM surrogate, got none"]
        try:
            load_vllm_profile(path)
        except ConfigError as err:
            return [f"the vLLM surrogate needs its step-time profile: {err}"]
        return []

    def launch(self, spec: LaunchSpec) -> VllmSimRunning:
        opts = self.options_of(spec)
        try:
            cfg = spec.loaded(load_vllm_yaml)
            if opts.surrogate_profile is None:
                raise ConfigError("must name the profile `tune calibrate` wrote, got none", "vllm",
                                  "surrogate_profile")
            profile = load_vllm_profile(opts.surrogate_profile)
            blocks = pool_blocks(cfg, opts, profile)
        except ConfigError as err:
            raise LaunchError(failures.CONFIG_REJECTED, str(err)) from None
        return VllmSimRunning(opts.python or sys.executable, engine_flags(spec.config_path), blocks, profile)
