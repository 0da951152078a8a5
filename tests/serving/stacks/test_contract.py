"""The stack contract (tests/serving/stacks/contract.py) on every stack that runs here: the embedded
engine, the simulator, the toy plug-in, the llm-serving stand-in and the vLLM stand-in; the real
llm-serving and the real vLLM where their interpreters are (CI builds both)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from serving.stacks import LaunchSpec, register_stack
from tests.conftest import ROOT, SMALL_MODEL
from tests.serving.stacks.contract import StackContract

TINY = ROOT / "configs" / "llama" / "tiny_llama_pa.yaml"
SMALL = {"model_config.decode_batch_size": 4, "pa_config.num_blocks": 64, **SMALL_MODEL}


class TestEmbedded(StackContract):
    backend = "embedded"

    def make_spec(self, tmp_path):
        return LaunchSpec(self.render(TINY, SMALL, tmp_path), tmp_path / "run", 60, None, self.options({}))


class TestSim(StackContract):
    backend = "sim"

    def make_spec(self, tmp_path):
        return LaunchSpec(self.render(TINY, SMALL, tmp_path), tmp_path / "run", 60, None,
                          self.options({"profile": "embedded"}))


class TestToy(StackContract):
    backend = "toy"

    @pytest.fixture(autouse=True)
    def registered(self):
        register_stack("toy", "tests.plugins.toy_stack:ToyStack")

    def make_spec(self, tmp_path):
        base = tmp_path / "toy.yaml"
        base.write_text("step_ms: 1\nmax_tokens: 4096\n")
        return LaunchSpec(self.render(base, {}, tmp_path), tmp_path / "run", 10, None, self.options({}))


class TestLLMServingStandIn(StackContract):
    backend = "llm_serving"

    def make_spec(self, tmp_path):
        from tests.serving.stacks.standin import build_standin, write_base_config
        si = build_standin(tmp_path / "standin")
        project = tmp_path / "project"
        (project / "configs" / "llama").mkdir(parents=True)
        (project / "configs" / "llama" / "tiny_llama_pa.yaml").write_text(TINY.read_text())
        base = project / write_base_config(project)
        opts = self.options({"root": str(si.root), "npu_smi": str(si.bin / "npu-smi")})
        return LaunchSpec(self.render(base, {"pa_config.num_blocks": 128}, tmp_path), tmp_path / "run", 60, 0, opts)


class TestVLLMStandIn(StackContract):
    backend = "vllm"

    def make_spec(self, tmp_path):
        fake = Path(__file__).with_name("fake_vllm")
        env = {"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "FAKE_VLLM_MODE": "ok"}
        opts = self.options({"python": sys.executable, "device": "cpu", "env": env})
        cfg = self.render(ROOT / "configs" / "vllm" / "tiny_llama.yaml", {"model": "tiny"}, tmp_path)
        return LaunchSpec(cfg, tmp_path / "run", 60, None, opts)


@pytest.mark.xdist_group("vllm_real")        # with the other real-vLLM tests: one worker at a time
class TestVLLMReal(StackContract):
    """Real vLLM (CPU build, a tiny LLaMA with dummy weights): skipped without TUNER_VLLM_PYTHON, failed
    under TUNER_REQUIRE_VLLM=1 (CI)."""
    backend = "vllm"

    def make_spec(self, tmp_path):
        from tests.serving.stacks.vllm_model import make_tiny_llama, vllm_python
        python = vllm_python()
        model = make_tiny_llama(python, tmp_path / "tiny_llama")
        cfg = self.render(ROOT / "configs" / "vllm" / "tiny_llama.yaml", {"model": str(model), "max_num_seqs": 4},
                          tmp_path)
        return LaunchSpec(cfg, tmp_path / "run", 600, None, self.options({"python": python, "device": "cpu"}))


@pytest.mark.xdist_group("llm_serving_real")
class TestLLMServingReal(StackContract):
    """The real upstream llm-serving (.ci/llm_serving.sh): skipped without its paths, failed under
    TUNER_REQUIRE_LLM_SERVING=1 (CI)."""
    backend = "llm_serving"

    def make_spec(self, tmp_path):
        from tests.serving.stacks.real_llm_serving import STUDY, require_real
        from tuner.space.compose import load_space
        require_real()
        space = load_space(STUDY, ROOT)
        cfg = self.render(ROOT / space.base_config, {"model_config.decode_batch_size": 4}, tmp_path)
        return LaunchSpec(cfg, tmp_path / "run", 180, None, self.options(space.backend_options()))
