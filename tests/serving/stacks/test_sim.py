"""backend=sim through the tuner: same metrics as a real trial, `tune` runs a study on it."""
import optuna
import pytest

from serving.config.schema import load_serving_yaml
from serving.sim.profile_io import default_profile
from serving.stacks.sim import SimStack
from serving.stacks.base import LaunchError, LaunchSpec
from tests.conftest import ROOT, TINY
from tuner.cli import main
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial

PARAMS = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
          "pa_config.num_blocks": 256, "pa_config.block_size": 16}
USAGE = {"engine_busy_mean", "engine_busy_peak", "engine_busy_samples"}
SIM_USAGE = {"sim_busy_mean", "sim_busy_peak", "sim_busy_samples", "sim_steps", "sim_preemptions"}


def test_sim_trial_has_a_real_trials_metrics_and_records(project_root):
    over = ["load.qps=20", "load.duration=0.5"]
    real_space = load_space("pa_batching", project_root, over)
    sim_space = load_space("pa_batching", project_root, over + ["backend=sim"])
    plan = StudyRun(real_space, project_root, "").plan()
    real = run_trial(TrialContext(real_space, project_root, project_root / "trials/r", plan), PARAMS)
    sim = run_trial(TrialContext(sim_space, project_root, project_root / "trials/s", plan), PARAMS)
    assert real.ok and sim.ok, (real.fail_detail, sim.fail_detail)
    assert set(real.metrics) - USAGE == set(sim.metrics) - SIM_USAGE
    assert SIM_USAGE <= set(sim.metrics) and 0 < sim.metrics["utilisation"] <= 100
    for r, s in zip(real.records, sim.records):
        assert (r.index, r.n_tokens, r.finish_reason, r.error) == (s.index, s.n_tokens, s.finish_reason, s.error)
        assert len(s.token_times) == s.n_tokens and s.sent <= s.first_token <= s.done
    assert (project_root / "trials/s/requests.csv").exists()


def test_tune_runs_a_study_on_the_simulator(project_root):
    storage = f"sqlite:///{project_root / 'trials' / 'sim.db'}"
    args = ["--study", "pa_batching", "--root", str(project_root), "--storage", storage, "--no-progress",
            "backend=sim", "seed=3"]
    assert main([*args, "--n-trials", "2"]) == 0
    assert main([*args, "++sim.profile=ascend910b_llama2_7b", "--n-trials", "1"]) == 0
    study = optuna.load_study(study_name="pa_batching", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    measured = [t for t in done if "fail_class" not in t.user_attrs]   # a rejected config is COMPLETE too
    assert measured and all("sim_busy_mean" in t.user_attrs for t in measured)


def test_default_profile_follows_the_base_config():
    assert default_profile(load_serving_yaml(TINY)) == "embedded"
    assert default_profile(load_serving_yaml(ROOT / "configs/llama/llama_7b_kbk_pa_dyn.yaml")) == "ascend910b_llama2_7b"


def test_running_sim_stack_answers_like_a_stack(tmp_path):
    running = SimStack().launch(LaunchSpec(TINY, tmp_path, options={"profile": "ascend910b_llama2_7b"}))
    assert running.alive() and running.probes() == [] and running.log_tail() == ""
    assert running.latency.single_prefill
    running.stop()


def test_unknown_profile_is_config_rejected(tmp_path):
    with pytest.raises(LaunchError) as err:
        SimStack().launch(LaunchSpec(TINY, tmp_path, options={"profile": "nope"}))
    assert err.value.fail_class == "config_rejected" and "bundled profiles" in err.value.detail


@pytest.mark.parametrize("override, word", [("sim.colour=1", "sim.colour"), ("sim.busy_window=0", "sim.busy_window")])
def test_bad_options_are_rejected_when_the_space_loads(project_root, override, word):
    """The stack's options model checks its section at load, before any trial (not at the first launch)."""
    from serving.config.errors import ConfigError
    with pytest.raises(ConfigError, match=word.replace(".", r"\.")):
        load_space("pa_batching", project_root, ["backend=sim", override])


def test_sim_replay_stops_at_the_replay_deadline_like_the_real_one(project_root):
    # the 1,500-request trace at X=5 takes ~700 s on the 910B profile: a 60 s deadline cuts it
    over = ["backend=sim", "load.qps=5", "load.duration=300", "timeouts.replay=60",
            "base_config=configs/llama/llama_7b_kbk_pa_dyn.yaml"]
    space = load_space("pa_batching", project_root, over)
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(TrialContext(space, project_root, project_root / "trials/d", plan), PARAMS | {"model_config.decode_batch_size": 64})
    assert not out.ok and out.fail_class == "hang", (out.fail_class, out.fail_detail)  # as a real replay
    cut = [r for r in out.records if not r.ok]
    assert cut and all(r.error == "timeout: replay deadline" for r in cut)
    assert all(t <= 60 for r in out.records for t in r.token_times)
    assert all(r.done <= 60 for r in out.records if r.ok)


class StopAfter:
    """A stop condition that fires once ``n`` requests are done: it looks at what finished, so a
    simulator that showed it the whole replay at once would stop at the very first poll."""
    poll = 0.05

    def __init__(self, n):
        self.n, self.fired = n, False

    def check(self, elapsed, records):
        return sum(1 for r in records if r.done is not None) >= self.n


def test_the_simulator_stops_a_replay_where_a_live_stop_condition_would(tmp_path):
    from serving.replay.client import STOPPED
    from serving.workload import Plan, TraceRequest
    running = SimStack().launch(LaunchSpec(TINY, tmp_path, options={"profile": "embedded"}))
    plan = Plan([(0.5 * i, TraceRequest(i, "a b c", 8, 3)) for i in range(10)])
    whole = running.replay(plan).records
    stop = StopAfter(4)
    cut = running.replay(plan, stop=stop).records
    assert stop.fired
    at = sorted(r.done for r in whole)[3]            # the fourth completion: the stop is due there
    assert sum(r.ok for r in cut) == 4 and all(r.done <= at for r in cut if r.ok)
    assert all(r.error == STOPPED for r in cut if not r.ok)
    assert all(r.sent is None for r in cut if r.error and whole[r.index].sent > at)   # never sent after the stop
    assert not StopAfter(11).fired and all(r.ok for r in running.replay(plan, stop=StopAfter(11)).records)
