"""backend=sim: "launch" builds a simulator for the trial's rendered config; nothing is started.

Options (the space's ``sim:`` section): ``profile`` (a bundled profile name or a
YAML path; default ``embedded`` for a config with an ``engine_config`` section,
i.e. the tiny embedded model, else ``ascend910b_llama2_7b``) and ``busy_window``
(seconds per busy-% sample, default 0.25 like the probe sampler).
"""
from __future__ import annotations

from collections.abc import Callable

from serving.config.errors import ConfigError
from serving.config.schema import ServingYaml, load_serving_yaml
from serving.probes.base import Probe
from serving.sim.latency import LatencyModel
from serving.sim.profile_io import load_profile
from serving.sim.simulator import SimSettings, simulate
from serving.stacks import failures
from pydantic import Field

from serving.replay.protocol import ReplayOptions
from serving.stacks.base import (LaunchError, LaunchSpec, Plan, ReplayResult, RunningStack, Stack,
                                 StackOptions)
from serving.workload import RequestRecord


class SimOptions(StackOptions):
    """The space's ``sim:`` section."""
    profile: str | None = None                    # bundled profile name or YAML path
    busy_window: float = Field(0.25, gt=0)        # seconds per busy-% sample


def default_profile(cfg: ServingYaml) -> str:
    return "embedded" if cfg.engine_config is not None else "ascend910b_llama2_7b"


def cut_at_deadline(records: list[RequestRecord], deadline: float) -> None:
    """What the real replay keeps when it stops at ``deadline`` seconds (timeouts.replay): requests
    unfinished by then end with its timeout error, and tokens after it were never read."""
    for rec in records:
        if rec.done is None or rec.done <= deadline:
            continue
        if rec.sent is not None and rec.sent > deadline:
            rec.sent = None                              # never sent
        rec.token_times = [t for t in rec.token_times if t <= deadline]
        rec.n_tokens = len(rec.token_times)
        if rec.first_token is not None and rec.first_token > deadline:
            rec.first_token = None
        rec.done, rec.finish_reason, rec.error = None, None, "timeout: replay deadline"


class SimRunning(RunningStack):
    url = "sim://"
    utilisation = "sim_busy"
    pgids: list[int] = []   # nothing runs

    def __init__(self, settings: SimSettings, latency: LatencyModel, busy_window: float = 0.25):
        self.settings, self.latency, self.busy_window = settings, latency, busy_window

    def replay(self, plan: Plan, options: ReplayOptions | None = None,
               on_request: Callable[[RequestRecord], None] | None = None,
               deadline: float | None = None, stop=None) -> ReplayResult:
        """The plan on the virtual clock; ``options`` and ``stop`` do not apply to a simulated server."""
        result = simulate(self.settings, self.latency, plan, on_request)
        if deadline is not None:
            cut_at_deadline(result.records, deadline)
        return ReplayResult(result.records, result.usage(self.busy_window))

    def alive(self) -> bool:
        return True

    def probes(self) -> list[Probe]:
        return []

    def log_tail(self, max_chars: int = 4000) -> str:
        return ""

    def _stop(self) -> None:
        pass


class SimStack(Stack):
    name = "sim"
    surrogate = "sim"          # our engine's scheduler on a virtual clock (serving/sim/)
    options_model = SimOptions
    serves_http = False

    def launch(self, spec: LaunchSpec) -> SimRunning:
        opts = SimOptions.model_validate(spec.options or {})
        try:
            cfg = load_serving_yaml(spec.config_path)
            latency = load_profile(opts.profile or default_profile(cfg))
        except ConfigError as err:
            raise LaunchError(failures.CONFIG_REJECTED, str(err)) from None
        return SimRunning(SimSettings.from_config(cfg), latency, opts.busy_window)
