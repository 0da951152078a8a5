"""Fixtures shared by tests/serving/stacks and tests/serving/sim."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class SharedVllm:
    python: str           # the vLLM interpreter
    model: Path           # the tiny LLaMA's folder (its tokenizer too)
    base: Path            # the base config, rendered with the model
    launched: Path        # the config vLLM runs with (the calibration's settings on the base)
    options: dict[str, Any]
    running: Any          # the RunningStack


@pytest.fixture(scope="session")
def shared_vllm(tmp_path_factory):
    """One real vLLM, launched as `tune calibrate` launches it (its settings on the tiny LLaMA), for the
    tests that only replay on a vLLM (the surrogate's fidelity, the peer clients): vLLM's start is most of
    such a test's time on 2 cores. tests/conftest.py runs its users last in their group, so it is up beside
    no other real-vLLM launch of that worker; it stays up, idle, until the worker's session ends."""
    from serving.config.render import render
    from serving.stacks import vllm_sim_calibrate as cal
    from serving.stacks.vllm import VLLMOptions
    from tests.conftest import ROOT
    from tests.serving.stacks.vllm_model import make_tiny_llama, vllm_python
    python = vllm_python()
    root = tmp_path_factory.mktemp("shared_vllm")
    model = make_tiny_llama(python, root / "tiny_llama")
    base = root / "base.yaml"
    render(ROOT / "configs/vllm/tiny_llama.yaml", {"model": str(model)}, base)
    options = VLLMOptions(python=python, device="cpu").model_dump()
    running = cal.launch(base, options, root / "run", ready_timeout=300)
    try:
        yield SharedVllm(python, model, base, root / "run" / "config.yaml", options, running)
    finally:
        running.stop()
