"""A closed-loop plan end to end: the embedded engine over HTTP, and the simulator."""
import pandas as pd

from tests.serving.replay.test_closed_loop import in_flight_peak
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import run_trial
from tuner.space.compose import load_space
from tuner.study.run import StudyRun

PARAMS = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
          "pa_config.num_blocks": 256, "pa_config.block_size": 16}


def test_the_embedded_engine_never_sees_more_than_n_requests_at_once(project_root):
    space = load_space("pa_batching", project_root, ["load.qps=null", "load.concurrency=2", "load.requests=8"])
    plan = StudyRun(space, project_root, "").plan()
    assert plan.concurrency == 2 and len(plan) == 8
    out = run_trial(TrialContext(space, project_root, project_root / "trials/x/0", plan), PARAMS)
    assert out.ok, out.fail_detail
    assert out.metrics["requests_ok"] == 8
    df = pd.read_csv(project_root / "trials/x/0/requests.csv")
    recs = list(df.itertuples())
    assert in_flight_peak(recs) == 2
    assert (df["sent"] - df["scheduled"]).max() < 0.5      # each sent when its slot came free


def test_the_simulator_replays_a_closed_loop_study(project_root):
    space = load_space("pa_batching", project_root, ["backend=sim", "load.qps=null", "load.concurrency=4",
                                                     "load.requests=40"])
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(TrialContext(space, project_root, project_root / "trials/x/1", plan), PARAMS)
    assert out.ok, out.fail_detail
    df = pd.read_csv(project_root / "trials/x/1/requests.csv")
    assert len(df) == 40 and in_flight_peak(list(df.itertuples())) == 4
