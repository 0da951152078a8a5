"""A stack declares its surrogate: vLLM's is vllm_sim; a stack without one refuses prescreen: at load."""

import pytest

from serving.config.vllm_yaml import VLLMConfig
from serving.sim.vllm_profile import VllmProfile
from serving.stacks.vllm_sim import VllmSimStack, pool_blocks
from serving.sim.vllm_steptime import StepTime
from serving.stacks import get_stack, register_stack
from serving.stacks.vllm import VLLMOptions
from tests.plugins.test_toy_stack import SPACE as TOY_SPACE
from tuner.cli import main
from tuner.screening.prescreen import sim_space
from tuner.space.compose import load_space

PROFILE = VllmProfile(StepTime(base=0.01))


def test_every_shipped_stack_declares_its_surrogate():
    assert {n: get_stack(n).surrogate for n in ("embedded", "llm_serving", "sim", "vllm", "vllm_sim")} == {
        "embedded": "sim", "llm_serving": "sim", "sim": "sim", "vllm": "vllm_sim", "vllm_sim": "vllm_sim"}


def test_a_vllm_study_simulates_on_vllm_sim_with_its_own_options(project_root):
    space = load_space("vllm_batching", project_root, ["vllm.cpu_kvcache_space_gb=2"])
    sim = sim_space(space, project_root)
    opts = sim.backend_options()
    assert sim.backend == "vllm_sim" and opts["cpu_kvcache_space_gb"] == 2 and opts["device"] == "cpu"
    assert opts["surrogate_profile"] == str(project_root / "trials" / "vllm_batching" / "vllm_surrogate.yaml")
    mine = load_space("vllm_batching", project_root, ["vllm.surrogate_profile=/x/p.yaml"])
    assert sim_space(mine, project_root).backend_options()["surrogate_profile"] == "/x/p.yaml"
    embedded = load_space("pa_batching", project_root)
    assert sim_space(embedded, project_root).backend == "sim"


def test_a_stack_without_a_surrogate_refuses_prescreen_at_load(project_root, capsys):
    register_stack("toy", "tests.plugins.toy_stack:ToyStack")
    (project_root / "configs/toy.yaml").write_text("step_ms: 1\nmax_tokens: 4096\n")
    (project_root / "search_spaces/toy.yaml").write_text(TOY_SPACE + "prescreen: {warm_start: 2, sim_trials: 5}\n")
    assert main(["--study", "toy", "--root", str(project_root), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune: error:") and "prescreen" in err[0] and "surrogate" in err[0]
    assert not list((project_root / "trials").iterdir())           # nothing created by a failing command


def test_the_surrogate_without_a_profile_says_to_calibrate(tmp_path):
    missing = VllmSimStack().preflight({"surrogate_profile": str(tmp_path / "none.yaml")})
    assert len(missing) == 1 and "tune calibrate" in missing[0]
    assert VllmSimStack().preflight({}) == ["vllm.surrogate_profile must name a profile for the vLLM surrogate, got none"]


def test_pool_size_is_what_vllm_would_give_itself():
    cfg = VLLMConfig(model="nowhere", block_size=64, num_gpu_blocks_override=40)
    dims = dict(num_layers=2, num_kv_heads=2, head_dim=64, dtype_bytes=4)
    assert pool_blocks(cfg, VLLMOptions(device="cpu", **dims), PROFILE) == 40
    cfg.num_gpu_blocks_override = None   # 1 GiB / (2 x 2 layers x 2 heads x 64 x 4 bytes) = 524,288 tokens
    assert pool_blocks(cfg, VLLMOptions(device="cpu", cpu_kvcache_space_gb=1, **dims), PROFILE) == 524288 // 64
    assert pool_blocks(cfg, VLLMOptions(device="gpu", **dims), VllmProfile(StepTime(), kv_tokens=6400)) == 100
    from serving.config.errors import ConfigError
    with pytest.raises(ConfigError, match="num_gpu_blocks_override"):
        pool_blocks(cfg, VLLMOptions(device="gpu", **dims), PROFILE)
