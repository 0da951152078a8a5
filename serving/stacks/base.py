"""What every stack offers the tuner: pre-launch checks, launch, probes, stop."""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.config.schema import ServingYaml
from serving.probes.base import Probe


@dataclass
class LaunchSpec:
    config_path: Path          # the trial's rendered serving YAML
    run_dir: Path              # logs and artifacts go here
    ready_timeout: float = 120.0
    device_id: int | None = None
    options: dict[str, Any] = field(default_factory=dict)   # the space's per-backend section


class LaunchError(RuntimeError):
    """The stack did not come up; ``fail_class`` says why (serving.stacks.failures)."""

    def __init__(self, fail_class: str, detail: str, log_tail: str = ""):
        super().__init__(f"{fail_class}: {detail}")
        self.fail_class, self.detail, self.log_tail = fail_class, detail, log_tail


class RunningStack(abc.ABC):
    url: str

    @abc.abstractmethod
    def alive(self) -> bool: ...

    @abc.abstractmethod
    def probes(self) -> list[Probe]: ...

    @abc.abstractmethod
    def log_tail(self, max_chars: int = 4000) -> str: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> "RunningStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Stack(abc.ABC):
    name: str

    def check(self, cfg: ServingYaml, max_request_len: int, options: dict[str, Any]) -> list[str]:
        """Rules a config breaks before anything is launched (empty = launchable)."""
        from serving.config.checks import common_checks
        return common_checks(cfg, max_request_len, options)

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> RunningStack: ...


_STACKS = {"embedded": "serving.stacks.embedded:EmbeddedStack",
           "llm_serving": "serving.stacks.llm_serving:LLMServingStack",
           "sim": "serving.sim.stack:SimStack"}


def get_stack(name: str) -> Stack:
    if name not in _STACKS:
        raise ValueError(f"backend must be one of {sorted(_STACKS)}, got {name!r}")
    module, cls = _STACKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
