"""Stacks by backend name. A new stack is one module, made known by one of: a line here (the
stacks shipped), ``register_stack`` from Python, or an entry point of group ``serving_tuner.stacks``
in its own distribution's metadata (an out-of-tree stack: ``pip install`` it and ``backend=<name>``
works, in every process, with no change to this tree)::

    [project.entry-points."serving_tuner.stacks"]
    mystack = "my_package.stack:MyStack"
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from serving.stacks.base import Stack

__all__ = ["DEFAULT_BACKEND", "ENTRY_POINT_GROUP", "register_stack", "get_stack", "stack_names"]

ENTRY_POINT_GROUP = "serving_tuner.stacks"
#: the stack a study runs on when its space names none: runs on any machine
DEFAULT_BACKEND = "embedded"

_STACKS: dict[str, str | type[Stack]] = {
    "embedded": "serving.stacks.embedded:EmbeddedStack",
    "llm_serving": "serving.stacks.llm_serving:LLMServingStack",
    "sim": "serving.stacks.sim:SimStack",
    "vllm": "serving.stacks.vllm:VLLMStack",
    "vllm_sim": "serving.stacks.vllm_sim:VllmSimStack",
}


def register_stack(name: str, stack: str | type[Stack]) -> None:
    """Make ``backend=<name>`` launch ``stack`` (a Stack subclass, or "module:Class" imported on use)."""
    if not name.isidentifier():
        raise ValueError(f"a backend name must be an identifier, got {name!r}")
    _STACKS[name] = stack


_plugins_read = False


def _read_plugins() -> None:
    """Adds the installed distributions' stacks once; a name shipped or registered here wins."""
    global _plugins_read
    if not _plugins_read:
        _plugins_read = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name.isidentifier():
                _STACKS.setdefault(ep.name, ep.value)


def stack_names() -> list[str]:
    _read_plugins()
    return sorted(_STACKS)


def get_stack(name: str) -> Stack:
    _read_plugins()
    if name not in _STACKS:
        raise ValueError(f"backend must be one of {stack_names()}, got {name!r}")
    target = _STACKS[name]
    if isinstance(target, str):
        module, cls = target.split(":")
        target = getattr(importlib.import_module(module), cls)
    return target()
