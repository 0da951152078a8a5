#!/usr/bin/env bash
# CI: the real llm-serving for the acceptance tests (tests/serving/stacks/test_llm_serving_real.py).
# Builds its interpreter (.venv-llms, a venv of its own: MindSpore 2.7 needs numpy<2 and 2024 pins)
# from the pins in ../shared/thirdparty/README.md, copies the checkout to .ci-build/llm-serving
# (the shared one is read-only) and applies the RUN_LEVEL<=5 patch and the project's own
# (serving/stacks/patches/: bare-run levels 1-4, emulated step time). Writes the variables the
# tests read to .ci-build/llm_serving.env (source it) and prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
THIRD=$(cd "${TUNER_THIRDPARTY:-../shared/thirdparty}" && pwd)
PY=${TUNER_LLMS_BASE_PYTHON:-python3.11}
PINS=(mindspore==2.7.0 "numpy<2" pydantic==1.10.11 transformers==4.40.1 uvicorn==0.26.0
      fastapi==0.109.0 sse-starlette==3.0.3 websockets==11.0.3 sentencepiece pyyaml psutil
      jieba rouge_chinese nltk pyarrow==12.0.1 ftfy tiktoken mindpet==1.0.4 opencv-python-headless)

# Reused when it already imports what llm-serving and mindformers need (pip's cache makes a rebuild quick too).
probe='import mindspore, numpy, pydantic, fastapi, uvicorn, sse_starlette, transformers, sentencepiece, mindpet;
assert numpy.__version__ < "2" and pydantic.VERSION.startswith("1.10") and mindspore.__version__ == "2.7.0"'
if ! .venv-llms/bin/python -c "$probe" >/dev/null 2>&1; then
  rm -rf .venv-llms
  "$PY" -m venv .venv-llms
  .venv-llms/bin/python -m pip install -q --upgrade pip
  .venv-llms/bin/python -m pip install -q --no-compile "${PINS[@]}"
  # the stack runs with PYTHONDONTWRITEBYTECODE (the checkout is never written to), so the venv is
  # byte-compiled here, on every core, or each start would compile MindSpore's modules again
  .venv-llms/bin/python -m compileall -q -j 0 .venv-llms/lib >/dev/null || true
  .venv-llms/bin/python -c "$probe"
fi

BUILD=.ci-build/llm-serving
rm -rf "$BUILD"
mkdir -p .ci-build
cp -r "$THIRD/llm-serving" "$BUILD"
chmod -R u+w "$BUILD"
patch -s -p1 -d "$BUILD" < "$THIRD/llm-serving-run-level-5.patch"
for p in serving/stacks/patches/*.patch; do
  [ -e "$p" ] && patch -s -p1 -d "$BUILD" < "$p"
done

cat > .ci-build/llm_serving.env <<ENV
export TUNER_LLMS_PYTHON=$PWD/.venv-llms/bin/python
export TUNER_LLMS_ROOT=$PWD/$BUILD
export TUNER_MINDFORMERS_ROOT=$THIRD/mindformers
export TUNER_REQUIRE_LLM_SERVING=1
ENV
echo "CI: llm-serving built and patched in $(( $(date +%s) - start )) s (.ci-build/llm_serving.env)"
