"""The read-back comparison (serving.stacks.readback), and the embedded engine's read-back for real."""
import json

import pytest

from serving.config.render import render
from serving.stacks import LaunchError, LaunchSpec, failures, get_stack
from serving.stacks.readback import Reading, differences, expected_values, same, verify
from tests.conftest import ROOT

BASE = ROOT / "configs" / "llama" / "llama_7b_kbk_pa_dyn.yaml"
TUNED = ["model_config.prefill_batch_size", "model_config.decode_batch_size", "pa_config.num_blocks",
         "pa_config.block_size"]


@pytest.mark.parametrize("expected, found", [(128, "128"), (0.3, "0.3"), (True, "True"), (False, False),
                                             ([8], 8), ([8], [8]), (8, [8]), ("dummy", "dummy"), (1, 1.0)])
def test_same_value_as_the_stack_writes_it(expected, found):
    assert same(expected, found)


@pytest.mark.parametrize("expected, found", [(128, "64"), (False, "True"), (False, None), ([4, 8], [4]),
                                             (0.3, "0.30001"), ("dummy", "auto"), (8, "eight")])
def test_different_values(expected, found):
    assert not same(expected, found)


def test_expected_values_are_the_rendered_files(tmp_path):
    out = tmp_path / "config.yaml"
    render(BASE, {"model_config.decode_batch_size": 16, "pa_config.num_blocks": 300}, out)
    assert expected_values(out, TUNED + ["pa_config.nope"]) == {
        "model_config.prefill_batch_size": [1], "model_config.decode_batch_size": [16],
        "pa_config.num_blocks": 300, "pa_config.block_size": 16}


def test_a_key_left_null_matches_whatever_the_stack_chose():
    diffs, unverified = differences({"num_gpu_blocks_override": None, "max_num_seqs": 8},
                                    [Reading("num_gpu_blocks_override", "71", "m"), Reading("max_num_seqs", 8, "a")])
    assert diffs == [] and unverified == []


def launch_embedded(tmp_path, params):
    config = tmp_path / "config.yaml"
    render(ROOT / "configs" / "llama" / "tiny_llama_pa.yaml", params, config)
    return config, get_stack("embedded").launch(LaunchSpec(config, tmp_path / "run", 60))


def test_embedded_engine_runs_the_trials_config_and_says_so(tmp_path):
    params = {"model_config.decode_batch_size": 4, "pa_config.num_blocks": 77, "pa_config.block_size": 8}
    config, running = launch_embedded(tmp_path, params)
    try:
        record = verify(running, config, TUNED, tmp_path / "run")
        assert running.alive()
    finally:
        running.stop()
    assert record["differences"] == [] and record["unverified"] == []
    assert json.loads((tmp_path / "run" / "applied.json").read_text())["expected"]["pa_config.num_blocks"] == 77


def test_embedded_engine_running_another_config_fails_the_start_and_is_stopped(tmp_path):
    config, running = launch_embedded(tmp_path, {"pa_config.num_blocks": 77})
    other = tmp_path / "other.yaml"
    render(config, {"pa_config.num_blocks": 78, "model_config.decode_batch_size": 2}, other)
    with pytest.raises(LaunchError) as err:
        verify(running, other, TUNED, tmp_path / "run")
    assert not running.alive()
    assert err.value.fail_class == failures.CONFIG_NOT_APPLIED
    assert "pa_config.num_blocks: expected 78, found 77 (the engine's /config)" in err.value.detail
    assert "model_config.decode_batch_size: expected [2]" in err.value.detail
