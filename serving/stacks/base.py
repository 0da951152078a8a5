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
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from serving.config.format import ConfigFormat, ServingYamlFormat
from serving.probes.base import Probe, ProbeSampler
from serving.replay.client import Replayer, StopCondition, run_loop
from serving.replay.workers import workers_for
from serving.replay.pool import SenderPool
from serving.replay.llm_serving import LLMServingProtocol
from serving.replay.protocol import ReplayOptions, WireProtocol
from serving.workload import Plan, RequestRecord

__all__ = ["LaunchSpec", "LaunchError", "RunningStack", "Stack", "StackOptions", "ReplayResult", "Plan"]

@dataclass
class LaunchSpec:
    config_path: Path          # the trial's rendered config
    run_dir: Path              # logs and artifacts go here; also the stack's working directory
    ready_timeout: float = 120.0
    device_id: int | None = None
    options: dict[str, Any] = field(default_factory=dict)   # the space's section, validated by options_model
    env: dict[str, str] = field(default_factory=dict)       # added to every process the stack starts (trial tag)

    def environ(self, **extra: str) -> dict[str, str]:
        """The environment for a process the stack starts: ours, the spec's, then ``extra``."""
        return {**os.environ, **self.env, **extra}


class LaunchError(RuntimeError):
    """The stack did not come up; ``fail_class`` says why (serving.stacks.failures)."""

    def __init__(self, fail_class: str, detail: str, log_tail: str = ""):
        super().__init__(f"{fail_class}: {detail}")
        self.fail_class, self.detail, self.log_tail = fail_class, detail, log_tail


@dataclass
class ReplayResult:
    records: list[RequestRecord]
    usage: dict[str, float]      # probe summaries: <probe>_mean, _peak, _samples


class StackOptions(BaseModel):
    """Base of a stack's options model: unknown keys are rejected when the space is loaded."""
    model_config = ConfigDict(extra="forbid")


class RunningStack(abc.ABC):
    url: str = ""
    #: how requests are sent and answers read (llm-serving's API unless the stack says otherwise)
    protocol: WireProtocol = LLMServingProtocol()
    #: the probe whose mean is the trial's ``utilisation`` (None: the stack has no usage figure)
    utilisation: str | None = None

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
        workers = workers_for(plan, options.workers)
        # a fast plan goes out from the stack's sender processes (serving.replay.pool), started
        # before the probes sample so their start-up is never in the usage figures
        senders = self.senders(workers) if workers > 1 else None
        with ProbeSampler(self.probes()) as sampler:
            if senders is not None:
                records = senders.replay(self.url, self.protocol, options, plan, on_request, deadline, stop)
            else:
                records = run_loop(Replayer(self.url, self.protocol, options, on_request).run(plan, deadline, stop))
        return ReplayResult(records, sampler.summary())

    _senders: SenderPool | None = None

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
    config_format: ConfigFormat = ServingYamlFormat()
    #: the backend that simulates this stack (pre-screen, warm start, probes); None: it has no surrogate
    surrogate: str | None = None

    def surrogate_options(self, options: dict[str, Any], home: Path) -> dict[str, Any] | None:
        """The options the surrogate launches with, given this stack's (``home``: the study's folder under
        trials/, where a calibration keeps its profile); None: the surrogate's own section of the space."""
        return None

    def parse_options(self, section: dict[str, Any]) -> StackOptions:
        """The space's section for this stack, typed (pydantic ValidationError when bad)."""
        return self.options_model.model_validate(section or {})

    def check(self, cfg: Any, max_request_len: int, options: dict[str, Any]) -> list[str]:
        """Rules a config breaks before anything is launched (empty = launchable)."""
        return self.config_format.check(cfg, max_request_len, options)

    def token_counter(self, base_config: Path, options: dict[str, Any]) -> Callable[[str], int] | None:
        """Counts tokens of a text as the served model's tokenizer does (prompt and output lengths of
        a trace); None when the stack has no tokenizer of its own (the trace's word count is used)."""
        return None

    def preflight(self, options: dict[str, Any]) -> list[str]:
        """What the host lacks to launch this stack at all (a checkout, an interpreter, a tool):
        checked once when a study starts, before the first trial."""
        return []

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> RunningStack: ...
