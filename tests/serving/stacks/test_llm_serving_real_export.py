"""The real llm-serving on an exported configuration (issue 27): its own readers (ServingConfig, and
mindformers' MindFormerConfig on the model YAML the export names) read back the settings the trial
ran with, and the stack relaunched from the export serves."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import optuna
import pytest

from serving.replay import ReplayOptions
from serving.stacks import LaunchSpec, get_stack
from serving.workload import TraceRequest
from tests.serving.stacks.real_llm_serving import STUDY, require_real
from tests.serving.stacks.test_llm_serving_real import tune
from tuner.cli import main
from tuner.space.compose import load_space

pytestmark = pytest.mark.xdist_group("llm_serving_real")

# the settings as llm-serving and mindformers read them, in the stack's interpreter
READ_BACK = r"""
import json, sys
from mindspore_serving.config.config import ServingConfig
from mindformers.tools.register.config import MindFormerConfig
cfg = ServingConfig(sys.argv[1])
mc = MindFormerConfig(cfg.model_config.model_cfg_path).model.model_config
print(json.dumps({"prefill_batch_size": list(cfg.model_config.prefill_batch_size),
                  "decode_batch_size": list(cfg.model_config.decode_batch_size),
                  "seq_length": list(cfg.model_config.seq_length), "pa_config": dict(cfg.pa_config),
                  "model_yaml": {k: mc[k] for k in ("num_blocks", "block_size", "seq_length")}}))
"""


def read_back(paths: dict[str, str], config: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([paths["TUNER_LLMS_ROOT"], paths["TUNER_MINDFORMERS_ROOT"]])}
    done = subprocess.run([paths["TUNER_LLMS_PYTHON"], "-c", READ_BACK, str(config)], capture_output=True, text=True,
                          env=env, cwd=paths["TUNER_LLMS_ROOT"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_exported_config_reads_back_as_the_trial_ran(project_root, tmp_path):
    paths = require_real()
    [t] = tune(project_root, "load.duration=1")
    assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("fail_detail")
    run = Path(t.user_attrs["run_dir"])
    to = project_root / "configs" / "llama" / "exported.yaml"
    storage = f"sqlite:///{project_root}/trials/study.db"
    assert main(["export", "--study", STUDY, "--root", str(project_root), "--storage", storage, "--to", str(to),
                 "n_trials=1", "seed=0", "load.duration=1"]) == 0
    trial, exported = read_back(paths, run / "llm_serving.yaml"), read_back(paths, to)
    assert exported == trial
    assert exported["model_yaml"]["num_blocks"] == t.user_attrs["config"]["pa_config.num_blocks"]

    # relaunched from the export (as `tune` launches a trial), the real stack comes up and answers
    space = load_space(STUDY, project_root)
    stack = get_stack("llm_serving")
    with stack.launch(LaunchSpec(to, tmp_path / "relaunch", space.timeouts.ready, None,
                                 space.backend_options())) as running:
        [rec] = running.replay([(0.0, TraceRequest(0, "I love Beijing, because", 8, 4))],
                               ReplayOptions(request_timeout=60), deadline=120).records
        assert rec.ok, rec.error
    assert read_back(paths, tmp_path / "relaunch" / "llm_serving.yaml") == trial
