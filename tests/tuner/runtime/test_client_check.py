"""Whether a replay's client kept up: send lag against its schedule, read lag of its event loop."""
from tuner.runtime.client_check import behind, is_burst, kept_up
from tuner.space.capacity import CapacitySpec
from serving.workload import Plan, TraceRequest

SPEC = CapacitySpec(max_send_lag=0.01, max_read_lag=0.02)
NAN = float("nan")


def test_either_lag_over_its_bound_is_behind_and_says_which():
    assert behind({"send_lag_p99": 0.005, "read_lag_p99": 0.005}, SPEC) is None
    assert "send lag p99 50.0 ms over 10 ms" in behind({"send_lag_p99": 0.05, "read_lag_p99": 0.005}, SPEC)
    assert "read lag p99 30.0 ms over 20 ms" in behind({"send_lag_p99": 0.001, "read_lag_p99": 0.03}, SPEC)


def test_a_burst_has_no_schedule_but_its_reading_is_judged():
    burst = [(0.0, TraceRequest(i, "p", 3, 1)) for i in range(10)]
    assert is_burst(burst) and not is_burst(burst[:1]) and not is_burst(Plan(burst, concurrency=2))
    assert behind({"send_lag_p99": 0.5, "read_lag_p99": 0.001}, SPEC, burst=True) is None
    assert behind({"send_lag_p99": 0.5, "read_lag_p99": 0.5}, SPEC, burst=True).startswith("read lag")


def test_kept_up_over_replays_none_when_nothing_was_judged():
    ok, late = {"send_lag_p99": 0.001, "read_lag_p99": 0.001}, {"send_lag_p99": 0.02, "read_lag_p99": NAN}
    assert kept_up([(ok, False), ({"send_lag_p99": NAN}, False)], SPEC) == {"client_kept_up": True}
    assert kept_up([(ok, False), (late, False)], SPEC) == {"client_kept_up": False}
    assert kept_up([(late, True)], SPEC) == kept_up([], SPEC) == {"client_kept_up": None}
