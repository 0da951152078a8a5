"""Capacity under SLOs: one launch, a rate search on the running stack, every rate recorded."""

import optuna
import pandas as pd
import pytest

from serving.config.errors import ConfigError
from serving.stacks.sim import SimRunning, SimStack
from serving.stacks.base import LaunchSpec
from tuner.runtime import capacity, slo
from tuner.runtime.context import TrialContext
from tuner.runtime.trial import replay_options, run_trial
from tuner.space.compose import load_space
from tuner.study.run import StudyRun

PARAMS = {"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
          "pa_config.num_blocks": 256, "pa_config.block_size": 16}
CAP = ["objectives=[{name: capacity_rps, direction: maximize}]", "slo={ttft_p99: 0.04, failed: 0}",
       "capacity.requests=40", "load.qps=20", "load.duration=2"]


def sim_running(space, root, run_dir) -> SimRunning:
    run_dir.mkdir(parents=True, exist_ok=True)
    SimStack.config_format.render(root / space.base_config, PARAMS, run_dir / "config.yaml")
    return SimStack().launch(LaunchSpec(run_dir / "config.yaml", run_dir, options=space.backend_options()))


def test_capacity_on_the_simulator_brackets_the_highest_rate_meeting_the_slo(project_root):
    space = load_space("pa_batching", project_root, [*CAP, "backend=sim"])
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(TrialContext(space, project_root, project_root / "trials/c/0", plan), PARAMS)
    assert out.ok, out.fail_detail
    m = out.metrics
    probes = m["capacity_probes"]
    assert probes[0]["rate"] is None and probes[0]["planned"] == 10          # the saturation burst: 40 // 4
    rated = [p for p in probes[1:]]
    passed = [p["rate"] for p in rated if p["verdict"] == "pass"]
    failed = [p["rate"] for p in rated if p["verdict"] == "fail"]
    assert passed and failed and max(passed) < min(failed)                     # monotone on a deterministic stack
    assert m["capacity_rps"] == m["capacity_low"] == pytest.approx(max(passed), rel=1e-4)
    assert m["capacity_high"] == pytest.approx(min(failed), rel=1e-4)
    assert (m["capacity_high"] - m["capacity_low"]) <= space.capacity.tolerance * m["capacity_high"]
    assert rated[0]["rate"] == pytest.approx(m["capacity_saturation_rps"], rel=1e-4)   # the first rate tried
    assert m["ttft_p99"] <= 0.04 and m["client_kept_up"] is True
    assert m["capacity_requests_replayed"] == sum(p["replayed"] for p in probes)
    df = pd.read_csv(project_root / "trials/c/0/requests.csv")
    assert sorted(df["probe"].unique()) == list(range(len(probes)))


def test_the_capacity_found_meets_the_slo_and_the_bracket_above_does_not(project_root):
    """Checked by hand: full replays at the capacity and at the bracket's top, no search involved."""
    space = load_space("pa_batching", project_root, [*CAP, "backend=sim"])
    running = sim_running(space, project_root, project_root / "trials/c/1")
    reqs = [r for _, r in StudyRun(space, project_root, "").plan()]
    found = capacity.search(running, reqs, space.slo, space.capacity, replay_options(space))
    unit = capacity.unit_gaps(space.capacity.requests, 0)
    at = running.replay(capacity.rate_plan(reqs, found.capacity, unit)).records
    above = running.replay(capacity.rate_plan(reqs, found.high, unit)).records
    assert slo.verdict(at, space.slo)[0] == slo.PASS
    assert slo.verdict(above, space.slo)[0] == slo.FAIL


class LaggingSim(SimRunning):
    """The simulator with every send 50 ms late: what a saturated client records."""

    def replay(self, plan, options=None, on_request=None, deadline=None, stop=None):
        res = super().replay(plan, options, on_request, deadline, stop)
        for r in res.records:
            r.sent += 0.05
        return res


def test_a_client_that_fell_behind_fails_the_search_loudly(project_root):
    space = load_space("pa_batching", project_root, [*CAP, "backend=sim", "capacity.max_send_lag=0.025"])
    base = sim_running(space, project_root, project_root / "trials/c/2")
    lagging = LaggingSim(base.settings, base.latency)
    reqs = [r for _, r in StudyRun(space, project_root, "").plan()]
    with pytest.raises(capacity.ClientOverloaded, match="send lag p99 50.0 ms over 25 ms"):
        capacity.search(lagging, reqs, space.slo, space.capacity, replay_options(space))


def test_capacity_search_on_the_embedded_stack_stops_overloaded_rates_early(project_root):
    # a 1 ms TTFT bound no rate meets: every probe is overloaded and its verdict is certain within
    # its first requests (at 0.05 s a probe could reach certainty only after its last send)
    over = ["objectives=[{name: capacity_rps, direction: maximize}]", "slo={ttft_p99: 0.001, failed: 0}",
            "capacity.requests=100", "capacity.saturation_requests=20", "capacity.max_probes=3",
            "capacity.max_send_lag=0.5",
            "load.qps=20", "load.duration=1"]
    space = load_space("pa_batching", project_root, over)
    plan = StudyRun(space, project_root, "").plan()
    out = run_trial(TrialContext(space, project_root, project_root / "trials/e/0", plan), PARAMS)
    assert out.ok, out.fail_detail
    m = out.metrics
    probes = m["capacity_probes"]
    print(probes)
    assert 1 + 1 <= m["capacity_rates_tried"] == len(probes) <= 1 + 3 and m["capacity_saturation_rps"] > 0
    assert m["client_kept_up"] in (True, False) and "send_lag_p99" in m
    passed = [p["rate"] for p in probes[1:] if p["verdict"] == "pass"]
    fails = [p for p in probes[1:] if p["verdict"] == "fail"]
    assert m["capacity_rps"] == (pytest.approx(max(passed), rel=1e-4) if passed else 0.0)
    # the live stop ended the overloaded rates: fewer requests sent than planned, the rest cancelled
    assert fails and all(p["stopped_early"] and p["replayed"] < p["planned"] for p in fails)
    df = pd.read_csv(project_root / "trials/e/0/requests.csv")
    assert (df.groupby("probe")["sent"].count().tolist() == [p["replayed"] for p in probes])


def test_a_capacity_study_stores_the_rates_tried_and_reports_their_curve(project_root):
    from tuner.results.report import write_report
    space = load_space("pa_batching", project_root, [*CAP, "backend=sim", "seed=1"])
    run = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials/cap.db'}")
    study = run.run(2)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(t.values[0] == t.user_attrs["capacity_rps"] for t in done)
    assert all(isinstance(t.user_attrs["capacity_probes"], list) for t in done)
    html, _ = write_report(study, run.trials_dir)
    assert "capacity-curves" in html.read_text()


@pytest.mark.parametrize("extra, msg", [
    ([], "the capacity_rps objective needs an 'slo:' mapping"),
    (["slo={ttft_p98: 1}"], "slo.ttft_p98: an SLO key must be 'failed' or"),
    (["slo={failed: 2}"], "slo.failed: a fraction of requests in [0, 1] must hold"),
    (["slo={ttft_p99: 1}", "capacity.tolerance=0"], "capacity.tolerance"),
])
def test_bad_capacity_settings_are_rejected_at_load(project_root, extra, msg):
    with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        load_space("pa_batching", project_root, ["objectives=[{name: capacity_rps, direction: maximize}]", *extra])


def test_slo_without_the_capacity_objective_is_rejected(project_root):
    with pytest.raises(ConfigError, match="slo: applies to the capacity_rps objective"):
        load_space("pa_batching", project_root, ["slo={ttft_p99: 1}"])
