"""vLLM's flat YAML: rendered with only the tuned keys changed, loaded typed, checked before launch."""
import json

import pytest

from serving.config.errors import ConfigError
from serving.config.render import render
from serving.config.vllm_yaml import VLLMYamlFormat, load_vllm_yaml, model_dims
from tests.conftest import ROOT

BASE = ROOT / "configs" / "vllm" / "tiny_llama.yaml"
CPU = {"device": "cpu", "cpu_kvcache_space_gb": 1.0}


@pytest.fixture
def model(tmp_path):
    """A model folder's config.json as vllm_tiny_model.py writes it (dims only; no tokenizer needed here)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 2048, "dtype": "float32"}))
    return folder


def trial(tmp_path, model, **params):
    out = tmp_path / "trial.yaml"
    VLLMYamlFormat().render(BASE, {"model": str(model), **params}, out)
    return load_vllm_yaml(out)


def test_render_changes_only_tuned_keys_and_keeps_comments(tmp_path, model):
    out = tmp_path / "trial.yaml"
    VLLMYamlFormat().render(BASE, {"max_num_seqs": 8, "num_gpu_blocks_override": 40, "enable_chunked_prefill": False},
                            out)
    before, after = BASE.read_text().splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 3
    assert all(a.split(":")[0] == b.split(":")[0] and "#" in b for a, b in changed)
    cfg = load_vllm_yaml(out)
    assert (cfg.max_num_seqs, cfg.num_gpu_blocks_override, cfg.enable_chunked_prefill) == (8, 40, False)
    assert cfg.block_size == 128 and cfg.load_format == "dummy"   # untyped flags pass through


def test_tuned_key_missing_from_base_is_named(tmp_path):
    with pytest.raises(ConfigError, match="max_num_seqz"):
        render(BASE, {"max_num_seqz": 8}, tmp_path / "x.yaml")


@pytest.mark.parametrize("text, what", [
    ("max_num_seqs: 8\n", "model: required key missing"),
    ("model: m\nmax_num_seqs: 0\n", "max_num_seqs: Input should be greater than or equal to 1"),
    ("model: m\nmax-num-seqs: 8\n", "underscores"),
    ("- model\n", "must be a mapping"),
])
def test_bad_files_say_what_must_hold(tmp_path, text, what):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=what) as err:
        load_vllm_yaml(path)
    assert str(path) in str(err.value)


def test_model_dims_come_from_config_json_unless_given(tmp_path, model):
    cfg = trial(tmp_path, model)
    assert model_dims(cfg, {}) == {"num_layers": 2, "num_kv_heads": 2, "head_dim": 64, "dtype_bytes": 4,
                                   "max_position_embeddings": 2048}
    assert model_dims(cfg, {"num_layers": 32})["num_layers"] == 32


def test_base_config_passes(tmp_path, model):
    assert VLLMYamlFormat().check(trial(tmp_path, model), 530, CPU) == []


@pytest.mark.parametrize("params, rule", [
    ({"num_gpu_blocks_override": 8, "block_size": 128}, "(num_gpu_blocks_override - 1) x block_size >= longest request "
                                                        "(600) and max_model_len (1024) must hold (one block is "
                                                        "vLLM's null block), got (8 - 1) x 128 = 896 tokens"),
    ({"max_model_len": 512}, "longest request (600 tokens) <= max_model_len (512)"),
    ({"enable_chunked_prefill": False, "max_num_batched_tokens": 512},
     "max_num_batched_tokens >= max_model_len must hold without chunked prefill, got 512 < 1024"),
    ({"max_num_batched_tokens": 64, "max_num_seqs": 128}, "max_num_batched_tokens >= max_num_seqs"),
    ({"block_size": 16, "num_gpu_blocks_override": 4096}, "block_size a multiple of 32 must hold on cpu"),
    ({"num_gpu_blocks_override": 8192}, "KV pool bytes <= cpu_kvcache_space_gb (1 GiB) must hold, got 2 x 2 layers "
                                        "x 1048576 tokens x 2 kv heads x head_dim 64 x 4 bytes = 2.000 GiB"),
])
def test_unlaunchable_configs_are_rejected_with_the_rule(tmp_path, model, params, rule):
    broken = VLLMYamlFormat().check(trial(tmp_path, model, **params), 600, CPU)
    assert len(broken) == 1 and rule in broken[0]


def test_block_size_rule_is_the_platforms(tmp_path, model):
    cfg = trial(tmp_path, model, block_size=16, num_gpu_blocks_override=4096)
    assert VLLMYamlFormat().check(cfg, 600, {"device": "gpu"}) == []
    assert "multiple of 64" in VLLMYamlFormat().check(cfg, 600, {"device": "npu", "block_size_multiple": 64})[0]


def test_launch_text_dashes_every_top_level_key_and_keeps_the_rest():
    """vLLM's --config loader honours `key: false` only as a dashed key (it looks for the flag
    `--no-<key>`, and vLLM's flags are dashed): an underscore `enable_chunked_prefill: false` is
    dropped without a word (issue 23). The launch file spells every top-level key with dashes."""
    import yaml
    from serving.config.vllm_yaml import launch_text
    text = ("# head comment\nenable_chunked_prefill: false   # split prompts\nmax_num_seqs: 8\n"
            "compilation_config:\n  pass_config: {fuse_norm_quant: true}\nserved_model_name: my_model_1\n")
    out = launch_text(text)
    assert yaml.safe_load(out) == {"enable-chunked-prefill": False, "max-num-seqs": 8,
                                   "compilation-config": {"pass_config": {"fuse_norm_quant": True}},
                                   "served-model-name": "my_model_1"}
    assert "# split prompts" in out and out.startswith("# head comment\n")
    assert launch_text(BASE.read_text()).count("\n") == BASE.read_text().count("\n")
    for key in yaml.safe_load(launch_text(BASE.read_text())):
        assert "_" not in key, key
