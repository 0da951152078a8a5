"""One full trial on the embedded stack: render, launch, replay over HTTP, score, stop."""
import pandas as pd

from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial

SMALL = ["load.qps=20", "load.duration=1", "engine_config_unused=1"][:2]


def small_params(**kw):
    p = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
         "pa_config.num_blocks": 256, "pa_config.block_size": 16}
    p.update(kw)
    return p


def one_trial(project_root, name: str, params=None, overrides=SMALL):
    """(outcome, space, plan) of one trial of pa_batching in trials/x/<name>."""
    space = load_space("pa_batching", project_root, list(overrides))
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(TrialContext(space, project_root, project_root / "trials/x" / name, plan),
                    small_params() if params is None else params)
    return out, space, plan


def with_launch(monkeypatch, launch):
    """The embedded stack with ``launch`` in place of its own, as the trial gets its stack."""
    from serving.stacks import get_stack
    stack = type(get_stack("embedded"))
    replaced = type("Replaced", (stack,), {"launch": lambda self, spec: launch(spec)})()
    monkeypatch.setattr("tuner.runtime.trial.get_stack", lambda name: replaced)
    return replaced


def test_one_full_trial_scores_every_request(project_root):
    out, space, plan = one_trial(project_root, "0")
    assert out.ok, out.fail_detail
    m = out.metrics
    assert m["requests"] == m["requests_ok"] == len(plan) == 20
    assert m["total_time"] > 0 and 0 < m["utilisation"] <= 100 and m["engine_busy_samples"] >= 1
    assert m["tokens_out"] == sum(r.output_len for _, r in plan)
    df = pd.read_csv(project_root / "trials/x/0/requests.csv")
    assert len(df) == 20 and df["error"].isna().all()
    cfg = (project_root / "trials/x/0/config.yaml").read_text()
    assert "decode_batch_size: [8]" in cfg


def test_impossible_config_is_rejected_before_launch(project_root):
    out, space, plan = one_trial(project_root, "1", small_params(**{"pa_config.num_blocks": 4}))
    assert out.fail_class == "config_rejected" and "(num_blocks - 1) * block_size" in out.fail_detail
    assert not (project_root / "trials/x/1/engine.log").exists()


def test_a_fast_plan_goes_out_from_the_stacks_sender_pool_which_ends_with_the_trial(project_root, monkeypatch):
    import math
    import os

    import psutil

    from serving.replay import pool as pool_mod
    started = []
    real_init = pool_mod.SenderPool.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        started.append(list(self.pids))
    monkeypatch.setattr(pool_mod.SenderPool, "__init__", spy)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)               # several senders whatever the host
    out, space, plan = one_trial(project_root, "2", overrides=["load.qps=400", "load.duration=0.2", "load.request_timeout=60"])
    assert out.ok, out.fail_detail
    m = out.metrics
    assert m["requests"] == m["requests_ok"] == len(plan) == 80
    assert not math.isnan(m["send_lag_p50"]) and m["send_lag_p99"] >= m["send_lag_p50"] >= 0
    assert m["client_kept_up"] in (True, False)
    [pids] = started                                              # one pool, of two senders
    assert len(pids) == 2
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive                                              # stopped with the stack


def test_a_trial_whose_client_fell_behind_fails_as_client_overloaded_with_its_records_kept(project_root):
    """Judged on every replay, not only capacity searches: bounds below any real lag make every client late."""
    out, space, plan = one_trial(project_root, "3", overrides=SMALL + ["capacity.max_read_lag=1e-9"])
    assert out.fail_class == "client_overloaded" and "read lag p99" in out.fail_detail
    m = out.metrics
    assert m["client_kept_up"] is False and m["read_lag_p99"] > 0 and m["requests_ok"] == 20
    assert m["startup_s"] > 0 and m["replay_s"] > 0 and m["stop_s"] >= 0
    assert len(pd.read_csv(project_root / "trials/x/3/requests.csv")) == 20     # nothing measured is lost


def test_every_trial_records_where_its_time_went(project_root):
    out, space, plan = one_trial(project_root, "4")
    assert out.ok, out.fail_detail
    m = out.metrics
    assert m["startup_s"] > 0 and m["replay_s"] >= m["total_time"] > 0 and m["stop_s"] >= 0
    assert m["client_kept_up"] is True and m["read_lag_p99"] < space.capacity.max_read_lag


def test_a_stack_refusing_the_configuration_at_launch_fails_that_trial_only(project_root, monkeypatch):
    """A ConfigError from a stack's launch is the configuration's failure (config_rejected), not the study's end."""
    from serving.config.errors import ConfigError

    def refuse(spec):
        raise ConfigError("must be a power of two, got 24", "pa_config", "block_size")

    with_launch(monkeypatch, refuse)
    out, space, plan = one_trial(project_root, "5")
    assert out.fail_class == "config_rejected" and "power of two" in out.fail_detail


def test_the_launch_spec_carries_the_config_the_trial_loaded_and_checked(project_root, monkeypatch):
    """The stack gets the typed config the trial rendered, loaded and checked, not a path to parse again."""
    from dataclasses import replace

    import pytest

    from serving.config.errors import ConfigError
    from serving.config.schema import load_serving_yaml
    from serving.stacks import LaunchError
    seen = []

    def spy(spec):
        seen.append(spec)
        raise LaunchError("crash_at_start", "spied")

    stack = with_launch(monkeypatch, spy)
    one_trial(project_root, "6")
    [spec] = seen
    assert spec.config == load_serving_yaml(spec.config_path) and spec.config.model_config_.decode_batch_size == [8]
    assert spec.loaded(lambda path: 1 / 0) is spec.config        # never parsed again
    # and its options typed once: the stack's launch takes them as they are
    assert stack.options_of(spec) is spec.settings and spec.settings.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="colour"):                 # untyped, bad: one clear error
        stack.options_of(replace(spec, settings=None, options={"colour": 1}))


def test_a_failed_replay_sends_no_lone_request_for_the_bound(project_root, monkeypatch):
    """A stack that hangs fails the trial at the replay's timeout; the lone request that measures the
    unloaded service time is not sent after it (it would wait the timeout out a second time)."""
    from serving.stacks import register_stack
    register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")
    monkeypatch.setenv("FAULTY_FAULT", "hang")
    calls = []
    import tuner.runtime.trial as trial
    real = trial.unloaded_service_times
    monkeypatch.setattr(trial, "unloaded_service_times", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    out, _, _ = one_trial(project_root, "hang", overrides=[*SMALL, "backend=faulty", "load.request_timeout=2",
                                                           "load.duration=0.25"])
    assert out.fail_class == "hang" and calls == []
    monkeypatch.setenv("FAULTY_FAULT", "ok")
    out, _, _ = one_trial(project_root, "ok", overrides=[*SMALL, "backend=faulty", "load.duration=0.25"])
    assert out.ok and calls == [1] and "arrival_bound" in out.metrics
