"""Launchers for whole serving stacks, one per backend, behind one interface (base.Stack)."""
from serving.stacks.base import LaunchError, LaunchSpec, RunningStack, Stack, get_stack

__all__ = ["LaunchError", "LaunchSpec", "RunningStack", "Stack", "get_stack"]
