"""The vLLM stack's launch, readiness, probes, failure classes and cleanup against a stand-in
server (tests/serving/stacks/fake_vllm); real vLLM runs in test_vllm_real.py."""
import json
import os
import sys
from pathlib import Path

import pytest

from serving.config.errors import ConfigError
from serving.replay import ReplayOptions
from serving.stacks import LaunchError, LaunchSpec, failures, get_stack
from serving.procs.groups import group_alive
from serving.tokenizers import counter_name
from serving.workload import TraceRequest
from tests.conftest import ROOT

FAKE = Path(__file__).with_name("fake_vllm")
BASE = ROOT / "configs" / "vllm" / "tiny_llama.yaml"
KV_POOL_LINE = ("ValueError: To serve at least one request with the model's max seq len (512), (0.0 GiB KV cache "
                "is needed, which is larger than the available KV cache memory (0.0 GiB).")


def spec(tmp_path, mode, **options):
    cfg = tmp_path / "config.yaml"
    get_stack("vllm").config_format.render(BASE, {"model": "tiny"}, cfg)
    env = {"PYTHONPATH": f"{FAKE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "FAKE_VLLM_MODE": mode}
    opts = get_stack("vllm").parse_options({"python": sys.executable, "device": "cpu", "env": env, **options})
    return LaunchSpec(cfg, tmp_path / "run", 60, None, opts.model_dump(), {"TUNER_TRIAL_TAG": "t7"})


def assert_gone(run_dir: Path):
    for pgid in json.loads((run_dir / "pids.json").read_text()).values():
        assert not group_alive(pgid)


def test_launch_replay_probes_and_stop(tmp_path):
    running = get_stack("vllm").launch(spec(tmp_path, "ok", cpu_kvcache_space_gb=2))
    try:
        log = running.log_tail()
        # vLLM got the config with dashed keys, the spelling its --config loader honours for `false`
        assert "env KV=2 tag=t7" in log and "load-format: dummy" in log and "enable-chunked-prefill: true" in log
        assert running.utilisation is None   # CPU: no busy figure; KV usage is recorded, not the objective
        plan = [(0.0, TraceRequest(i, "a b", 5, 2)) for i in range(3)]
        result = running.replay(plan, ReplayOptions(request_timeout=10), deadline=20)
        assert [r.n_tokens for r in result.records] == [5, 5, 5] and all(r.ok for r in result.records)
        # the stand-in serves a real vLLM scrape taken under load: 4 running, 1 waiting, 98.4 % of the pool
        assert result.usage["vllm_running_mean"] == 4.0 and result.usage["vllm_waiting_mean"] == 1.0
        assert result.usage["vllm_kv_cache_usage_mean"] == pytest.approx(98.41, abs=0.01)
        assert result.usage["vllm_preemptions_peak"] == 0.0   # a counter: only the increase during the replay
        assert running.alive()
    finally:
        running.stop()
    assert not running.alive()
    assert_gone(tmp_path / "run")


def test_engine_dead_while_api_lives_fails_the_start_at_once(tmp_path):
    with pytest.raises(LaunchError) as err:
        get_stack("vllm").launch(spec(tmp_path, "engine_died"))
    assert err.value.fail_class == failures.CRASH_AT_START
    assert "the engine died: (EngineCore pid=2) ERROR EngineCore failed to start." in err.value.detail
    assert_gone(tmp_path / "run")


def test_kv_pool_refusal_is_its_own_class(tmp_path):
    with pytest.raises(LaunchError) as err:
        get_stack("vllm").launch(spec(tmp_path, "kv_pool"))
    assert err.value.fail_class == failures.KV_POOL_TOO_SMALL
    assert "vLLM exited with code 1" in err.value.detail and "KV cache is needed" in err.value.log_tail
    assert_gone(tmp_path / "run")


def test_engine_death_mid_replay_makes_the_stack_not_alive(tmp_path):
    running = get_stack("vllm").launch(spec(tmp_path, "die_mid_replay"))
    try:
        [rec] = running.replay([(0.0, TraceRequest(0, "a", 3, 1))], ReplayOptions(request_timeout=10), deadline=20).records
        assert not rec.ok and rec.error.startswith("connection:")
        assert not running.alive()
        assert failures.classify_log(running.log_tail(), failures.CRASH_DURING_REPLAY) == failures.CRASH_DURING_REPLAY
    finally:
        running.stop()
    assert_gone(tmp_path / "run")


def test_missing_interpreter_is_a_config_error_and_preflight_says_so(tmp_path, monkeypatch):
    s = spec(tmp_path, "ok", python="/nonexistent/python")
    with pytest.raises(ConfigError, match="python must be an executable"):
        get_stack("vllm").launch(s)
    assert "vllm.python must be an executable" in get_stack("vllm").preflight(s.options)[0]
    work = tmp_path / "dry"
    work.mkdir()
    monkeypatch.chdir(tmp_path)      # the base config's model folder, relative to where the tuner runs
    (tmp_path / "trials" / "_models" / "tiny_llama").mkdir(parents=True)
    (tmp_path / "trials" / "_models" / "tiny_llama" / "config.json").write_text("{}")
    broken = get_stack("vllm").dry_start(BASE, {"python": sys.executable}, work)   # our venv has no vllm
    assert broken and "must import vLLM" in broken[0] and "No module named 'vllm'" in broken[0]


def test_a_model_path_with_no_folder_is_refused_before_a_launch(tmp_path, monkeypatch):
    # vLLM takes a missing folder for a hub id and crashes at start, trial after trial (crash_at_start)
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "dry"
    work.mkdir()
    [why] = get_stack("vllm").dry_start(BASE, {"python": sys.executable}, work)
    assert why.startswith(f"{BASE}: model must be a local folder with a config.json or a hub id")
    assert str(tmp_path / "trials/_models/tiny_llama") in why and "vllm_tiny_model.py" in why
    from serving.config.vllm_yaml import missing_model
    assert missing_model("Qwen/Qwen2.5-0.5B") is None and missing_model("gpt2") is None   # hub ids pass
    assert missing_model("./tiny") and missing_model("/nonexistent/model")


def test_cpu_kv_space_is_whole_gib_as_vllm_reads_it():
    # vLLM's CPU build reads VLLM_CPU_KVCACHE_SPACE as an int: 1.5 would crash every trial at start
    stack = get_stack("vllm")
    with pytest.raises(ConfigError, match=r"cpu_kvcache_space_gb: .*integer.*\(found 1.5\)"):
        from serving.stacks.vllm import parse_options
        parse_options({"cpu_kvcache_space_gb": 1.5})
    with pytest.raises(ConfigError, match="cpu_kvcache_space_gb"):
        from serving.stacks.vllm import parse_options
        parse_options({"cpu_kvcache_space_gb": 0})
    assert stack.parse_options({"cpu_kvcache_space_gb": 2}).cpu_kvcache_space_gb == 2


@pytest.mark.parametrize("log, cls", [
    (KV_POOL_LINE, failures.KV_POOL_TOO_SMALL),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", failures.OOM),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", failures.OOM),
    ("ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use",
     failures.PORT_IN_USE),
    ("RuntimeError: Engine core initialization failed. See root cause above.", failures.CRASH_AT_START),
])
def test_vllm_failure_lines_are_classified(log, cls):
    assert failures.classify_log(log, failures.CRASH_AT_START) == cls


def test_engine_died_names_the_line():
    log = "INFO fine\n(EngineCore pid=9) ERROR 11-30 [core.py:1510] EngineCore failed to start.\nTraceback ..."
    assert failures.engine_died(log) == "(EngineCore pid=9) ERROR 11-30 [core.py:1510] EngineCore failed to start."
    assert failures.engine_died("INFO Application startup complete.") is None


def test_options_reject_unknown_keys_and_bad_devices():
    stack = get_stack("vllm")
    with pytest.raises(Exception, match="extra"):
        stack.parse_options({"pyhton": "x"})
    with pytest.raises(Exception, match="device"):
        stack.parse_options({"device": "tpu"})


def test_token_counter_is_none_without_tokenizers_in_our_venv(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)   # `import tokenizers` raises ImportError
    assert get_stack("vllm").token_counter(BASE, {}) is None


def test_token_counter_reads_the_model_folders_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    cfg = tmp_path / "base.yaml"
    get_stack("vllm").config_format.render(BASE, {"model": str(folder)}, cfg)
    count = get_stack("vllm").token_counter(cfg, {})
    assert count("a dog, a cat") == 5   # a, dog, ",", a, cat
    assert counter_name(count) == "tokenizers model/tokenizer.json"   # the trace summary names it (issue 27.10)
