"""What a started llm-serving runs with (serving.stacks.readback).

llm-serving logs none of its settings; each of its processes loads the YAML named by its own
``--config`` argument (``ServingConfig``: a plain YAML load) and the agent builds its device-side
KV pool from the mindformers model YAML that file's ``model_config.model_cfg_path`` names. So the
read-back takes each running process's command line (from the OS, not from what the stack meant
to start), loads the file it names, and reports every key there; and the model YAML's
``num_blocks``/``block_size`` as the pool ``pa_config`` must match.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import yaml

from serving.stacks.readback import Reading

__all__ = ["process_readings", "flatten"]

# the agent's device-side pool: keys of the mindformers model YAML and the serving key they must equal
MODEL_KEYS = {"num_blocks": "pa_config.num_blocks", "block_size": "pa_config.block_size"}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def config_of(pid: int) -> Path | None:
    """The file a running process was given as ``--config`` (relative to its working directory)."""
    proc = psutil.Process(pid)
    args = proc.cmdline()
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            path = Path(args[i + 1])
            return path if path.is_absolute() else Path(proc.cwd()) / path
        if a.startswith("--config="):
            path = Path(a.split("=", 1)[1])
            return path if path.is_absolute() else Path(proc.cwd()) / path
    return None


def process_readings(name: str, pid: int) -> list[Reading]:
    """Every key of the YAML process ``name`` loaded; for the agent also its model YAML's KV pool."""
    path = config_of(pid)
    if path is None:
        return []
    data = yaml.safe_load(path.read_text()) or {}
    source = f"the {name}'s --config {path.name}"
    out = [Reading(k, v, source) for k, v in flatten(data).items()]
    model_cfg = (data.get("model_config") or {}).get("model_cfg_path") if isinstance(data, dict) else None
    if name == "agent" and model_cfg:
        mpath = Path(model_cfg) if Path(model_cfg).is_absolute() else path.parent / model_cfg
        if mpath.is_file():
            mc = ((yaml.safe_load(mpath.read_text()) or {}).get("model") or {}).get("model_config") or {}
            out += [Reading(key, mc[k], f"the agent's model YAML {mpath.name}")
                    for k, key in MODEL_KEYS.items() if k in mc]
    return out
