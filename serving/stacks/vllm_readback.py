"""What a started vLLM runs with, read from its own reports (serving.stacks.readback).

Three sources, each as vLLM 0.32 writes it:

- the API process's ``non-default args: {...}`` log line: every option its parser set away from the
  parser's default, i.e. every key of the config file that reached vLLM (a key the ``--config``
  loader dropped is absent or has its default there);
- the engine core's ``Initializing a V1 LLM engine ... with config: k=v, ...`` line: the values the
  engine was built with after the platform adjusted them (e.g. chunked prefill and prefix caching
  forced off for MLA models on the CPU);
- the ``vllm:cache_config_info`` gauge of /metrics: the KV cache config in force (block size, the
  pool's block count, prefix caching, memory fraction).
"""
from __future__ import annotations

import ast
import re
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from serving.stacks.readback import Reading

__all__ = ["non_default_args", "engine_config", "cache_config", "readings"]

_ARGS = re.compile(r"non-default args: (\{.*\})\s*$", re.M)
_ENGINE = re.compile(r"Initializing a V1 LLM engine \(v[^)]*\) with config: (.*)$", re.M)
# a simple value of one key in a dict repr: quoted text, a number, a literal, a flat list
_PAIR = re.compile(r"'(\w+)': ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?[\d.]+(?:e[-+]?\d+)?|True|False|None"
                   r"|\[[^\[\]]*\])(?=,|\})")
# engine-config keys that are the config file's keys (the engine names max_model_len max_seq_len)
_ENGINE_KEYS = {"enable_prefix_caching": "enable_prefix_caching", "enable_chunked_prefill": "enable_chunked_prefill",
                "max_seq_len": "max_model_len", "kv_cache_dtype": "kv_cache_dtype", "load_format": "load_format"}
_CACHE_KEYS = ("block_size", "enable_prefix_caching", "gpu_memory_utilization", "num_gpu_blocks_override")


def non_default_args(log: str) -> dict[str, Any] | None:
    """The last ``non-default args`` dict of ``log`` (a Python repr); values that are not plain literals
    (config objects) are left out. None when the line is absent."""
    found = _ARGS.findall(log)
    if not found:
        return None
    text = found[-1]
    try:
        value = ast.literal_eval(text)
        if isinstance(value, dict):
            return value
    except (ValueError, SyntaxError):
        pass
    out = {}
    for key, raw in _PAIR.findall(text):
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            continue
    return out


def engine_config(log: str) -> dict[str, str]:
    """The engine config's top-level ``key=value`` items this project compares, as logged (text)."""
    found = _ENGINE.findall(log)
    if not found:
        return {}
    text, prev = found[-1], None
    while text != prev:   # nested configs out (their own key=value items are not the file's keys)
        prev, text = text, re.sub(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}", "", text)
    out = {}
    for key, value in re.findall(r"(?:^|, )(\w+)=([^,]*)", text):
        if key in _ENGINE_KEYS:
            out[_ENGINE_KEYS[key]] = value.strip().strip("'")
    return out


def cache_config(metrics_text: str) -> dict[str, str]:
    """The labels of ``vllm:cache_config_info`` (the KV cache config in force), as text."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "vllm:cache_config_info":
            for s in family.samples:
                return dict(s.labels)
    return {}


def fetch_metrics(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


def readings(log: str, metrics_text: str) -> list[Reading]:
    """Every value the three sources give for a config key."""
    out = [Reading(k, v, "vLLM's non-default args") for k, v in (non_default_args(log) or {}).items()]
    out += [Reading(k, v, "vLLM's engine config") for k, v in engine_config(log).items()]
    labels = cache_config(metrics_text)
    for key in _CACHE_KEYS:
        if key in labels:
            out.append(Reading(key, labels[key], "vLLM's /metrics cache_config_info"))
    if labels.get("num_gpu_blocks_override", "None") != "None" and "num_gpu_blocks" in labels:
        # the pool vLLM allocated, not only the override it was given
        out.append(Reading("num_gpu_blocks_override", labels["num_gpu_blocks"],
                           "vLLM's /metrics cache_config_info num_gpu_blocks"))
    return out
