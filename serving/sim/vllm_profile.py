"""The vLLM surrogate's profile: the fitted step time, kept as YAML beside the study.

    # (what was measured, when, on which vLLM)
    steptime: {base: s, per_prefill_token: s, per_decode_seq: s, per_context_token: s,
               arrival_delay: s, delivery_delay: s}
    fit: {n: observations, r2: ..., rmse: s}
    kv_tokens: N       # tokens of KV pool vLLM gave itself with num_gpu_blocks_override unset (its log)

``tune calibrate`` on a backend=vllm study writes it (tuner/tools/calibrate_vllm.py); the
surrogate reads it (``vllm.surrogate_profile``, default ``trials/<study>/vllm_surrogate.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from serving.config.errors import ConfigError
from serving.sim.vllm_steptime import StepTime

PROFILE_NAME = "vllm_surrogate.yaml"


@dataclass
class VllmProfile:
    steptime: StepTime
    fit: dict[str, float] = field(default_factory=dict)
    kv_tokens: int | None = None


def load_vllm_profile(path: str | Path) -> VllmProfile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no vLLM surrogate profile here: `tune calibrate --study <study>` fits one from a real "
                          "vLLM launch", path)
    try:
        data = yaml.safe_load(path.read_text())
        steptime = StepTime.from_dict(data["steptime"])
        blocks = data.get("kv_tokens")
        if blocks is not None and (not isinstance(blocks, int) or blocks < 1):
            raise ValueError(f"kv_tokens must be an integer >= 1 or null, got {blocks!r}")
        return VllmProfile(steptime, dict(data.get("fit") or {}), blocks)
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"a vLLM surrogate profile ({{steptime: {{base: ..., ...}}}}) must hold, got {err}",
                          path) from None


def write_vllm_profile(profile: VllmProfile, path: str | Path, header: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"steptime": {k: float(f"{v:.6g}") for k, v in profile.steptime.as_dict().items()},
            "fit": {k: float(f"{v:.4g}") for k, v in profile.fit.items()}, "kv_tokens": profile.kv_tokens}
    text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(text + yaml.safe_dump(body, sort_keys=False))
