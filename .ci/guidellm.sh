#!/usr/bin/env bash
# Builds .venv-guidellm: GuideLLM from PyPI, a third benchmark client for bench/peers.py (not CI's tests).
# A venv of its own: GuideLLM pins its own pydantic/httpx/transformers, which must not move ours or vLLM's.
# bench/peers.py launches it by path (.venv-guidellm/bin/guidellm). Prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if ! .venv-guidellm/bin/python -c "import guidellm" >/dev/null 2>&1; then
  python3 -m venv .venv-guidellm
  .venv-guidellm/bin/python -m pip install -q --upgrade pip
  # torch 2.13.0: the CPU wheel on this disk (a plain "torch" pulled by a dependency is a CUDA build of GBs)
  .venv-guidellm/bin/python -m pip install -q "torch==2.13.0"
  .venv-guidellm/bin/python -m pip install -q "guidellm==0.8.1" "torch==2.13.0"
fi
.venv-guidellm/bin/python -c "import importlib.metadata as m; print('CI: guidellm', m.version('guidellm'))"
echo "CI: .venv-guidellm ready in $(( $(date +%s) - start )) s"
