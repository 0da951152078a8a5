"""A stack's config format: how a trial's config is written from the base, read back and checked.

Each stack owns one (``Stack.config_format``). llm-serving's YAML serves the embedded engine,
the real llm-serving and the simulator; other stacks bring their own (vLLM's flat YAML).
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

__all__ = ["ConfigFormat", "ServingYamlFormat"]


class ConfigFormat(abc.ABC):
    def render(self, base: Path, params: dict[str, Any], out: Path) -> None:
        """Write ``out``: the base with only the tuned keys (dotted) changed; ConfigError if one is missing.
        The default edits any YAML in place (comments and layout kept); a format not in YAML overrides it."""
        from serving.config.render import render
        render(base, params, out)

    @abc.abstractmethod
    def load(self, path: Path) -> Any:
        """The typed config of a rendered file; ConfigError naming the file and key when it is invalid."""

    def check(self, cfg: Any, max_request_len: int, options: dict[str, Any]) -> list[str]:
        """Rules the config breaks before anything is launched (empty = launchable)."""
        return []


class ServingYamlFormat(ConfigFormat):
    """llm-serving's YAML (model_config, pa_config, ...), comments kept on render."""

    def load(self, path: Path) -> Any:
        from serving.config.schema import load_serving_yaml
        return load_serving_yaml(path)

    def check(self, cfg: Any, max_request_len: int, options: dict[str, Any]) -> list[str]:
        from serving.config.checks import common_checks
        return common_checks(cfg, max_request_len, options)
