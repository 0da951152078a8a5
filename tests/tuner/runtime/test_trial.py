"""One full trial on the embedded stack: render, launch, replay over HTTP, score, stop."""
import pandas as pd

from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.runtime.trial import run_trial

SMALL = ["load.qps=20", "load.duration=1", "engine_config_unused=1"][:2]


def small_params(**kw):
    p = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
         "pa_config.num_blocks": 256, "pa_config.block_size": 16}
    p.update(kw)
    return p


def test_one_full_trial_scores_every_request(project_root):
    space = load_space("pa_batching", project_root, SMALL)
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(space, project_root, small_params(), project_root / "trials/x/0", plan)
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
    space = load_space("pa_batching", project_root, SMALL)
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(space, project_root, small_params(**{"pa_config.num_blocks": 4}), project_root / "trials/x/1", plan)
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
    space = load_space("pa_batching", project_root, ["load.qps=400", "load.duration=0.2", "load.request_timeout=60"])
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(space, project_root, small_params(), project_root / "trials/x/2", plan)
    assert out.ok, out.fail_detail
    m = out.metrics
    assert m["requests"] == m["requests_ok"] == len(plan) == 80
    assert not math.isnan(m["send_lag_p50"]) and m["send_lag_p99"] >= m["send_lag_p50"] >= 0
    assert m["client_kept_up"] in (True, False)
    [pids] = started                                              # one pool, of two senders
    assert len(pids) == 2
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive                                              # stopped with the stack


def test_the_client_kept_up_is_judged_on_the_replays_that_have_a_send_lag(project_root):
    from tuner.runtime.trial import client_figures
    space = load_space("pa_batching", project_root, ["capacity.max_send_lag=0.01"])
    nan = float("nan")
    assert client_figures([nan, 0.002, 0.005], space) == {"client_kept_up": True}    # a NaN first was the max
    assert client_figures([0.002, nan, 0.02], space) == {"client_kept_up": False}
    assert client_figures([nan], space) == client_figures([], space) == {"client_kept_up": None}
