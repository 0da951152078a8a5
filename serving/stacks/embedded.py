"""The default stack: our embedded engine as one server process on a free loopback port."""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from serving.config.format import ServingYamlFormat
from serving.config.schema import load_serving_yaml
from serving.probes.base import Probe
from serving.probes.engine import EngineBusyProbe
from serving.replay.llm_serving import LLMServingProtocol
from serving.stacks.base import LaunchSpec, RunningStack, Stack, StackOptions, Stage
from serving.procs.process import ManagedProcess
from serving.stacks.readback import Reading
from serving.stacks.readiness import http_ok, wait_until


class EmbeddedRunning(RunningStack):
    protocol = LLMServingProtocol()   # the engine serves llm-serving's API
    utilisation = "engine_busy"

    def __init__(self, proc: ManagedProcess, url: str):
        self.proc, self.url = proc, url

    @property
    def pgids(self) -> list[int]:
        return [self.proc.pgid]

    def alive(self) -> bool:
        return self.proc.alive()

    def probes(self) -> list[Probe]:
        return [EngineBusyProbe(self.url)]

    def log_tail(self, max_chars: int = 4000) -> str:
        return self.proc.log_tail(max_chars)

    def read_back(self) -> list[Reading]:
        """The engine's /config: the pool and batch buckets its block manager and scheduler hold."""
        with urllib.request.urlopen(self.url + "/config", timeout=10) as resp:
            found = json.loads(resp.read())
        return [Reading(k, v, "the engine's /config") for k, v in found.items()]

    def _stop(self) -> None:
        self.proc.stop()


class EmbeddedOptions(StackOptions):
    """The space's ``embedded:`` section."""
    host: str = "127.0.0.1"


class EmbeddedStack(Stack):
    name = "embedded"
    surrogate = "sim"          # our engine's scheduler on a virtual clock (serving/sim/)
    options_model = EmbeddedOptions
    config_format = ServingYamlFormat()   # llm-serving's YAML, engine_config added
    steps_route = "/metrics/steps"        # the engine's own step records (serving.engine.server)
    calibration = "steps"

    def stages(self, options: dict) -> list[Stage]:
        """The engine's stub levels: the HTTP handler answers, the scheduler runs without the model, all of it."""
        return [Stage(1, "http", "answered by the HTTP handler", {"engine_config.stub": "http"}),
                Stage(2, "scheduler", "scheduled with KV blocks, no model", {"engine_config.stub": "scheduler"}),
                Stage(3, "model", "real model forward", {"engine_config.stub": None})]

    def launch(self, spec: LaunchSpec) -> EmbeddedRunning:
        host = self.options_of(spec).host
        port_file = Path(spec.run_dir) / "port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "serving.engine.server", "--config", str(spec.config_path),
                "--host", host, "--port", "0", "--port-file", str(port_file)]
        engine = spec.loaded(load_serving_yaml).engine_config
        threads = str(engine.threads if engine else 1)
        # BLAS reads its thread count at import, so it is set in the child's environment
        env = spec.environ(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return start_server(args, spec, host, port_file, env)


def start_server(args: list[str], spec: LaunchSpec, host: str, port_file: Path,
                 env: dict | None = None) -> EmbeddedRunning:
    """Start an engine server process; ready once it wrote its port and /health answers."""
    proc = ManagedProcess(args, Path(spec.run_dir) / "engine.log", env=env if env is not None else spec.environ())
    state: dict[str, str] = {}

    def ready() -> bool:
        if "url" not in state and port_file.exists():
            state["url"] = f"http://{host}:{port_file.read_text().strip()}"
        return "url" in state and http_ok(state["url"] + "/health")

    try:
        wait_until(ready, proc.alive, spec.ready_timeout, proc.log_tail, "ready")
    except BaseException:
        proc.stop()
        raise
    return EmbeddedRunning(proc, state["url"])
