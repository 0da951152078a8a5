import pytest

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml, parse_serving_yaml
from serving.engine.settings import engine_settings
from tests.conftest import ROOT, TINY


def test_shipped_configs_load():
    assert load_serving_yaml(TINY).engine_config.backend == "numpy"
    assert load_serving_yaml(ROOT / "configs/llama/llama_7b_kbk_pa_dyn.yaml").pa_config.num_blocks == 1024


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError) as err:
        parse_serving_yaml({"pa_config": {"num_blocks": 8, "blok_size": 4}}, "x.yaml")
    assert "x.yaml" in str(err.value) and "pa_config.blok_size" in str(err.value)


def test_batch_sizes_must_ascend():
    with pytest.raises(ConfigError, match="decode_batch_size"):
        parse_serving_yaml({"model_config": {"decode_batch_size": [8, 1]}})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_serving_yaml(tmp_path / "nope.yaml")


def test_engine_settings_follow_the_yaml():
    s = engine_settings(load_serving_yaml(TINY))
    assert s.num_blocks == 224 and s.block_size == 16 and s.decode_batch_size == (1,)


@pytest.mark.parametrize("seq_type,pads_to_prompt", [("dyn", True), ("dynamic", True), ("static", False)])
def test_seq_type_takes_llm_servings_dyn(seq_type, pads_to_prompt):
    m = parse_serving_yaml({"model_config": {"seq_type": seq_type}}).model
    assert m.pads_to_prompt is pads_to_prompt
    # the engine pads a prefill to a seq_length bucket only when static, as llm-serving's worker does
    assert (engine_settings(parse_serving_yaml({"model_config": {"seq_type": seq_type}})).seq_type == "static") \
        is not pads_to_prompt


def test_seq_type_typo_is_rejected():
    with pytest.raises(ConfigError, match="model_config.seq_type"):
        parse_serving_yaml({"model_config": {"seq_type": "dynamc"}})
