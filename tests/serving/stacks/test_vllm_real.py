"""The vLLM stack against real vLLM (the CPU build, a tiny LLaMA made here, dummy weights):
a 2-trial study through `tune`, its export, and a start vLLM itself refuses, classified.

vLLM starts in 40-150 s on 2 cores, so this module launches it five times in all: the study (2),
the refused pool (1), the shipped space's low and high extremes (2); its parser runs once alone."""
import json
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from serving.config.render import render
from serving.procs.groups import group_alive
from serving.config.vllm_yaml import launch_text
from serving.stacks import LaunchError, LaunchSpec, failures, get_stack, readback
from tests.conftest import ROOT
from tests.serving.stacks.vllm_model import model, python  # noqa: F401  (module-scoped fixtures)
from tuner.cli import main
from tuner.space.compose import load_space

pytestmark = pytest.mark.xdist_group("vllm_real")  # one worker runs the module: the tiny model it builds with vLLM is made once

STUDY = "vllm_batching"


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
    # every suggestion launchable (chunked prefill on, (40 - 1) x 32 >= max_model_len 1024): both trials start vLLM;
    # while vLLM runs, a 2-core VM like CI's stops whole for up to seconds (bench/host.py): the client's
    # judgement is tested elsewhere, so here its bounds are wide
    argv = [*common, "--n-trials", "2", "--no-progress", f"vllm.python={python}", "seed=0",
            "load.qps=10", "load.duration=2", "params.enable_chunked_prefill.choices=[true]",
            "params.num_gpu_blocks_override.low=40", "params.num_gpu_blocks_override.high=128",
            "capacity.max_send_lag=10", "capacity.max_read_lag=10"]
    assert main(argv) == 0
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        a = t.user_attrs
        assert "fail_class" not in a, (a.get("fail_class"), a.get("fail_detail"), a.get("log_tail", "")[-2000:])
        assert a["requests_ok"] == a["requests"] == 20 and a["total_time"] > 0
        # vLLM's own token counters, read before and after the replay: what the replay guarantees (a KV
        # usage sample > 0 needs a /metrics read to catch the pool in use, which a short replay can miss)
        assert a["vllm_running_samples"] >= 1
        assert a["vllm_prompt_tokens_peak"] > 0 and a["vllm_generation_tokens_peak"] > 0
        assert a.get("utilisation") is None       # the CPU has no busy figure (NaN, stored as None)
        run_dir = Path(a["run_dir"])
        log = (run_dir / "vllm.log").read_text()
        assert f"'max_num_seqs': {a['config']['max_num_seqs']}" in log   # vLLM took the trial's config
        applied = json.loads((run_dir / "applied.json").read_text())     # and the read-back says so, key by key
        assert applied["differences"] == [] and applied["unverified"] == [], applied
        assert (run_dir / "requests.csv").is_file()
        assert_cleaned_up(run_dir)
        # vLLM's shared-memory message queues outlive its stopped group unless the stack removes them; only
        # this trial's are checked (/dev/shm as a whole holds those of any other vLLM on the host)
        shm = json.loads((run_dir / "shm.json").read_text())
        assert any(Path(seg).name.startswith("psm_") for seg in shm["mapped"]), shm
        assert not [seg for seg in shm["mapped"] if Path(seg).exists()], shm
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


# each file named before "--" parsed as `--config FILE`; the keys after it read from each (one import of vLLM)
PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
cut = sys.argv.index("--")
for path in sys.argv[1:cut]:
    ns = make_arg_parser(FlexibleArgumentParser()).parse_args(["--config", path])
    print(json.dumps({k: getattr(ns, k) for k in sys.argv[cut + 1:]}))
"""


def test_every_key_of_the_launch_file_reaches_vllms_own_parser(tmp_path, python):
    """Issue 23: vLLM's --config loader dropped `enable_chunked_prefill: false` (underscore spelling); the
    launch file's dashed keys reach its parser, false booleans included."""
    trial = {"enable_chunked_prefill": False, "enable_prefix_caching": False, "max_num_seqs": 4, "block_size": 32}
    config = tmp_path / "config.yaml"
    render(ROOT / "configs" / "vllm" / "tiny_llama.yaml", trial, config)
    launch = tmp_path / "vllm.yaml"
    launch.write_text(launch_text(config.read_text()))
    out = subprocess.run([python, "-c", PARSE, str(launch), str(config), "--", *trial], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ours, underscored = [json.loads(line) for line in out.stdout.strip().splitlines()[-2:]]
    assert ours == trial
    # the underscore spelling (what the stack wrote before) loses both booleans: the test can fail
    assert underscored == {**trial, "enable_chunked_prefill": None, "enable_prefix_caching": None}


def extremes(space) -> tuple[dict, dict]:
    """Every param at its low end and every param at its high end (a categorical's first and last choice)."""
    low, high = {}, {}
    for key, spec in space.param_specs().items():
        if spec.type == "categorical":
            low[key], high[key] = spec.choices[0], spec.choices[-1]
        else:
            cast = int if spec.type == "int" else float
            low[key], high[key] = cast(spec.low), cast(spec.high)
    return low, high


def test_shipped_space_extremes_are_what_vllm_runs(tmp_path, python, model, project_root):
    """search_spaces/vllm_batching.yaml at all its low ends and all its high ends (two launches), with
    both booleans of issue 23 at false in one of them: the read-back equals the trial's config, key by key."""
    space = load_space(STUDY, project_root, [f"vllm.python={python}"])
    low, high = extremes(space)
    stack, options = get_stack("vllm"), space.backend_options()
    # the low end's 8 blocks x 32 tokens hold (8 - 1) x 32 = 224 tokens, and without chunked prefill a prompt
    # is one step of max_num_batched_tokens (256): max_model_len 224 makes that launchable
    low |= {"enable_chunked_prefill": False, "enable_prefix_caching": False, "max_model_len": 224}
    cases = [("low", low), ("high", {**high, "enable_chunked_prefill": True, "enable_prefix_caching": True})]
    timings = {}
    for name, trial in cases:
        config = tmp_path / f"{name}.yaml"
        render(ROOT / "configs" / "vllm" / "tiny_llama.yaml", {"model": str(model), **trial}, config)
        assert stack.check(stack.config_format.load(config), 100, options) == [], (name, trial)
        run_dir = tmp_path / name
        t = time.monotonic()
        running = stack.launch(LaunchSpec(config, run_dir, 600, None, options))
        try:
            record = readback.verify(running, config, list(trial), run_dir)
        finally:
            running.stop()
        timings[name] = round(time.monotonic() - t, 1)
        assert record["differences"] == [] and record["unverified"] == [], (name, record)
        sources = {r["source"] for r in record["readings"] if r["key"] == "enable_chunked_prefill"}
        assert sources == {"vLLM's non-default args", "vLLM's engine config"}, sources
        assert_cleaned_up(run_dir)
    print("vLLM extremes launched and read back in", timings, "s")
