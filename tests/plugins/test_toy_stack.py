"""A new stack from the test folder runs a study end to end; nothing in tuner/ knows it."""
import optuna

from serving.stacks import register_stack, stack_names
from tuner.cli import main
from tuner.runtime.constraints import is_feasible

SPACE = """\
study: toy
backend: toy
base_config: configs/toy.yaml
trace: traces/alpaca_like_1500.jsonl
load: {qps: 20, duration: 0.5, request_timeout: 10}
objectives:
  - {name: total_time, direction: minimize}
  - {name: utilisation, direction: maximize}
params:
  step_ms: {type: categorical, choices: [0.5, 1, 100]}
sampler: random
seed: 0
timeouts: {ready: 10, replay: 60}
toy: {busy: 37}
"""


def test_a_stack_registered_from_the_tests_runs_a_study(project_root):
    register_stack("toy", "tests.plugins.toy_stack:ToyStack")
    assert "toy" in stack_names()
    (project_root / "configs/toy.yaml").write_text("step_ms: 1\nmax_tokens: 4096\n")
    (project_root / "search_spaces/toy.yaml").write_text(SPACE)
    storage = f"sqlite:///{project_root / 'trials' / 'toy.db'}"
    args = ["--study", "toy", "--root", str(project_root), "--storage", storage, "--no-progress"]
    assert main([*args, "--n-trials", "4", "toy.max_step_ms=10"]) == 0
    trials = optuna.load_study(study_name="toy", storage=storage).trials
    rejected = [t for t in trials if t.user_attrs.get("rejected_before_launch")]
    assert len(trials) - len(rejected) == 4          # a configuration refused before launch spends no budget
    assert {t.user_attrs["config"]["step_ms"] == 100 for t in trials} == {True, False}  # both paths taken
    for t in trials:
        step = t.user_attrs["config"]["step_ms"]
        if step == 100:   # the toy format's own pre-launch check rejected it: infeasible, never launched
            assert t.user_attrs["fail_class"] == "config_rejected" and "max_step_ms" in t.user_attrs["fail_detail"]
            assert not is_feasible(t) and t.state == optuna.trial.TrialState.FAIL and t in rejected
        else:
            assert is_feasible(t), t.user_attrs.get("fail_detail")
            assert t.user_attrs["requests_ok"] == t.user_attrs["requests"] == 10
            assert t.user_attrs["utilisation"] == 37.0       # the stack's named probe, not the first by name
            assert t.user_attrs["aaa_decoy_mean"] == 1.0


def test_unknown_option_of_a_plugged_stack_is_rejected_at_load(project_root):
    register_stack("toy", "tests.plugins.toy_stack:ToyStack")
    (project_root / "configs/toy.yaml").write_text("step_ms: 1\nmax_tokens: 4096\n")
    (project_root / "search_spaces/toy.yaml").write_text(SPACE)
    assert main(["--study", "toy", "--root", str(project_root), "toy.colour=1"]) == 2


def test_a_stack_installed_with_an_entry_point_runs_a_study_in_a_fresh_process(project_root, tmp_path):
    """An out-of-tree stack: a distribution's metadata names it in group serving_tuner.stacks;
    `tune` in a new process finds it with no register_stack call and no change to the tree."""
    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    site = tmp_path / "site"
    dist = site / "toy_stack_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-stack-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[serving_tuner.stacks]\ntoy_ep = tests.plugins.toy_stack:ToyStack\n")
    (project_root / "configs/toy.yaml").write_text("step_ms: 1\nmax_tokens: 4096\n")
    (project_root / "search_spaces/toy_ep.yaml").write_text(
        SPACE.replace("study: toy\nbackend: toy\n", "study: toy_ep\nbackend: toy_ep\n").replace("\ntoy: {", "\ntoy_ep: {"))
    storage = f"sqlite:///{project_root / 'trials' / 'toy_ep.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "tuner.cli", "--study", "toy_ep", "--root", str(project_root),
                           "--storage", storage, "--no-progress", "--n-trials", "1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(study_name="toy_ep", storage=storage).trials
    # one trial: a second would be the GP's (torch's import and first fit), nothing the entry point decides
    assert len(trials) == 1 and trials[0].user_attrs["utilisation"] == 37.0
