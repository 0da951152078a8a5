"""Launchers for whole serving stacks, one per backend, behind one interface (base.Stack)."""
from serving.stacks.base import (LaunchError, LaunchSpec, ReplayResult, RunningStack, Stack,
                                 StackOptions)
from serving.stacks.registry import get_stack, register_stack, stack_names

__all__ = ["LaunchError", "LaunchSpec", "ReplayResult", "RunningStack", "Stack", "StackOptions",
           "get_stack", "register_stack", "stack_names"]
