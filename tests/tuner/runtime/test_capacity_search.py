"""The rate search on the simulator: an exhaustive scan's capacity, requests counted as sent, every probe kept."""
import math

import numpy as np
import pytest

from serving.replay.client import STOPPED
from serving.stacks.sim import SimStack
from serving.stacks.base import LaunchSpec
from tuner.runtime import capacity, slo
from tuner.runtime.capacity import Bracket
from tuner.space.compose import load_space
from tuner.study.run import StudyRun

N = 40
# monotone on the simulator at N requests (the scan checks it): TTFT-bound, TPOT-bound, and both
CASES = [((2, 1), "{ttft_p99: 0.1, failed: 0}"), ((8, 2), "{ttft_p99: 0.1, tpot_p99: 0.01, failed: 0}"),
         ((32, 4), "{tpot_p99: 0.012, failed: 0}")]


def setup(project_root, batches, bounds, tag):
    space = load_space("pa_batching", project_root, [
        "backend=sim", "objectives=[{name: capacity_rps, direction: maximize}]", f"slo={bounds}",
        f"capacity.requests={N}", "capacity.max_probes=14", "load.qps=20", f"load.duration={N / 20}"])
    reqs = [r for _, r in StudyRun(space, project_root, "").plan()]
    d = project_root / "trials" / tag
    d.mkdir(parents=True)
    params = {"model_config.decode_batch_size": batches[0], "model_config.prefill_batch_size": batches[1],
              "pa_config.num_blocks": 256, "pa_config.block_size": 16}
    SimStack.config_format.render(project_root / space.base_config, params, d / "config.yaml")
    return space, SimStack().launch(LaunchSpec(d / "config.yaml", d, options=space.backend_options())), reqs


def passes(running, reqs, space, rate) -> bool:
    recs = running.replay(capacity.rate_plan(reqs, rate, capacity.unit_gaps(N, space.load.seed))).records
    return slo.verdict(recs, space.slo)[0] == slo.PASS


@pytest.mark.parametrize("batches, bounds", CASES)
def test_the_search_finds_the_capacity_an_exhaustive_scan_finds(project_root, batches, bounds):
    space, running, reqs = setup(project_root, batches, bounds, "scan")
    found = capacity.search(running, reqs, space.slo, space.capacity, None, space.load.seed)
    # every rate from half to twice the answer, a quarter of the tolerance apart, each a full replay
    tol = space.capacity.tolerance
    grid = found.capacity / 2 * (1 + tol / 4) ** np.arange(400)
    grid = grid[grid < 2 * found.capacity]
    ok = np.array([passes(running, reqs, space, r) for r in grid])
    first_fail = int(np.argmin(ok))
    assert not ok.all() and ok[:first_fail].all() and not ok[first_fail:].any(), "the scan is not monotone"
    truth = grid[first_fail - 1]
    assert found.capacity == pytest.approx(truth, rel=tol)
    assert found.high <= found.low * (1 + tol) * (1 + 1e-9)
    assert passes(running, reqs, space, found.capacity) and not passes(running, reqs, space, found.high)


def test_requests_are_counted_as_sent_and_every_probe_is_kept(project_root):
    space, running, reqs = setup(project_root, (8, 2), CASES[1][1], "count")
    seen = []
    search = capacity.CapacitySearch(running, reqs, space.slo, space.capacity, None, space.load.seed,
                                     on_probe=seen.append)
    found = search.run()
    assert seen == found.probes == search.probes and len(found.probes) >= 3
    assert math.isinf(found.probes[0].rate) and found.probes[0].replayed == N // 4   # the burst, all sent
    unit = capacity.unit_gaps(N, space.load.seed)
    stopped = saved = 0
    for p in found.probes[1:]:
        assert p.replayed == sum(r.sent is not None for r in p.records)
        if p.verdict == slo.PASS:
            assert p.replayed == p.planned == N and not p.stopped_early
            continue
        # the whole replay again, uncut: the stop fired at the first moment the FAIL was certain
        whole = running.replay(capacity.rate_plan(reqs, p.rate, unit)).records
        at = slo.fail_time(whole, space.slo)
        assert p.stopped_early and at is not None
        assert p.replayed == sum(r.sent is not None and r.sent <= at for r in whole)
        assert all(r.done is None or r.done <= at for r in p.records)
        assert all(r.error == STOPPED for r in p.records if r.sent is None or r.done is None)
        assert p.why.startswith(tuple(space.slo))
        stopped += 1
        saved += N - p.replayed
    assert stopped >= 1 and saved > 0
    rows = found.metrics()
    assert rows["capacity_requests_replayed"] == sum(p.replayed for p in found.probes)
    assert [r["rate"] for r in rows["capacity_probes"][1:]] == [round(p.rate, 4) for p in found.probes[1:]]
    assert rows["capacity_rates_tried"] == len(found.probes)
    rates = {p.rate: p.verdict for p in found.probes}
    assert rates[found.low] == slo.PASS and rates[found.high] == slo.FAIL


def test_the_bracket_steps_down_from_fails_then_closes_in():
    b = Bracket(0.05)
    b.add(20.0, False, 0.5)                       # a stopped fail's load under 1 says nothing
    assert b.next_rate() == pytest.approx(16.0)   # nothing passed: down by 0.8
    b.add(16.0, False, 4.0)                       # far over: down by its load, at most halved
    assert b.next_rate() == pytest.approx(8.0)
    b.add(8.0, True, 0.64)
    # one pass at load 0.64: 8 / 0.8 = 10, lowered by the secant to the fail at load 4 (a tolerance
    # off both ends of [8, 16])
    guess = 8 + 8 * 0.36 / 3.36
    assert b.next_rate() == pytest.approx(guess)
    b.add(guess, True, 0.99)
    assert b.next_rate() == pytest.approx(math.sqrt(guess * 16))   # low moved twice: halve
    b.add(9.6, False, math.nan)
    # [8.86, 9.6] is within (1 + tol)^2: low * (1 + tol) closes it whatever it answers
    assert b.next_rate() == pytest.approx(guess * 1.05)
    b.add(guess * 1.05, False, math.nan)
    assert b.done() and b.low == pytest.approx(guess)
    b = Bracket(0.05)
    b.add(16.0, True, 0.81)
    b.add(32.0, False, math.nan)
    assert b.next_rate() == pytest.approx(16 / 0.9)                # no usable fail load: the pass alone


def test_a_pass_with_no_fail_yet_climbs_at_most_twofold():
    b = Bracket(0.05)
    b.add(10.0, True, 0.1)
    assert b.next_rate() == pytest.approx(20.0)
    b = Bracket(0.05)
    b.add(10.0, True, 0.8)
    assert b.next_rate() == pytest.approx(10 / math.sqrt(0.8))
    b = Bracket(0.05)
    b.add(10.0, True, 0.99)
    assert b.next_rate() == pytest.approx(10.5)   # the guess 10.05 kept a tolerance above the pass


def test_a_guess_a_hair_above_a_tolerance_over_the_pass_is_that_tolerance():
    # 10 / sqrt(0.9) = 10.54: a fail there would leave [10, 10.54] open by a hair and cost one more
    # near probe; 10.5 closes the bracket on a fail
    b = Bracket(0.05)
    b.add(10.0, True, 0.9)
    assert b.next_rate() == pytest.approx(10.5)
    b.add(10.5, False, math.nan)
    assert b.done()
    b = Bracket(0.05)                               # the same with a fail above: [10, 12]
    b.add(12.0, False, math.nan)
    b.add(10.0, True, 0.9)
    assert b.next_rate() == pytest.approx(10.5)
