"""What every stack offers the tuner, and all the tuner may ask of it.

A stack is a plug-in: one module under ``serving/stacks/`` (or anywhere importable) with a
``Stack`` subclass, named in the registry (serving.stacks.registry.register_stack). It owns
its options (the space's ``<backend>:`` section, a pydantic model), its config format
(render, load, pre-launch checks), its launch and stop, the process groups it started,
its usage probes and which one is the utilisation, and how a planned workload is replayed
against it (its wire protocol). The tuner never asks what kind of stack it holds.
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from serving.config.errors import from_validation_error
from serving.config.format import ConfigFormat
from serving.probes.base import Probe, ProbeSampler
from serving.replay.client import Replayer, StopCondition, run_loop
from serving.replay.workers import workers_for
from serving.replay.pool import SenderPool
from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.stacks.watch import DeathStop, ProcessWatch
from serving.workload import Plan, RequestRecord

__all__ = ["Capabilities", "LaunchSpec", "LaunchError", "RunningStack", "Stack", "StackOptions", "ReplayResult",
           "Plan", "Stage"]


@dataclass(frozen=True)
class Capabilities:
    """What a stack launched with given options can measure beyond the replay's own figures, so a
    space that asks for more is refused when it is loaded, not after every trial failed.

    ``power``: a power probe runs (energy_j, energy_j_per_token). ``utilisation``: a busy figure of
    what serves is a trial's ``utilisation``; False where there is none worth maximising (a host
    CPU share rewards the configuration that burns most CPU); None when the stack does not say."""
    power: bool = False
    utilisation: bool | None = None
    #: why a figure is missing, for the error that refuses the space (e.g. "accelerator none")
    note: str = ""

@dataclass
class LaunchSpec:
    config_path: Path          # the trial's rendered config
    run_dir: Path              # logs and artifacts go here; also the stack's working directory
    ready_timeout: float = 120.0
    device_id: int | None = None
    options: dict[str, Any] = field(default_factory=dict)   # the space's section, validated by options_model
    env: dict[str, str] = field(default_factory=dict)       # added to every process the stack starts (trial tag)
    config: Any = None         # the config as the stack's config_format loaded it (typed), or None: load it
    settings: Any = None       # ``options`` as the stack's options_model typed them, or None: type them

    def loaded(self, load: Callable[[Path], Any]) -> Any:
        """The typed config: the one the trial loaded and checked, else ``load(config_path)``."""
        return self.config if self.config is not None else load(self.config_path)

    def environ(self, **extra: str) -> dict[str, str]:
        """The environment for a process the stack starts: ours, the spec's, then ``extra``."""
        return {**os.environ, **self.env, **extra}


class LaunchError(RuntimeError):
    """The stack did not come up; ``fail_class`` says why (serving.stacks.failures)."""

    def __init__(self, fail_class: str, detail: str, log_tail: str = ""):
        super().__init__(f"{fail_class}: {detail}")
        self.fail_class, self.detail, self.log_tail = fail_class, detail, log_tail


@dataclass(frozen=True)
class Reading:
    key: str          # dotted key of the trial's config (model_config.decode_batch_size, max_num_seqs)
    value: Any        # what the stack runs with
    source: str       # where it was read, for the failure detail


@dataclass
class ReplayResult:
    records: list[RequestRecord]
    usage: dict[str, float]      # probe summaries: <probe>_mean, _peak, _samples
    read_lags: list[float] = field(default_factory=list)   # the client's loop-lag samples (serving.replay.client)


@dataclass(frozen=True)
class Stage:
    """One row of a bare run: every request stops at this stage of the stack (the seeds' RUN_LEVEL)."""
    level: int
    name: str
    what: str
    params: dict[str, Any] = field(default_factory=dict)   # config keys set for this row
    options: dict[str, Any] | None = None                  # the stack's options for this row (None: as given)


class StackOptions(BaseModel):
    """Base of a stack's options model: unknown keys are rejected when the space is loaded."""
    model_config = ConfigDict(extra="forbid")


class RunningStack(abc.ABC):
    url: str = ""
    #: how requests are sent and answers read: each stack names its own (no default, so a stack
    #: that forgets it fails loudly instead of silently speaking another stack's API)
    protocol: WireProtocol
    #: the probe whose mean is the trial's ``utilisation`` (None: the stack has no usage figure)
    utilisation: str | None = None
    #: seconds between polls of the usage probes during a replay (a poll's work shares the replay
    #: client's process: a stack whose probes cost more polls less often)
    probe_interval: float = 0.25
    #: why the stack's death ended a replay (serving.stacks.watch); None while it serves
    died: str | None = None
    _watch: ProcessWatch | None = None      # the stack's processes as the first replay found them
    _senders: SenderPool | None = None      # sender processes of fast replays (senders())

    @property
    @abc.abstractmethod
    def pgids(self) -> list[int]:
        """Process groups this stack started (for resume after a crash, and memory sampling)."""

    @abc.abstractmethod
    def alive(self) -> bool: ...

    def probes(self) -> list[Probe]:
        return []

    @abc.abstractmethod
    def log_tail(self, max_chars: int = 4000) -> str: ...

    def read_back(self) -> list["Reading"]:
        """What the launched processes run with, one reading per config key the stack can report
        (serving.stacks.readback compares them with the trial's config); [] when it can tell nothing."""
        return []

    @abc.abstractmethod
    def _stop(self) -> None:
        """End what the stack started (its process groups, its shared memory)."""

    def stop(self) -> None:
        """End the stack, then the sender processes its replays used."""
        try:
            self._stop()
        finally:
            self.close_senders()

    def replay(self, plan: Plan, options: ReplayOptions,
               on_request: Callable[[RequestRecord], None] | None = None,
               deadline: float | None = None, stop: StopCondition | None = None) -> ReplayResult:
        """Replay ``plan`` (send offset, request) and return one record per request and the usage."""
        if self.pgids:   # a process of the stack dying ends the replay once nothing progresses (serving.stacks.watch)
            if self._watch is None:
                self._watch = ProcessWatch(self.pgids)
            stop = DeathStop(self._watch, stop)
        workers = workers_for(plan, options.workers)
        # a fast plan goes out from the stack's sender processes (serving.replay.pool), started
        # before the probes sample so their start-up is never in the usage figures
        senders = self.senders(workers) if workers > 1 else None
        with ProbeSampler(self.probes(), self.probe_interval) as sampler:
            if senders is not None:
                records = senders.replay(self.url, self.protocol, options, plan, on_request, deadline, stop)
                lags = senders.read_lags
            else:
                replayer = Replayer(self.url, self.protocol, options, on_request)
                records = run_loop(replayer.run(plan, deadline, stop))
                lags = replayer.read_lags
        if isinstance(stop, DeathStop) and stop.died:
            self.died = stop.died
        return ReplayResult(records, sampler.summary(), lags)

    def whole(self) -> bool:
        """Alive, and no process of it died during a replay (a leader may outlive its agents)."""
        return self.alive() and self.died is None

    def senders(self, workers: int) -> SenderPool:
        """This stack's sender processes: started by the first fast replay, reused by every later one
        (a capacity search replays ten times or more), ended by ``stop()``."""
        if self._senders is not None and (self._senders.size != workers or self._senders.closed):
            self.close_senders()
        if self._senders is None:
            self._senders = SenderPool(workers)
        return self._senders

    def close_senders(self) -> None:
        if self._senders is not None:
            self._senders.close()
            self._senders = None

    def __enter__(self) -> "RunningStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Stack(abc.ABC):
    name: str
    options_model: type[StackOptions] = StackOptions
    serves_http: bool = True     # False for a stack that only replays in-process (the simulator)
    #: the route a running stack reports its per-step timings on (tune calibrate fits the simulator's
    #: profile from them); None: it reports none
    steps_route: str | None = None
    #: its config format (render, load, pre-launch checks): each stack names its own
    config_format: ConfigFormat
    #: the backend that simulates this stack (pre-screen, warm start, probes); None: it has no surrogate
    surrogate: str | None = None
    #: where under trials/<study>/ `tune calibrate` keeps the simulator profile it fits to the steps this
    #: stack's replays show (tuner.tools.calibrate_replays), for a stack with no steps route; None: not so
    calibrated_profile: str | None = None
    #: how `tune calibrate` fits this stack's simulator: "steps" (from the per-step timings its
    #: ``steps_route`` reports), "replays" (the decode steps its replays show, into ``calibrated_profile``),
    #: "surrogate" (its surrogate's own ``calibrate``); None: it has no calibration
    calibration: Literal["steps", "replays", "surrogate"] | None = None

    def surrogate_options(self, options: dict[str, Any], home: Path) -> dict[str, Any] | None:
        """The options the surrogate launches with, given this stack's (``home``: the study's folder under
        trials/, where a calibration keeps its profile); None: the surrogate's own section of the space."""
        return None

    def parse_options(self, section: dict[str, Any]) -> StackOptions:
        """The space's section for this stack, typed (pydantic ValidationError when bad)."""
        return self.options_model.model_validate(section or {})

    def options_of(self, spec: LaunchSpec) -> StackOptions:
        """A launch's options, typed: those the trial typed once (``spec.settings``), else typed here."""
        if isinstance(spec.settings, self.options_model):
            return spec.settings
        try:
            return self.parse_options(spec.options)
        except ValidationError as err:
            raise from_validation_error(err, f"search space section {self.name}") from None

    def check(self, cfg: Any, max_request_len: int, options: dict[str, Any]) -> list[str]:
        """Rules a config breaks before anything is launched (empty = launchable)."""
        return self.config_format.check(cfg, max_request_len, options)

    def token_counter(self, base_config: Path, options: dict[str, Any]) -> Callable[[str], int] | None:
        """Counts tokens of a text as the served model's tokenizer does (prompt and output lengths of
        a trace); None when the stack has no tokenizer of its own (the trace's word count is used)."""
        return None

    def stages(self, options: dict[str, Any]) -> list[Stage]:
        """The stages a bare run stops requests at, first to last (empty: the stack has none)."""
        return []

    def ignored_keys(self, options: dict[str, Any]) -> dict[str, str]:
        """{config key: why} for keys the stack takes and does not use on the platform ``options`` name:
        a space tuning one is refused at load (it would measure one configuration under many names)."""
        return {}

    def capabilities(self, options: dict[str, Any]) -> Capabilities:
        """What a launch with these (validated) options can measure; the base declares no power probe."""
        return Capabilities()

    def preflight(self, options: dict[str, Any]) -> list[str]:
        """What the host lacks to launch this stack at all (a checkout, an interpreter, a tool):
        checked once when a study starts, before the first trial."""
        return []

    def dry_start(self, config: Path, options: dict[str, Any], work_dir: Path) -> list[str]:
        """What the stack's own code says of a rendered ``config`` without serving it (its imports in its
        interpreter, its own config parser), run in ``work_dir`` (a scratch folder) once before the first
        trial: a host that cannot start the stack stops the study there, never as infeasible trials."""
        return []

    def export_files(self, config: Path, options: dict[str, Any], force: bool = False) -> list[Path]:
        """Files besides an exported ``config`` that a trial ran with, written next to it (the config made
        to name them); the paths written. ConfigError when one exists and not ``force``."""
        return []

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> RunningStack: ...
