"""Where the real llm-serving is (built by .ci/llm_serving.sh): the tests that need it skip when the
variables are absent, and fail instead when TUNER_REQUIRE_LLM_SERVING=1 (CI)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

VARS = ("TUNER_LLMS_PYTHON", "TUNER_LLMS_ROOT", "TUNER_MINDFORMERS_ROOT")
STUDY = "pa_batching_llm_serving"


def require_real() -> dict[str, str]:
    """The three paths, or skip (fail when TUNER_REQUIRE_LLM_SERVING=1) naming what is missing."""
    missing = [v for v in VARS if not os.environ.get(v)]
    bad = [v for v in VARS if os.environ.get(v) and not Path(os.environ[v]).exists()]
    if missing or bad:
        why = (f"the real llm-serving is needed: set {', '.join(missing)}" if missing else
               f"{', '.join(f'{v}={os.environ[v]}' for v in bad)} does not exist") + " (.ci/llm_serving.sh builds it)"
        if os.environ.get("TUNER_REQUIRE_LLM_SERVING") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return {v: os.environ[v] for v in VARS}


def tree_digest(root: Path) -> dict[str, str]:
    """Every file of a checkout and its content hash: what 'never written to' is checked against."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out
