"""Rules checked before a launch: a config that can never work is rejected with the rule named."""
from __future__ import annotations

from typing import Any

from serving.config.schema import ServingYaml


def kv_cache_bytes(cfg: ServingYaml, num_layers: int, num_kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    pa = cfg.pa_config
    return 2 * num_layers * pa.num_blocks * pa.block_size * num_kv_heads * head_dim * dtype_bytes


def common_checks(cfg: ServingYaml, max_request_len: int, options: dict[str, Any]) -> list[str]:
    m, pa = cfg.model, cfg.pa_config
    out = []
    usable = (pa.num_blocks - 1) * pa.block_size
    if usable < max_request_len:
        out.append(f"(num_blocks - 1) * block_size >= longest request ({max_request_len} tokens) must hold, "
                   f"got ({pa.num_blocks} - 1) * {pa.block_size} = {usable}")
    if max_request_len >= m.seq_length[-1]:
        out.append(f"longest request ({max_request_len} tokens) < seq_length[-1] ({m.seq_length[-1]}) must hold "
                   "(llm-serving answers Error202 otherwise)")
    if pa.decode_seq_length < max_request_len:
        out.append(f"pa_config.decode_seq_length >= longest request ({max_request_len}) must hold, "
                   f"got {pa.decode_seq_length}")
    return out
