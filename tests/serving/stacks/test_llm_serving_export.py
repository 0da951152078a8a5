"""The llm-serving export reproduces the trial (issue 27): the serving YAML and the mindformers
model YAML the trial ran with are exported together, and a relaunch of the export runs with the
trial's settings. Against the stand-in checkout (tests/serving/stacks/standin.py)."""
from pathlib import Path

import optuna
import yaml

from serving.config.schema import load_serving_yaml
from serving.stacks import LaunchSpec, get_stack
from tests.serving.stacks.standin import build_standin, write_base_config
from tuner.cli import main

STUDY = "pa_batching"
KV = ("num_blocks", "block_size", "seq_length")


def model_kv(path: Path) -> tuple:
    mc = yaml.safe_load(Path(path).read_text())["model"]["model_config"]
    return tuple(mc[k] for k in KV)


def serving_settings(path: Path) -> dict:
    """The serving config's settings that are the configuration (not its ports, device or file paths)."""
    cfg = load_serving_yaml(path)
    return {"model": cfg.model.model_dump(exclude={"model_cfg_path"}), "pa": cfg.pa_config.model_dump()}


def test_export_carries_the_model_yaml_the_trial_ran_with(project_root, tmp_path, monkeypatch):
    si = build_standin(tmp_path / "standin")
    monkeypatch.setenv("PATH", f"{si.bin}:{__import__('os').environ['PATH']}")
    storage = f"sqlite:///{project_root}/trials/study.db"
    where = ["--study", STUDY, "--root", str(project_root), "--storage", storage]
    common = ["backend=llm_serving", f"llm_serving.root={si.root}", f"base_config={write_base_config(project_root)}",
              "load.qps=20", "load.duration=1", "timeouts.ready=30", "timeouts.replay=60",
              "params.pa_config.num_blocks.low=64", "params.pa_config.num_blocks.high=256"]
    assert main(["run", *where, "--no-progress", *common, "n_trials=1"]) == 0
    [t] = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("fail_detail")
    run = Path(t.user_attrs["run_dir"])
    to = project_root / "configs" / "llama" / "exported.yaml"
    assert main(["export", *where, "--to", str(to), *common]) == 0

    # the export names its own copy of the model yaml, whose KV pool is the trial's (not the checkout's 1024 blocks)
    ref = Path(load_serving_yaml(to).model.model_cfg_path)
    assert ref == to.with_name("exported.model.yaml") and ref.is_file()
    assert model_kv(ref) == model_kv(run / "model_config.yaml") != model_kv(si.model_yaml)
    assert "# KV pages on the device" in ref.read_text()           # the model yaml's comments kept
    assert serving_settings(to) == serving_settings(run / "llm_serving.yaml")
    assert f"# With {ref.name}" in to.read_text()

    # relaunched from the export, the stack runs with the trial's settings
    stack = get_stack("llm_serving")
    opts = stack.parse_options({"root": str(si.root), "accelerator": "none"}).model_dump()
    again = tmp_path / "relaunch"
    with stack.launch(LaunchSpec(to, again, 30, None, opts)) as running:
        assert running.alive()
    assert model_kv(again / "model_config.yaml") == model_kv(run / "model_config.yaml")
    assert serving_settings(again / "llm_serving.yaml") == serving_settings(run / "llm_serving.yaml")

    # a second export to the same name keeps both files unless --force
    assert main(["export", *where, "--to", str(to), *common]) == 2
    to.unlink()
    assert main(["export", *where, "--to", str(to), *common]) == 2 and not to.exists()   # the model yaml is there
    assert main(["export", *where, "--to", str(to), "--force", *common]) == 0 and to.exists()
