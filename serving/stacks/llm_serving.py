"""MindSpore llm-serving on Ascend (shared/docs/llm-serving.md §2): agents, then the server, then a warm-up.

Started the way ``examples/start.py`` starts it, plus what that script lacks: each process in
its own process group with its log in the trial's run directory, one overall deadline, and a
watch on exit codes and "Traceback" lines (start.py polls forever once an agent has died).
Every trial gets its own loopback ports and a copy of the mindformers model YAML whose KV
block settings match pa_config, so the device-side pool is the one being tuned.

Each process runs in the trial's run directory (the checkout is only on PYTHONPATH):
llm-serving and mindformers write ``output/`` and their logs into the working directory,
so the checkout is never written to and each trial keeps its own logs. Relative
``model_cfg_path`` and ``tokenizer.vocab_file`` are looked up in the checkout (upstream's
working directory), then in ``mindformers_root``, and written absolute into the trial's config.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import Field, ValidationError

from serving.config.checks import common_checks, kv_cache_bytes
from serving.config.format import ServingYamlFormat
from serving.replay.llm_serving import LLMServingProtocol
from serving.config.errors import ConfigError, from_validation_error
from serving.config.render import set_keys
from serving.config.schema import ServingYaml, load_serving_yaml
from serving.probes.base import Probe
from serving.probes.host_cpu import HostCpuProbe
from serving.stacks import failures
from serving.stacks.base import Capabilities, LaunchError, LaunchSpec, RunningStack, Stack, StackOptions, Stage
from serving.procs.groups import remove_segments, shm_segments
from serving.stacks.llm_serving_dry_start import run_dry_start
from serving.stacks.ports import free_ports
from serving.procs.process import ManagedProcess
from serving.stacks.llm_serving_readback import process_readings
from serving.stacks.readback import Reading
from serving.tokenizers import sentencepiece_counter

AGENT_READY = "all agents started"
SERVER_READY = "Uvicorn running on"
GIB = 2**30


class LLMServingOptions(StackOptions):
    """The space's ``llm_serving:`` section. Model dims default to LLaMA-2-7B in fp16."""
    root: str | None = None               # the llm-serving checkout (holds examples/start_agent.py)
    mindformers_root: str | None = None   # put on PYTHONPATH (a mindformers checkout)
    python: str | None = None             # interpreter that has MindSpore; default: the tuner's own
    device_id: int = Field(0, ge=0)       # start_device_id; `tune --device N` overrides
    npu_id: int | None = None             # npu-smi -i, when it differs from the device id
    accelerator: Literal["npu", "gpu", "none"] = "npu"
    npu_smi: str = "npu-smi"
    device_memory_gb: float = Field(32.0, gt=0)   # GiB of device memory (910B: 32)
    weights_gb: float = Field(13.5, ge=0)         # resident weights, GiB
    num_layers: int = Field(32, ge=1)
    num_kv_heads: int = Field(32, ge=1)
    head_dim: int = Field(128, ge=1)
    dtype_bytes: int = Field(2, ge=1)
    run_level: int | None = None          # RUN_LEVEL bare runs (doc §7); an inherited RUN_LEVEL passes too
    # at run_level 5, the agent waits each step's device time from this latency profile (serving/sim/profiles)
    emulate_profile: str | None = None
    env: dict[str, str | int | float | bool] = {}
    warmup_tokens: int = Field(4, ge=1)
    stop_grace: float = Field(10.0, ge=0)  # SIGTERM -> SIGKILL; a clean exit frees the shared memory


def parse_options(options: dict[str, Any]) -> LLMServingOptions:
    try:
        return LLMServingOptions.model_validate(dict(options or {}))
    except ValidationError as err:
        raise from_validation_error(err, "search space section llm_serving") from None


def lookup_dirs(opts: LLMServingOptions, root: Path | None) -> list[Path]:
    """Where a relative model_cfg_path or vocab_file is looked for: the checkout, then mindformers."""
    dirs = [root] if root is not None else []
    if opts.mindformers_root:
        dirs.append(Path(opts.mindformers_root).expanduser().resolve())
    return dirs


def resolve_ref(ref: str | None, dirs: list[Path]) -> Path | None:
    """``ref`` as an existing absolute path (the first of ``dirs`` holding it), or None."""
    if not ref:
        return None
    p = Path(ref).expanduser()
    for cand in [p] if p.is_absolute() else [d / p for d in dirs]:
        if cand.exists():
            return cand.resolve()
    return None


def vocab_file(cfg: ServingYaml, opts: LLMServingOptions, root: Path | None) -> Path | None:
    tok = cfg.tokenizer if isinstance(cfg.tokenizer, dict) else {}
    return resolve_ref(tok.get("vocab_file"), lookup_dirs(opts, root))


def model_yaml(cfg: ServingYaml, opts: LLMServingOptions, root: Path | None) -> str | None:
    """The text of the mindformers model yaml that ``model_config.model_cfg_path`` names, its KV pool
    (num_blocks, block_size, seq_length) set to the serving config's (doc §1); None when none is named."""
    src = resolve_ref(cfg.model.model_cfg_path, lookup_dirs(opts, root))
    if src is None or not src.is_file():
        return None
    model = yaml.safe_load(src.read_text()) or {}
    mc = (model.get("model") or {}).get("model_config") if isinstance(model, dict) else None
    if not isinstance(mc, dict):
        raise ConfigError("a mindformers model yaml must have a model.model_config section", src)
    kv = {"model.model_config.num_blocks": cfg.pa_config.num_blocks,
          "model.model_config.block_size": cfg.pa_config.block_size}
    if "seq_length" in mc:
        kv["model.model_config.seq_length"] = cfg.model.seq_length[-1]
    return set_keys(src.read_text(), kv, src)


def write_trial_yaml(spec: LaunchSpec, root: Path, device: int, opts: LLMServingOptions) -> tuple[Path, ServingYaml]:
    """run_dir/llm_serving.yaml: the rendered config on this trial's ports and device, its file
    references absolute; when model_cfg_path names a mindformers yaml, a copy of it with the
    same KV pool (doc §1)."""
    cfg, run_dir = spec.loaded(load_serving_yaml), Path(spec.run_dir)
    ports = free_ports(1 + len(cfg.serving_config.agent_ports))
    values: dict[str, Any] = {"serving_config.server_port": ports[0], "serving_config.agent_ports": ports[1:],
                              "serving_config.start_device_id": device}
    vocab = vocab_file(cfg, opts, root)
    if vocab is not None:
        values["tokenizer.vocab_file"] = str(vocab)
    model = model_yaml(cfg, opts, root)
    if model is not None:
        dst = run_dir / "model_config.yaml"
        dst.write_text(model)
        values["model_config.model_cfg_path"] = str(dst.resolve())
    out = run_dir / "llm_serving.yaml"
    out.write_text(set_keys(Path(spec.config_path).read_text(), values, spec.config_path))
    return out, load_serving_yaml(out)


class LogWatch:
    """Reads a growing log from where it stood at the start (logs are appended to) for lines and Tracebacks."""

    def __init__(self, path: Path, line: str):
        self.path, self.line, self.carry = path, line, ""
        self.offset = path.stat().st_size if path.exists() else 0
        self.ready = self.traceback = False

    def scan(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            new = f.read().decode("utf-8", "replace")
            self.offset = f.tell()
        text, self.carry = self.carry + new, (self.carry + new)[-200:]  # a line split across two reads
        self.ready = self.ready or self.line in text
        self.traceback = self.traceback or bool(failures.TRACEBACK.search(text))


class LLMServingRunning(RunningStack):
    protocol = LLMServingProtocol()

    def __init__(self, procs: dict[str, ManagedProcess], url: str, opts: LLMServingOptions,
                 device: int, run_dir: Path):
        self.procs, self.url, self.opts, self.device, self.run_dir = procs, url, opts, device, run_dir
        self.watches: dict[str, LogWatch] = {}

    @property
    def pgids(self) -> list[int]:
        return [p.pgid for p in self.procs.values()]

    @property
    def utilisation(self) -> str | None:
        # no accelerator: no utilisation (NaN). The stack's host CPU share is still recorded (host_cpu_mean),
        # but maximising it ranked best the trial that burned most CPU
        return {"npu": "npu_aicore", "gpu": "gpu_util"}.get(self.opts.accelerator)

    def alive(self) -> bool:
        return bool(self.procs) and all(p.alive() for p in self.procs.values())

    def probes(self) -> list[Probe]:
        return make_probes(self.opts, self.device) + [HostCpuProbe(self.pgids)]

    def log_tail(self, max_chars: int = 4000) -> str:
        per = max_chars // max(1, len(self.procs))
        return "\n".join(f"== {p.log_path.name} ==\n{p.log_tail(per)}" for p in self.procs.values())

    def read_back(self) -> list[Reading]:
        """The YAML each process loaded (its own --config) and the agent's model YAML pool."""
        return [r for n, p in self.procs.items() for r in process_readings(n, p.pid)]

    def _stop(self) -> None:
        segments = shm_segments(self.pgids)
        for name in ("server", "agent"):  # the server first: it leaves the agents and frees its shared memory
            if name in self.procs:
                self.procs[name].stop(grace=self.opts.stop_grace)
        # a server killed (or stuck on a dead agent until SIGKILL) leaves its 1 GiB segments behind
        left = remove_segments(segments)
        if segments:
            (self.run_dir / "shm.json").write_text(json.dumps({"mapped": segments, "removed_after_stop": left}))


def make_probes(opts: LLMServingOptions, device: int) -> list[Probe]:
    if opts.accelerator == "gpu":
        from serving.probes.nvml import NvmlEnergyProbe, NvmlProbe
        return [NvmlProbe(device), NvmlEnergyProbe(device)]
    if opts.accelerator == "npu":
        from serving.probes.npu_smi import NpuPowerProbe, NpuSmiProbe
        npu = device if opts.npu_id is None else opts.npu_id
        aicore = NpuSmiProbe(npu, opts.npu_smi)
        return [aicore, aicore.hbm_probe(), NpuPowerProbe(npu, opts.npu_smi)]
    return []


def seq_type_rules(cfg: ServingYaml) -> list[str]:
    """What llm-serving's seq_type means there (mindspore_serving/worker/worker.py, agent/...):
    'dyn' pads a prefill to its longest prompt, any other value to a seq_length bucket. On the kbk
    backend with PagedAttention the agent copies each padded prompt into a row of
    pa_config.decode_seq_length tokens (WorkAgent.predict, kbk_targets), so anything but that
    exact length crashes the agent on the first request ("could not broadcast input array")."""
    m, d = cfg.model, cfg.pa_config.decode_seq_length
    if m.seq_type == "dynamic":
        return ["llm-serving reads any seq_type but 'dyn' as static: seq_type 'dyn' or 'static' must hold, "
                "got 'dynamic' (the embedded engine's spelling)"]
    if m.backend == "kbk" and m.page_attention and (m.pads_to_prompt or m.seq_length != [d]):
        return [f"kbk with page_attention pads each prompt to seq_length and the agent copies it into a "
                f"pa_config.decode_seq_length row: seq_type 'static' and seq_length [{d}] must hold, got "
                f"seq_type {m.seq_type!r}, seq_length {m.seq_length}"]
    return []


# what a checkout must hold for a run level below the real forward (the patches that add it)
LEVEL_PATCHES = [(range(1, 5), "mindspore_serving/bare_run.py", "serving/stacks/patches/llm-serving-run-levels.patch"),
                 (range(1, 6), "mindspore_serving/agent/agent_multi_post_method.py:_fake_forward",
                  "../shared/thirdparty/llm-serving-run-level-5.patch")]


def missing_patches(opts: LLMServingOptions, root: Path) -> list[str]:
    """The patches the options need (bare-run levels, emulated step time) that ``root`` lacks."""
    inherited = os.environ.get("RUN_LEVEL", "")
    level = opts.run_level if opts.run_level is not None else int(inherited) if inherited.isdigit() else 100
    out = []
    for levels, marker, patch in LEVEL_PATCHES:
        need = level in levels or (opts.emulate_profile is not None and marker.endswith("bare_run.py"))
        path, _, word = marker.partition(":")
        f = root / path
        if need and not (f.is_file() and (not word or word in f.read_text(errors="replace"))):
            out.append(f"llm_serving.run_level {level}{' with emulate_profile' if opts.emulate_profile else ''} "
                       f"needs {patch} applied to {root} (patch -p1 < it), found no {marker}")
    if opts.emulate_profile is not None and level != 5:
        out.append(f"llm_serving.emulate_profile stands in for the model forward: run_level 5 must hold, got {level}")
    return out


def emulate_step_file(profile: str, run_dir: Path) -> Path:
    """The device-time (compute) terms of a latency profile as the patched agent reads them."""
    from serving.sim.profile_io import load_profile
    lm = load_profile(profile)
    if lm.prefill_table or lm.decode_by_bucket:
        raise ConfigError(f"emulation takes a profile of linear terms; {profile!r} has measured tables "
                          "(prefill.table / decode.by_bucket)", "llm_serving", "emulate_profile")
    out = run_dir / "emulate_step.json"
    out.write_text(json.dumps({"profile": lm.name, "prefill": lm.prefill_compute, "decode": lm.decode_compute}))
    return out


def _env(opts: LLMServingOptions, root: Path, spec: LaunchSpec) -> dict[str, str]:
    env = spec.environ()  # RUN_LEVEL and the CANN variables (set_env.sh) pass through
    if opts.emulate_profile is not None:
        env["LLMS_EMULATE_STEP"] = str(emulate_step_file(opts.emulate_profile, Path(spec.run_dir)))
    paths = [str(root)] + ([opts.mindformers_root] if opts.mindformers_root else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(GRAPH_OP_RUN="1", MS_ENABLE_INTERNAL_KERNELS="on", PYTHONUNBUFFERED="1")  # unbuffered: ready lines
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ written into the checkout (it is never modified)
    if opts.run_level is not None:
        env["RUN_LEVEL"] = str(opts.run_level)
    env.update({k: str(v) for k, v in opts.env.items()})
    return env


class LLMServingStack(Stack):
    name = "llm_serving"
    surrogate = "sim"          # our engine's scheduler on a virtual clock (serving/sim/)
    calibrated_profile = "sim_profile.yaml"
    calibration = "replays"    # its decode steps, reconstructed from the client's token bursts
    options_model = LLMServingOptions
    config_format = ServingYamlFormat()

    def surrogate_options(self, options: dict[str, Any], home: Path) -> dict[str, Any] | None:
        """The profile `tune calibrate` fitted to this study's trials, else the one the stubbed forward
        emulates (its device time is the stack's), else the space's ``sim:`` section."""
        calibrated = home / self.calibrated_profile
        if calibrated.is_file():
            return {"profile": str(calibrated)}
        emulated = parse_options(options).emulate_profile
        return {"profile": emulated} if emulated else None

    def stages(self, options: dict) -> list[Stage]:
        """RUN_LEVEL 1-5 of the real code (levels 1-4 need the project's patch), then the real forward
        where there is an accelerator."""
        rows = [(1, "http", "server_app_post answers (FAKE_SERVER_APP_POST)"),
                (2, "worker", "master + scheduler, Worker.predict returns (FAKE_WORKER)"),
                (3, "dispatcher", "+ PA block tables, DisModel.call returns (FAKE_DISPATCHER)"),
                (4, "agent", "+ TCP and shared memory, WorkAgent.predict returns (FAKE_AGENT)"),
                (5, "model_call", "+ agent pre/post-processing and sampling, forward stubbed (FAKE_AGENT_CALL_MODEL)")]
        if options.get("emulate_profile"):
            rows[-1] = (5, "model_call", f"+ agent work, forward stubbed, {options['emulate_profile']} device time")
        if options.get("accelerator", "npu") != "none":
            rows.append((100, "model", "real model forward"))
        out = []
        for level, name, what in rows:
            opts = dict(options, run_level=None if level == 100 else level)
            if level != 5:
                opts.pop("emulate_profile", None)   # device time is emulated only at the stubbed forward
            out.append(Stage(level, name, what, {}, opts))
        return out

    def capabilities(self, options: dict[str, Any]) -> Capabilities:
        accel = parse_options(options).accelerator
        return Capabilities(power=accel != "none", utilisation=accel != "none",
                            note=f"llm_serving.accelerator is {accel}" + (
                                ": no device probe; the host CPU share is recorded as host_cpu_mean, "
                                "not a figure to maximise" if accel == "none" else ""))

    def check(self, cfg: ServingYaml, max_request_len: int, options: dict[str, Any]) -> list[str]:
        o = parse_options(options)
        out = common_checks(cfg, max_request_len, options)
        kv = kv_cache_bytes(cfg, o.num_layers, o.num_kv_heads, o.head_dim, o.dtype_bytes) / GIB
        if o.weights_gb + kv > o.device_memory_gb:
            pa = cfg.pa_config
            out.append(f"KV cache bytes over device memory: weights_gb + KV cache <= device_memory_gb must hold, got "
                       f"{o.weights_gb:g} + {kv:.2f} GiB (2 x {o.num_layers} layers x num_blocks {pa.num_blocks} x "
                       f"block_size {pa.block_size} x {o.num_kv_heads} kv heads x head_dim {o.head_dim} x "
                       f"{o.dtype_bytes} bytes) = {o.weights_gb + kv:.2f} GiB > {o.device_memory_gb:g} GiB")
        return out + seq_type_rules(cfg)

    def token_counter(self, base_config: Path, options: dict[str, Any]) -> Callable[[str], int] | None:
        """Tokens of a text as the server's tokenizer counts them (no BOS): SentencePiece on the config's
        ``tokenizer.vocab_file``, as performance_serving sets max_new_tokens. None without a tokenizer."""
        opts, cfg = parse_options(options), load_serving_yaml(base_config)
        ref = (cfg.tokenizer or {}).get("vocab_file")
        if not ref:
            return None
        root = Path(opts.root).expanduser().resolve() if opts.root else None
        vocab = vocab_file(cfg, opts, root)
        if vocab is None or not vocab.is_file():
            where = ", ".join(str(d) for d in lookup_dirs(opts, root)) or "no llm_serving.root/mindformers_root set"
            raise ConfigError(f"tokenizer.vocab_file must name a SentencePiece model; {ref!r} not found "
                              f"(relative paths are looked up in: {where})", base_config, "tokenizer.vocab_file")
        return sentencepiece_counter(vocab)

    def preflight(self, options: dict[str, Any]) -> list[str]:
        """The checkout (and the patches its run level needs), the interpreter and the usage tool,
        checked once before the first trial."""
        opts, out = parse_options(options), []
        try:
            out += missing_patches(opts, self._root(opts))   # the patches the run level needs
        except ConfigError as err:
            out.append(err.message)
        python = opts.python or sys.executable
        if shutil.which(python) is None:
            out.append(f"llm_serving.python must be an executable interpreter, got {python!r}")
        if opts.mindformers_root and not Path(opts.mindformers_root).expanduser().is_dir():
            out.append(f"llm_serving.mindformers_root must be a folder, got {opts.mindformers_root!r}")
        if opts.accelerator == "npu" and shutil.which(opts.npu_smi) is None:
            out.append(f"llm_serving.npu_smi must name the npu-smi tool when accelerator=npu, {opts.npu_smi!r} is "
                       "not found (set llm_serving.npu_smi=/path/to/npu-smi, or accelerator=none to measure the host CPU share)")
        return out

    def dry_start(self, config: Path, options: dict[str, Any], work_dir: Path) -> list[str]:
        """The launch scripts' imports in the stack's interpreter and environment, and the trial's YAML (as
        launch writes it) through llm-serving's ServingConfig and check_valid_config: an interpreter
        without MindSpore or a checkout that fails at import stops the study before its first trial."""
        opts = parse_options(options)
        root, python = self._root(opts), opts.python or sys.executable
        spec = LaunchSpec(config, work_dir, options=dict(options))
        trial_yaml, _ = write_trial_yaml(spec, root, opts.device_id, opts)
        scripts = [root / "examples" / s for s in ("start_agent.py", "server_app_post.py")]
        cause = run_dry_start(python, _env(opts, root, spec), trial_yaml, scripts, work_dir)
        return [] if cause is None else [f"llm_serving.python must start the checkout {root} (with PYTHONPATH as "
                                         f"trials have it); {python} failed on {cause}"]

    def export_files(self, config: Path, options: dict[str, Any], force: bool = False) -> list[Path]:
        """Beside an exported ``config``, the model yaml its trial ran with (``<name>.model.yaml``, its KV
        pool the config's), and the config pointing at it: llm-serving started on the export runs what
        was measured, not the original model yaml's pool."""
        opts, cfg = parse_options(options), load_serving_yaml(config)
        root = Path(opts.root).expanduser().resolve() if opts.root else None
        text = model_yaml(cfg, opts, root)
        if text is None:
            return []
        dst = config.with_name(f"{config.stem}.model.yaml")
        if dst.exists() and not force:
            raise ConfigError("the exported model yaml must be a new file (or add --force to replace it); this "
                              "one exists", dst, "--to")
        dst.write_text(text)
        config.write_text(set_keys(config.read_text(), {"model_config.model_cfg_path": str(dst.resolve())}, config))
        return [dst]

    def launch(self, spec: LaunchSpec) -> LLMServingRunning:
        opts = self.options_of(spec)
        root = self._root(opts)
        python = opts.python or sys.executable
        if shutil.which(python) is None:
            raise ConfigError(f"python must be an executable, got {python!r}", "llm_serving", "python")
        device = opts.device_id if spec.device_id is None else spec.device_id
        for probe in make_probes(opts, device):  # raises now, not after a 5-minute start, if npu-smi/NVML is missing
            probe.close()
        missing = missing_patches(opts, root)
        if missing:
            raise ConfigError("; ".join(missing), "llm_serving", "run_level")
        run_dir = Path(spec.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config, cfg = write_trial_yaml(spec, root, device, opts)
        deadline = time.monotonic() + spec.ready_timeout
        env = _env(opts, root, spec)
        running = LLMServingRunning({}, f"http://127.0.0.1:{cfg.serving_config.server_port}", opts, device,
                                    run_dir)
        startup: dict[str, float] = {}   # seconds each stage took to come up: run_dir/startup.json
        try:
            for name, script, line in (("agent", "start_agent.py", AGENT_READY),
                                       ("server", "server_app_post.py", SERVER_READY)):
                t = time.monotonic()
                log = run_dir / f"{name}.log"
                running.watches[name] = LogWatch(log, line)
                args = [python, str(root / "examples" / script), "--config", str(config)]
                running.procs[name] = ManagedProcess(args, log, cwd=run_dir, env=env)  # output/ lands here
                (run_dir / "pids.json").write_text(json.dumps({n: p.pgid for n, p in running.procs.items()}))  # for whoever checks the cleanup
                self._wait_line(running, name, deadline, spec.ready_timeout)
                startup[f"{name}_s"] = time.monotonic() - t
            t = time.monotonic()
            self._warm_up(running, deadline, spec.ready_timeout)
            startup["warm_up_s"] = time.monotonic() - t
            (run_dir / "startup.json").write_text(json.dumps(startup))
        except BaseException:
            running.stop()
            raise
        return running

    @staticmethod
    def _root(opts: LLMServingOptions) -> Path:
        if not opts.root:
            raise ConfigError("llm_serving.root must name the llm-serving checkout "
                              "(e.g. tune ... backend=llm_serving llm_serving.root=/path/to/llm-serving)",
                              "llm_serving", "root")
        root = Path(opts.root).expanduser().resolve()
        for script in ("start_agent.py", "server_app_post.py"):
            if not (root / "examples" / script).is_file():
                raise ConfigError(f"llm_serving.root must hold examples/{script}; not found in {root}",
                                  "llm_serving", "root")
        return root

    @staticmethod
    def _check_crash(running: LLMServingRunning, before: str) -> None:
        """A process that exited or logged a Traceback fails the start (class from its log, cause in the detail)."""
        for n, p in running.procs.items():
            w = running.watches[n]
            w.scan()
            if w.traceback or not p.alive():
                time.sleep(0.3)  # let the rest of the traceback reach the log
                why = f"{n} logged a Traceback" if p.alive() else f"{n} exited with code {p.returncode}"
                tail_ = running.log_tail()
                cause = failures.last_error(tail_)
                raise LaunchError(failures.classify_log(tail_, failures.CRASH_AT_START),
                                  f"{why} before {before}" + (f": {cause}" if cause else ""), tail_)

    @classmethod
    def _wait_line(cls, running: LLMServingRunning, name: str, deadline: float, budget: float) -> None:
        """Until ``name``'s ready line is logged; a process exiting or logging a Traceback fails the start."""
        line = running.watches[name].line
        while True:
            running.watches[name].scan()
            if running.watches[name].ready and not running.watches[name].traceback:
                return
            cls._check_crash(running, f"{line!r} was logged")
            if time.monotonic() > deadline:
                tail_ = running.log_tail()
                raise LaunchError(failures.classify_log(tail_, failures.READY_TIMEOUT),
                                  f"no {line!r} in {name}.log within timeouts.ready = {budget:g} s (hung start)", tail_)
            time.sleep(0.1)

    @classmethod
    def _warm_up(cls, running: LLMServingRunning, deadline: float, budget: float) -> None:
        """One small request: the first one compiles graphs (about 30 s on a 910B), so no trial times it.
        The processes are watched meanwhile: an agent that dies on its first batch leaves the server
        holding the request open (it never answers), which must read as a crash, not a timeout."""
        body = {"inputs": "I love Beijing, because", "stream": False,
                "parameters": {"max_new_tokens": running.opts.warmup_tokens, "do_sample": False}}
        req = urllib.request.Request(running.url + "/models/llama2/generate", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})

        def ask() -> None:
            with urllib.request.urlopen(req, timeout=max(1.0, deadline - time.monotonic())) as resp:
                first = resp.read().decode("utf-8", "replace").strip().splitlines()[:1]
            if not first or "generated_text" not in json.loads(first[0]):
                raise ValueError(f"no generated_text in {first[:1]!r}")

        pool = ThreadPoolExecutor(1, thread_name_prefix="warm-up")
        try:
            fut = pool.submit(ask)
            while True:
                try:
                    fut.result(timeout=0.2)
                    break
                except FutureTimeout:
                    if fut.done() or time.monotonic() > deadline + 1:
                        raise
                    cls._check_crash(running, "the warm-up request was answered")
        except (urllib.error.URLError, OSError, ValueError, FutureTimeout) as err:
            tail_ = running.log_tail()
            timed_out = isinstance(err, FutureTimeout) or isinstance(getattr(err, "reason", err), TimeoutError)
            default = (failures.READY_TIMEOUT if timed_out else
                       failures.CRASH_AT_START if not running.alive() else failures.BAD_RESPONSE)
            raise LaunchError(failures.classify_log(tail_, default),
                              f"warm-up request failed within timeouts.ready = {budget:g} s: {err!r}", tail_) from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
