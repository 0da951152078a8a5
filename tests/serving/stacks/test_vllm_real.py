"""The vLLM stack against real vLLM (the CPU build, a tiny LLaMA made here, dummy weights):
a 2-trial study through `tune`, its export, and a start vLLM itself refuses, classified.

vLLM starts in 40-150 s on 2 cores, so this module launches it three times in all."""
import json
from pathlib import Path

import optuna
import pytest

from serving.config.render import render
from serving.stacks import LaunchError, LaunchSpec, failures, get_stack
from serving.stacks.groups import group_alive
from tests.conftest import ROOT
from tests.serving.stacks.vllm_model import make_tiny_llama, vllm_python
from tuner.cli import main

pytestmark = pytest.mark.xdist_group("vllm_real")  # one worker runs the module: the tiny model it builds with vLLM is made once

STUDY = "vllm_batching"


@pytest.fixture(scope="module")
def python():
    return vllm_python()


@pytest.fixture(scope="module")
def model(python, tmp_path_factory):
    return make_tiny_llama(python, tmp_path_factory.mktemp("vllm") / "tiny_llama")


def assert_cleaned_up(run_dir: Path) -> None:
    pgids = json.loads((run_dir / "pids.json").read_text())
    assert pgids, "the launch recorded no process group"
    for name, pgid in pgids.items():
        assert not group_alive(pgid), f"{name} process group {pgid} left running"


def test_two_trial_study_end_to_end_and_export(project_root, python, model, capsys):
    base = project_root / "configs" / "vllm" / "tiny_llama.yaml"
    render(base, {"model": str(model)}, base)
    storage = f"sqlite:///{project_root}/trials/study.db"
    common = ["--study", STUDY, "--root", str(project_root), "--storage", storage]
    # every suggestion launchable (chunked prefill on, (40 - 1) x 32 >= max_model_len 1024): both trials start vLLM
    argv = [*common, "--n-trials", "2", "--no-progress", f"vllm.python={python}", "seed=0",
            "load.qps=10", "load.duration=2", "params.enable_chunked_prefill.choices=[true]",
            "params.num_gpu_blocks_override.low=40", "params.num_gpu_blocks_override.high=128"]
    shm_before = set(Path("/dev/shm").glob("psm_*"))
    assert main(argv) == 0
    # vLLM's shared-memory message queues outlive its stopped group unless the stack removes them
    assert set(Path("/dev/shm").glob("psm_*")) <= shm_before
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        a = t.user_attrs
        assert "fail_class" not in a, (a.get("fail_class"), a.get("fail_detail"), a.get("log_tail", "")[-2000:])
        assert a["requests_ok"] == a["requests"] == 20 and a["total_time"] > 0
        assert a["vllm_running_samples"] >= 1 and a["vllm_kv_cache_usage_peak"] > 0
        assert a.get("utilisation") is None       # the CPU has no busy figure (NaN, stored as None)
        run_dir = Path(a["run_dir"])
        log = (run_dir / "vllm.log").read_text()
        assert f"'max_num_seqs': {a['config']['max_num_seqs']}" in log   # vLLM took the trial's config
        assert (run_dir / "requests.csv").is_file()
        assert_cleaned_up(run_dir)
    capsys.readouterr()
    # export checks the study was measured under the space it is given: the run's overrides too
    assert main(["export", *common, *(a for a in argv if "=" in a and not a.startswith("--"))]) == 0
    out = Path(capsys.readouterr().out.split("wrote ", 1)[1].strip())
    assert out.parent == base.parent and out.name == "tiny_llama_vllm_batching_best.yaml"
    text = out.read_text()
    assert "# KV blocks in the pool" in text and "# Exported by serving-tuner" in text
    best = get_stack("vllm").config_format.load(out)
    assert best.num_gpu_blocks_override is not None and best.load_format == "dummy"


def test_pool_vllm_refuses_for_max_model_len_is_classified(tmp_path, python, model):
    stack = get_stack("vllm")
    config = tmp_path / "config.yaml"
    # 4 x 32 = 128 tokens cannot hold one 1024-token request: the pre-launch check knows ...
    render(ROOT / "configs" / "vllm" / "tiny_llama.yaml",
           {"model": str(model), "num_gpu_blocks_override": 4, "block_size": 32}, config)
    options = stack.parse_options({"python": python, "device": "cpu"}).model_dump()
    broken = stack.check(stack.config_format.load(config), 100, options)
    assert any("(num_gpu_blocks_override - 1) x block_size" in b for b in broken)
    # ... and vLLM itself refuses it at start: launched anyway, the failure is classified with its cause
    with pytest.raises(LaunchError) as err:
        stack.launch(LaunchSpec(config, tmp_path / "run", 300, None, options))
    assert err.value.fail_class == failures.KV_POOL_TOO_SMALL, (err.value.detail, err.value.log_tail[-2000:])
    assert "KV cache is needed" in err.value.log_tail
    assert_cleaned_up(tmp_path / "run")
