"""vLLM's config file: a flat YAML whose keys are its CLI flags (``vllm serve --config FILE``).

Rendered like llm-serving's YAML (serving.config.render: only the tuned keys change, every
comment and line kept); read into a pydantic model that types the keys this project tunes or
checks and lets the others through (vLLM has hundreds of flags and checks them itself at
start); and checked before a launch for what vLLM refuses or can never serve:

- the KV pool's usable blocks (``num_gpu_blocks_override`` - 1: vLLM's block pool holds one back
  as its null block) x ``block_size`` must hold the longest request, and ``max_model_len``
  (vLLM refuses to start otherwise);
- the longest request must fit in ``max_model_len`` (vLLM answers 400 otherwise);
- without chunked prefill, ``max_num_batched_tokens`` >= ``max_model_len`` (vLLM refuses);
  with it, ``max_num_batched_tokens`` >= ``max_num_seqs`` (vLLM refuses that too);
- ``block_size`` a multiple of what the platform's attention takes (CPU: 32);
- on the CPU, the pool's bytes within ``VLLM_CPU_KVCACHE_SPACE`` (``vllm.cpu_kvcache_space_gb``).

``max_model_len`` defaults to the model's ``max_position_embeddings`` (its config.json, when the
model is a local folder); the model's layer and head counts come from there too, unless the
space's ``vllm:`` section gives them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.config.errors import ConfigError, from_validation_error
from serving.config.format import ConfigFormat

__all__ = ["VLLMConfig", "VLLMYamlFormat", "ignored_keys", "launch_text", "load_vllm_yaml", "missing_model", "model_dims", "resolve_model", "GIB"]

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "fp8": 1}


class VLLMConfig(BaseModel):
    """The keys this project reads; any other vLLM flag passes through untouched."""
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    served_model_name: str | list[str] | None = None
    max_model_len: int | None = Field(None, ge=1)
    block_size: int | None = Field(None, ge=1)
    num_gpu_blocks_override: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = None
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def name(self) -> str:
        """The model name requests carry (vLLM serves ``model`` unless ``served_model_name`` says otherwise)."""
        n = self.served_model_name
        return (n[0] if isinstance(n, list) else n) or self.model


def load_vllm_yaml(path: str | Path) -> VLLMConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"must be valid YAML: {str(err).splitlines()[0]}", path) from None
    if not isinstance(data, dict):
        raise ConfigError("a vLLM config must be a mapping of CLI flags (model: ..., max_num_seqs: ...)", path)
    bad = [k for k in data if not isinstance(k, str) or "-" in k]
    if bad:
        raise ConfigError(f"keys must be vLLM flags with underscores (max_num_seqs, not max-num-seqs), got {bad}",
                          path)
    try:
        return VLLMConfig.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err, path) from None


# Keys a platform's vLLM build takes and then does not use (vLLM 0.32, vllm/platforms/cpu.py and
# vllm/v1/worker/cpu_worker.py): tuning one would measure the same configuration under many names.
IGNORED_ON = {"cpu": {
    "gpu_memory_utilization": "vLLM's CPU build ignores it here: VLLM_CPU_KVCACHE_SPACE, which the stack always "
                              "sets, sizes the KV pool (tune vllm.cpu_kvcache_space_gb or num_gpu_blocks_override)",
    "kv_cache_memory_bytes": "vLLM's CPU build replaces it with VLLM_CPU_KVCACHE_SPACE (vllm.cpu_kvcache_space_gb)",
    "async_scheduling": "vLLM's CPU build turns async scheduling off whatever it is given",
    "enable_dbo": "vLLM's CPU build turns dual-batch overlap off whatever it is given",
}}


def ignored_keys(device: str | None) -> dict[str, str]:
    """{key: why} for the keys vLLM on ``device`` takes and does not use."""
    return dict(IGNORED_ON.get(device or "", {}))


_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?=\s*:)", re.M)


def launch_text(text: str) -> str:
    """The config's text with every top-level key spelled with dashes (``enable-chunked-prefill``),
    comments and values kept: vLLM's ``--config`` loader turns ``key: false`` into ``--no-<key>``
    only when ``--no-<key>`` is one of its flags, which are dashed, so an underscore key set to
    false is dropped without a word (vllm/utils/argparse_utils.py, load_config_file, vLLM 0.32).
    Nested mappings (``compilation_config: {...}``) keep their inner keys: vLLM reads them as JSON."""
    return _TOP_KEY.sub(lambda m: m.group(1).replace("_", "-"), text)


def resolve_model(model: str, base: Path | None = None) -> Path | None:
    """The local model folder ``model`` names (relative to ``base`` or the current directory), else None
    (a hub id such as ``Qwen/Qwen2.5-0.5B``)."""
    p = Path(model).expanduser()
    for cand in ([p] if p.is_absolute() else [Path.cwd() / p] + ([base / p] if base else [])):
        if (cand / "config.json").is_file():
            return cand.resolve()
    return None


def missing_model(model: str) -> str | None:
    """Why ``model`` cannot start vLLM here, or None: a name that is a path (it starts with ``/``, ``.``
    or ``~``, or has more than one ``/``; a hub id is ``name`` or ``org/name``) with no config.json
    under it, relative to the current directory. vLLM would take it for a hub id and crash at start."""
    if resolve_model(model) is not None or not (model.startswith(("/", ".", "~")) or model.count("/") > 1):
        return None
    where = Path(model).expanduser()
    return (f"model must be a local folder with a config.json or a hub id (org/name), got {model!r}: "
            f"{where if where.is_absolute() else Path.cwd() / where} has no config.json (the tiny model: .venv-vllm/bin/python serving/stacks/vllm_tiny_model.py {model})")


def model_dims(cfg: VLLMConfig, options: dict[str, Any]) -> dict[str, int | None]:
    """Layers, KV heads, head size, bytes per element and position limit: the space's ``vllm:``
    section first, then the model's config.json when the model is a local folder."""
    hf: dict[str, Any] = {}
    folder = resolve_model(cfg.model)
    if folder is not None:
        hf = json.loads((folder / "config.json").read_text())
        hf = {**hf, **(hf.get("text_config") or {})}
    heads = hf.get("num_attention_heads")
    head_dim = hf.get("head_dim") or (hf["hidden_size"] // heads if heads and hf.get("hidden_size") else None)
    dtype = cfg.kv_cache_dtype if cfg.kv_cache_dtype not in (None, "auto") else (cfg.dtype or hf.get("dtype")
                                                                                 or hf.get("torch_dtype"))
    found = {"num_layers": hf.get("num_hidden_layers"), "num_kv_heads": hf.get("num_key_value_heads") or heads,
             "head_dim": head_dim, "dtype_bytes": DTYPE_BYTES.get(str(dtype)) if dtype else None,
             "max_position_embeddings": hf.get("max_position_embeddings")}
    return {k: options.get(k) or v for k, v in found.items()}


def check_vllm(cfg: VLLMConfig, max_request_len: int, options: dict[str, Any]) -> list[str]:
    out: list[str] = []
    dims = model_dims(cfg, options)
    max_len = cfg.max_model_len or dims["max_position_embeddings"]
    if max_len is not None and max_request_len > max_len:
        out.append(f"longest request ({max_request_len} tokens) <= max_model_len ({max_len}) must hold "
                   "(vLLM answers 400 otherwise)")
    if cfg.num_gpu_blocks_override is not None and cfg.block_size is not None:
        pool = cfg.num_gpu_blocks_override * cfg.block_size
        usable = (cfg.num_gpu_blocks_override - 1) * cfg.block_size
        need = max(max_request_len, max_len or 0)
        if usable < need:
            what = f"longest request ({max_request_len})" + (f" and max_model_len ({max_len})" if max_len else "")
            out.append(f"(num_gpu_blocks_override - 1) x block_size >= {what} must hold (one block is vLLM's "
                       f"null block), got ({cfg.num_gpu_blocks_override} - 1) x {cfg.block_size} = {usable} tokens")
        kv_space = options.get("cpu_kvcache_space_gb")
        if options.get("device") == "cpu" and kv_space and None not in (dims["num_layers"], dims["num_kv_heads"],
                                                                          dims["head_dim"], dims["dtype_bytes"]):
            kv = 2 * dims["num_layers"] * pool * dims["num_kv_heads"] * dims["head_dim"] * dims["dtype_bytes"]
            if kv > kv_space * GIB:
                out.append(f"KV pool bytes <= cpu_kvcache_space_gb ({kv_space:g} GiB) must hold, got 2 x "
                           f"{dims['num_layers']} layers x {pool} tokens x {dims['num_kv_heads']} kv heads x head_dim "
                           f"{dims['head_dim']} x {dims['dtype_bytes']} bytes = {kv / GIB:.3f} GiB")
    mnbt = cfg.max_num_batched_tokens
    if mnbt is not None:
        if cfg.enable_chunked_prefill is False and max_len is not None and mnbt < max_len:
            out.append(f"max_num_batched_tokens >= max_model_len must hold without chunked prefill, got "
                       f"{mnbt} < {max_len} (set enable_chunked_prefill: true or raise it)")
        if cfg.max_num_seqs is not None and mnbt < cfg.max_num_seqs:
            out.append(f"max_num_batched_tokens >= max_num_seqs must hold, got {mnbt} < {cfg.max_num_seqs}")
    multiple = options.get("block_size_multiple")
    if multiple is None and options.get("device") == "cpu":
        multiple = 32  # CPU attention: "No common block size for 16 (CPU_ATTN: [MultipleOf(32)])"
    if cfg.block_size is not None and multiple and cfg.block_size % multiple:
        out.append(f"block_size a multiple of {multiple} must hold on {options.get('device', 'this')} "
                   f"(vLLM refuses others at start), got {cfg.block_size}")
    for key in ("host", "port"):
        if getattr(cfg, key) is not None:
            out.append(f"{key} must not be set in the config (the stack binds 127.0.0.1 on a free port), "
                       f"got {getattr(cfg, key)!r}")
    return out


class VLLMYamlFormat(ConfigFormat):
    """vLLM's flat YAML (keys = CLI flags); rendered by the base's comment-keeping YAML edit."""

    def load(self, path: Path) -> VLLMConfig:
        return load_vllm_yaml(path)

    def check(self, cfg: Any, max_request_len: int, options: dict[str, Any]) -> list[str]:
        return check_vllm(cfg, max_request_len, options)
