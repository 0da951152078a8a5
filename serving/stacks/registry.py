"""Stacks by backend name. A new stack is one module and one ``register_stack`` call (or line here)."""
from __future__ import annotations

import importlib

from serving.stacks.base import Stack

__all__ = ["register_stack", "get_stack", "stack_names"]

_STACKS: dict[str, str | type[Stack]] = {
    "embedded": "serving.stacks.embedded:EmbeddedStack",
    "llm_serving": "serving.stacks.llm_serving:LLMServingStack",
    "sim": "serving.sim.stack:SimStack",
    "vllm": "serving.stacks.vllm:VLLMStack",
    "vllm_sim": "serving.sim.vllm_stack:VllmSimStack",
}


def register_stack(name: str, stack: str | type[Stack]) -> None:
    """Make ``backend=<name>`` launch ``stack`` (a Stack subclass, or "module:Class" imported on use)."""
    if not name.isidentifier():
        raise ValueError(f"a backend name must be an identifier, got {name!r}")
    _STACKS[name] = stack


def stack_names() -> list[str]:
    return sorted(_STACKS)


def get_stack(name: str) -> Stack:
    if name not in _STACKS:
        raise ValueError(f"backend must be one of {stack_names()}, got {name!r}")
    target = _STACKS[name]
    if isinstance(target, str):
        module, cls = target.split(":")
        target = getattr(importlib.import_module(module), cls)
    return target()
