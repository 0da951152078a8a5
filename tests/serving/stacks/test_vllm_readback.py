"""Reading back what vLLM runs with, from lines real vLLM 0.32 (CPU build) logged and served
(tests/serving/stacks/data: a start with num_gpu_blocks_override 64, block_size 128, chunked prefill off)."""
from pathlib import Path

from serving.stacks.readback import differences
from serving.stacks.vllm_readback import cache_config, engine_config, non_default_args, readings

DATA = Path(__file__).with_name("data")
LOG = (DATA / "vllm_start.log").read_text()
METRICS = (DATA / "vllm_cache_config_info.txt").read_text()
TRIAL = {"max_num_seqs": 128, "max_num_batched_tokens": 1024, "block_size": 128, "num_gpu_blocks_override": 64,
         "enable_chunked_prefill": False}


def test_the_three_sources_are_parsed():
    args = non_default_args(LOG)
    assert args["enable_chunked_prefill"] is False and args["num_gpu_blocks_override"] == 64
    assert args["optimization_level"] == "0" and args["max_num_seqs"] == 128
    eng = engine_config(LOG)   # nested configs (compilation_config={...}) are not mistaken for top-level keys
    assert eng == {"max_model_len": "1024", "load_format": "dummy", "kv_cache_dtype": "auto",
                   "enable_prefix_caching": "True", "enable_chunked_prefill": "False"}
    labels = cache_config(METRICS)
    assert labels["block_size"] == "128" and labels["num_gpu_blocks"] == "64"


def test_the_trials_config_is_what_vllm_runs():
    diffs, unverified = differences(TRIAL, readings(LOG, METRICS))
    assert diffs == [] and unverified == []


def test_a_boolean_vllm_dropped_is_a_difference_naming_key_expected_and_found():
    """The issue-23 case: `enable_chunked_prefill: false` never reached vLLM (absent from its args) and
    its engine ran with chunked prefill on."""
    log = LOG.replace("'enable_chunked_prefill': False, ", "").replace("enable_chunked_prefill=False",
                                                                       "enable_chunked_prefill=True")
    diffs, _ = differences(TRIAL, readings(log, METRICS))
    assert diffs == ["enable_chunked_prefill: expected False, found 'True' (vLLM's engine config)"]


def test_a_pool_vllm_sized_otherwise_is_a_difference():
    metrics = METRICS.replace('num_gpu_blocks="64"', 'num_gpu_blocks="50"')
    diffs, _ = differences(TRIAL, readings(LOG, metrics))
    assert diffs == ["num_gpu_blocks_override: expected 64, found '50' (vLLM's /metrics cache_config_info "
                     "num_gpu_blocks)"]


def test_a_key_no_source_reports_is_unverified_not_a_difference():
    diffs, unverified = differences({**TRIAL, "enforce_eager": False}, readings(LOG, METRICS))
    assert diffs == [] and unverified == ["enforce_eager"]


def test_args_with_a_non_literal_value_still_give_the_plain_ones():
    log = LOG.replace("'optimization_level': '0'}", "'compilation_config': CompilationConfig(mode=0), "
                                                    "'optimization_level': '0'}")
    args = non_default_args(log)
    assert args["max_num_seqs"] == 128 and args["enable_chunked_prefill"] is False
    assert "compilation_config" not in args


def test_no_start_lines_read_as_nothing():
    assert non_default_args("INFO starting\n") is None and engine_config("") == {} and cache_config("") == {}
    assert readings("", "") == []
