"""backend=sim: "launch" builds a simulator for the trial's rendered config; nothing is started.

Options (the space's ``sim:`` section): ``profile`` (a bundled profile name or a
YAML path; default ``embedded`` for a config with an ``engine_config`` section,
i.e. the tiny embedded model, else ``ascend910b_llama2_7b``), ``busy_window``
(seconds per busy-% sample, default 0.25 like the probe sampler) and ``tokenizer``
(what a trace's lengths are counted with; default the profile's model's, serving.sim.tokenizer).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from serving.config.errors import ConfigError
from serving.config.schema import ServingYaml, load_serving_yaml
from serving.probes.base import Probe
from serving.sim.latency import LatencyModel
from serving.sim.profile_io import default_profile, load_profile
from serving.sim.simulator import SimSettings, simulate
from serving.sim.tokenizer import sim_counter
from serving.stacks import failures
from pydantic import Field

from serving.config.format import ServingYamlFormat
from serving.replay.llm_serving import LLMServingProtocol
from serving.replay.client import STOPPED, StopCondition
from serving.replay.protocol import ReplayOptions
from serving.stacks.base import (LaunchError, LaunchSpec, Plan, ReplayResult, RunningStack, Stack,
                                 StackOptions)
from serving.workload import RequestRecord, first_event_time


class SimOptions(StackOptions):
    """The space's ``sim:`` section."""
    profile: str | None = None                    # bundled profile name or YAML path
    busy_window: float = Field(0.25, gt=0)        # seconds per busy-% sample
    tokenizer: str | None = None                  # trace lengths: a tokenizer path or 'words' (serving.sim.tokenizer)


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


def seen_by(rec: RequestRecord, at: float) -> RequestRecord:
    """The record as a live client would hold it ``at`` seconds into the replay."""
    if rec.done is not None and rec.done <= at:
        return rec
    tokens = [t for t in rec.token_times if t <= at]
    return dataclasses.replace(
        rec, sent=rec.sent if rec.sent is not None and rec.sent <= at else None,
        first_token=rec.first_token if rec.first_token is not None and rec.first_token <= at else None,
        token_times=tokens, n_tokens=len(tokens), done=None, finish_reason=None, error=None)


def apply_stop(records: list[RequestRecord], stop: StopCondition) -> None:
    """Ends a simulated replay where a live stop condition, polled as events arrive, would have:
    the first event time at which ``stop.check`` fires on what was seen by then. Requests unfinished
    at that time end as the live client leaves them (never sent or cut off, ``STOPPED``)."""
    sent = [r.sent for r in records if r.sent is not None]
    if not sent:
        return
    t0 = min(sent)

    def fires(at: float) -> bool:
        return bool(stop.check(at - t0, [seen_by(r, at) for r in records]))

    at = first_event_time(records, fires)
    if at is None:
        return
    fires(at)                           # leaves the condition's own state (its reason) as of that time
    stop.fired = True
    for i, rec in enumerate(records):
        if rec.done is None or rec.done > at:
            records[i] = dataclasses.replace(seen_by(rec, at), error=STOPPED)


class VirtualRunning(RunningStack):
    """A stack simulated on a virtual clock: nothing runs, a replay is computed. The replay's deadline
    and stop condition cut the records where a live replay would have been cut (so a capacity search
    or early stop is charged what a real stack would be), and ``on_request`` sees each sent request
    once, in its final state, as the live client reports it. Subclasses compute ``simulate``."""
    pgids: list[int] = []   # nothing runs
    stopped = False

    def simulate(self, plan: Plan) -> tuple[list[RequestRecord], dict[str, float]]:
        """The plan's records, whole, and the usage figures of the simulated replay."""
        raise NotImplementedError

    def replay(self, plan: Plan, options: ReplayOptions | None = None,
               on_request: Callable[[RequestRecord], None] | None = None,
               deadline: float | None = None, stop=None) -> ReplayResult:
        records, usage = self.simulate(plan)
        if deadline is not None:
            cut_at_deadline(records, deadline)
        if stop is not None:
            apply_stop(records, stop)
        if on_request:
            for rec in records:
                if rec.sent is not None:
                    on_request(rec)
        return ReplayResult(records, usage)

    def alive(self) -> bool:   # nothing runs, but a stopped stack says so like any other
        return not self.stopped

    def probes(self) -> list[Probe]:
        return []

    def log_tail(self, max_chars: int = 4000) -> str:
        return ""

    def _stop(self) -> None:
        self.stopped = True


class SimRunning(VirtualRunning):
    url = "sim://"
    protocol = LLMServingProtocol()   # nothing is sent; the protocol names the API the sim stands for
    utilisation = "sim_busy"

    def __init__(self, settings: SimSettings, latency: LatencyModel, busy_window: float = 0.25):
        self.settings, self.latency, self.busy_window = settings, latency, busy_window

    def simulate(self, plan: Plan) -> tuple[list[RequestRecord], dict[str, float]]:
        result = simulate(self.settings, self.latency, plan)
        return result.records, result.usage(self.busy_window)


class SimStack(Stack):
    name = "sim"
    surrogate = "sim"          # our engine's scheduler on a virtual clock (serving/sim/)
    options_model = SimOptions
    config_format = ServingYamlFormat()   # the engine's and llm-serving's YAML
    serves_http = False

    def token_counter(self, base_config, options) -> Callable[[str], int] | None:
        """The tokenizer of the model the profile describes (serving.sim.tokenizer)."""
        opts = SimOptions.model_validate(options or {})
        try:
            profile = opts.profile or default_profile(load_serving_yaml(base_config))
        except ConfigError:
            return None   # a base config that does not load is reported where it is loaded, with its key
        return sim_counter(base_config, profile, opts.tokenizer)

    def launch(self, spec: LaunchSpec) -> SimRunning:
        opts = self.options_of(spec)
        try:
            cfg = spec.loaded(load_serving_yaml)
            latency = load_profile(opts.profile or default_profile(cfg))
        except ConfigError as err:
            raise LaunchError(failures.CONFIG_REJECTED, str(err)) from None
        return SimRunning(SimSettings.from_config(cfg), latency, opts.busy_window)
