"""The event loop: order, timings by hand, and that the engine's own scheduler decides."""
import pytest

from serving.engine.block_manager import BlockManager
from serving.engine.scheduler import Scheduler
from serving.sim.simulator import (
    ARRIVE,
    STEP_END,
    STEP_START,
    SimSettings,
    Simulator,
    simulate,
)
from tests.serving.sim.factories import burst, flat_model, req

SMALL = SimSettings(num_blocks=64, block_size=4, prefill_batch_size=(1,), decode_batch_size=(4,),
                    seq_length=(256,), max_generate_length=256)


def traced(settings, model, plan):
    """Run, logging (time, kind) of every event handled."""
    sim = Simulator(settings, model)
    log = []
    for kind, name in ((ARRIVE, "on_arrival"), (STEP_START, "on_step_start"), (STEP_END, "on_step_end")):
        handler = getattr(sim, name)
        setattr(sim, name, lambda p, h=handler, k=kind: (log.append((sim.now, k)), h(p)))
    return sim.run(plan), log, sim


def test_events_run_in_time_order_and_arrivals_drain_before_a_step():
    plan = [(0.0, req(0)), (0.05, req(1)), (0.1, req(2))]   # 0.1 = the first prefill's end
    _, log, _ = traced(SMALL, flat_model(prefill=0.1, decode=0.01), plan)
    times = [t for t, _ in log]
    assert times == sorted(times)
    at = [k for t, k in log if t == pytest.approx(0.1)]
    assert at.index(ARRIVE) < at.index(STEP_START)
    assert log[0] == (0.0, ARRIVE) and log[1] == (0.0, STEP_START)


def test_one_request_timeline_adds_up_by_hand():
    model = flat_model(prefill=0.1, decode=0.01, host=0.002)
    [rec] = simulate(SMALL, model, [(1.0, req(0, output_len=4))]).records
    assert rec.sent == 1.0 and rec.first_token == pytest.approx(1.1)
    assert rec.token_times == pytest.approx([1.1, 1.112, 1.124, 1.136])
    assert rec.done == pytest.approx(1.136) and rec.n_tokens == 4
    assert rec.finish_reason == "length" and rec.ok


def test_request_delays_shift_queueing_and_reading():
    model = flat_model(prefill=0.1, decode=0.01)
    model = type(model)(**{**model.__dict__, "arrival_delay": 0.003, "delivery_delay": 0.002})
    [rec] = simulate(SMALL, model, [(0.0, req(0, output_len=1))]).records
    assert rec.first_token == pytest.approx(0.105) and rec.done == pytest.approx(0.105)


def test_a_request_arriving_mid_step_lengthens_that_step():
    model = flat_model(prefill=0.1, decode=0.01)
    model = type(model)(**{**model.__dict__, "arrival_cost": 0.004})
    plan = [(0.0, req(0, output_len=3)), (0.05, req(1, output_len=1))]   # arrives during the first prefill
    res = simulate(SMALL, model, plan)
    first, second = res.records
    assert first.first_token == pytest.approx(0.104)           # the prefill ran 4 ms longer
    assert second.first_token == pytest.approx(0.204)          # queued behind it, not charged again
    assert res.step_compute[0] == pytest.approx(0.104)         # the busy counter sees the longer step
    alone = simulate(SMALL, model, plan[:1]).records[0]
    assert alone.first_token == pytest.approx(0.1)             # arriving to an idle engine costs no step time


def test_uses_the_engine_scheduler_and_preempts_in_a_tiny_pool():
    sim = Simulator(SimSettings(num_blocks=9, block_size=4, decode_batch_size=(8,), seq_length=(256,)),
                    flat_model())
    assert type(sim.scheduler) is Scheduler and type(sim.blocks) is BlockManager
    res = sim.run(burst(6, prompt_words=3, output_len=8))   # 6 x 12 tokens need 18 blocks, 8 exist
    assert res.preemptions > 0 and res.preemptions == sim.scheduler.num_preemptions
    assert all(r.ok and r.n_tokens == 8 for r in res.records)
    assert res.usage()["sim_preemptions"] == res.preemptions


def test_kv_never_and_seq_length_are_prompt_out_of_range_errors():
    s = SimSettings(num_blocks=4, block_size=4, decode_batch_size=(4,), seq_length=(64,))
    recs = simulate(s, flat_model(), [(0.0, req(0, 3, 20)), (0.0, req(1, 3, 80)), (0.0, req(2, 3, 4))]).records
    for rec in recs[:2]:                           # 24 tokens > 3 usable blocks x 4; 84 >= seq_length 64
        assert rec.finish_reason == "prompt_out_of_range" and rec.error == "server: prompt_out_of_range"
        assert rec.n_tokens == 0 and rec.first_token == rec.done == 0.0
    assert recs[2].ok


def test_prefill_batch_is_honoured_unless_the_profile_says_single():
    s = SimSettings(num_blocks=256, block_size=4, prefill_batch_size=(8,), decode_batch_size=(8,),
                    seq_length=(256,))
    batched = simulate(s, flat_model(prefill=0.1), burst(8, output_len=1)).records
    single = simulate(s, flat_model(prefill=0.1, single_prefill=True), burst(8, output_len=1)).records
    assert max(r.done for r in batched) == pytest.approx(0.1)           # one padded step of 8
    assert max(r.done for r in single) == pytest.approx(0.8)            # llm-serving PA: one per step


def test_busy_counts_compute_not_host():
    res = simulate(SMALL, flat_model(prefill=0.01, decode=0.01, host=0.01), [(0.0, req(0, output_len=50))])
    u = res.usage(window=0.1)
    assert u["sim_busy_mean"] == pytest.approx(50, abs=1)
    assert 50 <= u["sim_busy_peak"] <= 100 and u["sim_busy_samples"] >= 9
    assert u["sim_steps"] == 50


def test_same_plan_same_result():
    plan = burst(30, output_len=5, gap=0.003)
    a = simulate(SMALL, flat_model(per_row=0.001), plan).records
    b = simulate(SMALL, flat_model(per_row=0.001), plan).records
    assert [r.token_times for r in a] == [r.token_times for r in b]


def test_closed_loop_sends_the_next_request_when_one_finishes():
    from serving.workload import Plan
    model = flat_model(prefill=0.1, decode=0.01)
    res = simulate(SMALL, model, Plan(burst(8), concurrency=2))
    recs = res.records
    assert all(r.ok for r in recs)
    done = sorted(r.done for r in recs)
    assert [r.sent for r in recs[:2]] == [0, 0]
    assert [r.sent for r in recs[2:]] == pytest.approx(done[:6])       # one per finished request, in order
    live = [sum(1 for r in recs if r.sent <= t < r.done) for t in (r.sent for r in recs)]
    assert max(live) == 2
    open_loop = simulate(SMALL, model, burst(8)).records
    assert max(r.done for r in open_loop) < max(r.done for r in recs)
