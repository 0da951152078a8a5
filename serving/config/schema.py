"""Typed model of llm-serving's serving YAML (``configs/llama/llama_7b_kbk_pa_dyn.yaml``).

Unknown keys are rejected in the sections we interpret, so a typo fails at load
instead of being silently ignored by the stack. Sections that llm-serving only
passes through to mindformers (tokenizer, *_inputs) are kept as free mappings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.config.errors import ConfigError, from_validation_error, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ascending_positive(name: str, v: list[int]) -> list[int]:
    if not v or any(x < 1 for x in v) or v != sorted(v):
        raise ValueError(f"{name} must be a non-empty ascending list of positive ints")
    return v


class ModelSection(_Strict):
    model_name: str = "llama_7b"
    max_generate_length: int = Field(4096, ge=1)
    end_token: int = 2
    seq_length: list[int] = [4096]
    vocab_size: int = Field(32000, ge=4)
    prefill_batch_size: list[int] = [1]
    decode_batch_size: list[int] = [1]
    zactivate_len: list[int] = [512, 1024, 2048, 4096]
    model_type: str = "dyn"
    # llm-serving pads a prefill batch to its longest prompt when seq_type is 'dyn' and to a
    # seq_length bucket for any other value (worker.py/_get_seq_length); 'dynamic' is the
    # embedded engine's spelling of 'dyn' (the llm_serving stack rejects it: there it is static)
    seq_type: Literal["static", "dyn", "dynamic"] = "static"
    batch_waiting_time: float = 0.0
    decode_batch_waiting_time: float = 0.0
    batching_strategy: Literal["continuous", "static"] = "continuous"
    current_index: bool = False
    page_attention: bool = True
    model_dtype: str = "DataType.FLOAT32"
    pad_token_id: int = 0
    backend: Literal["kbk", "ge"] = "kbk"
    model_cfg_path: str | None = None

    @property
    def pads_to_prompt(self) -> bool:
        """A prefill is padded to its longest prompt, not to a seq_length bucket."""
        return self.seq_type in ("dyn", "dynamic")

    @field_validator("seq_length", "prefill_batch_size", "decode_batch_size")
    @classmethod
    def _lists(cls, v, info):
        return _ascending_positive(info.field_name, v)


class ServingSection(_Strict):
    agent_ports: list[int] = [16002]
    start_device_id: int = 0
    server_ip: str = "127.0.0.1"
    server_port: int = 8835
    agent_ip: str = "localhost"
    prefill_batch_waiting_time: float = 0.0
    decode_batch_waiting_time: float = 0.0
    enable_host_post_sampling: bool = False


class PASection(_Strict):
    num_blocks: int = Field(224, ge=2)
    block_size: int = Field(128, ge=1)
    decode_seq_length: int = Field(4096, ge=1)


class EngineSection(_Strict):
    """Embedded engine only: the tiny model and how far a request goes (stub)."""
    backend: Literal["numpy", "mindspore"] = "numpy"
    hidden_size: int = Field(128, ge=4)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(352, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1, description="BLAS threads of the engine process")
    stub: Literal["http", "scheduler"] | None = None
    ignore_eos: bool = True


class ServingYaml(_Strict):
    model_path: Any = None
    model_config_: ModelSection = Field(default_factory=ModelSection, alias="model_config")
    serving_config: ServingSection = Field(default_factory=ServingSection)
    pa_config: PASection = Field(default_factory=PASection)
    engine_config: EngineSection | None = None
    tokenizer: dict[str, Any] | None = None
    basic_inputs: dict[str, Any] | None = None
    extra_inputs: dict[str, Any] | None = None
    warmup_inputs: dict[str, Any] | None = None
    fastserve: dict[str, Any] | None = None
    fa_config: dict[str, Any] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def model(self) -> ModelSection:
        return self.model_config_


def parse_serving_yaml(data: Any, path: str | Path | None = None) -> ServingYaml:
    if not isinstance(data, dict):
        raise ConfigError(f"the file must hold a mapping of sections, found {type(data).__name__}", path)
    try:
        return ServingYaml.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err, path) from None


def load_serving_yaml(path: str | Path) -> ServingYaml:
    path = Path(path)
    data = read_yaml(path, "serving config file not found")
    return parse_serving_yaml(data, path)
