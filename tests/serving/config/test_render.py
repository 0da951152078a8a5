import pytest
import yaml

from serving.config.errors import ConfigError
from serving.config.render import render, render_text
from tests.conftest import TINY

BASE = """\
# top comment
model_config:
    decode_batch_size: [1]       # running batch
    current_index: False
    name: 'x'
pa_config:
    num_blocks: 224              # KV pages
    block_size: 16
"""


def test_only_tuned_values_change_and_comments_stay():
    out = render_text(BASE, {"model_config.decode_batch_size": 64, "pa_config.num_blocks": 1024})
    changed = [(a, b) for a, b in zip(BASE.splitlines(), out.splitlines()) if a != b]
    assert changed == [("    decode_batch_size: [1]       # running batch", "    decode_batch_size: [64]      # running batch"),
                       ("    num_blocks: 224              # KV pages", "    num_blocks: 1024             # KV pages")]
    assert "current_index: False" in out


def test_scalar_into_list_and_string_keeps_quotes():
    out = yaml.safe_load(render_text(BASE, {"model_config.decode_batch_size": 8, "model_config.name": "y"}))
    assert out["model_config"]["decode_batch_size"] == [8]
    assert "name: 'y'" in render_text(BASE, {"model_config.name": "y"})


def test_unknown_key_names_file_and_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        render(TINY, {"pa_config.num_blockz": 3})
    assert "tiny_llama_pa.yaml" in str(err.value) and "pa_config.num_blockz" in str(err.value)


def test_section_cannot_be_tuned():
    with pytest.raises(ConfigError, match="scalar"):
        render_text(BASE, {"pa_config": 3})


def test_real_base_renders_and_parses(tmp_path):
    from serving.config.schema import load_serving_yaml
    out = tmp_path / "c.yaml"
    render(TINY, {"model_config.prefill_batch_size": 4, "pa_config.block_size": 32}, out)
    cfg = load_serving_yaml(out)
    assert cfg.model.prefill_batch_size == [4] and cfg.pa_config.block_size == 32


def test_set_keys_edits_in_place_or_adds_what_is_missing(tmp_path):
    from serving.config.render import set_keys
    same = set_keys(BASE, {"model_config.decode_batch_size": 64}, tmp_path / "c.yaml")
    assert same == render_text(BASE, {"model_config.decode_batch_size": 64})     # every other byte kept
    added = yaml.safe_load(set_keys(BASE, {"model_config.new_key": [1, 2], "extra.deep": "x"}, tmp_path / "c.yaml"))
    assert added["model_config"]["new_key"] == [1, 2] and added["extra"] == {"deep": "x"}
    assert added["model_config"]["decode_batch_size"] == yaml.safe_load(BASE)["model_config"]["decode_batch_size"]
