"""From a serving YAML to the embedded engine's settings."""
from __future__ import annotations

from serving.config.schema import EngineSection, ServingYaml
from serving.engine.engine import EngineSettings
from serving.engine.model import ModelDims


def engine_settings(cfg: ServingYaml) -> EngineSettings:
    m = cfg.model
    e = cfg.engine_config or EngineSection()
    dims = ModelDims(vocab_size=m.vocab_size, hidden_size=e.hidden_size, num_layers=e.num_layers,
                     num_heads=e.num_heads, num_kv_heads=e.num_kv_heads,
                     intermediate_size=e.intermediate_size, seed=e.seed)
    return EngineSettings.from_config(cfg, seq_type=m.seq_type, dims=dims, backend=e.backend, stub=e.stub,
                                      ignore_eos=e.ignore_eos)
