import pytest

from serving.engine.scheduler import StepKind, bucket_for
from serving.engine.sequence import SeqStatus
from tests.serving.engine.factories import make_scheduler, make_seq


def run_to_end(sch, token=7, limit=1000):
    plans = []
    while sch.has_work() and len(plans) < limit:
        plan = sch.schedule()
        plans.append(plan)
        if plan.seqs:
            sch.postprocess(plan, [token] * len(plan.seqs))
    return plans


def test_prefill_batches_up_to_prefill_batch_size():
    sch = make_scheduler(num_blocks=64, prefill=(1, 2), decode=(8,))
    for _ in range(3):
        sch.add(make_seq())
    plan = sch.schedule()
    assert plan.kind is StepKind.PREFILL and len(plan.seqs) == 2 and plan.bucket == 2
    plan2 = sch.schedule()
    assert plan2.kind is StepKind.PREFILL and len(plan2.seqs) == 1 and plan2.bucket == 1


def test_running_batch_never_exceeds_largest_decode_bucket():
    sch = make_scheduler(num_blocks=64, prefill=(4,), decode=(1, 2))
    for _ in range(5):
        sch.add(make_seq(max_new=3))
    plans = run_to_end(sch)
    assert max(len(p.seqs) for p in plans if p.kind is StepKind.DECODE) <= 2
    assert all(p.bucket in (1, 2) for p in plans if p.kind is StepKind.DECODE)


def test_decode_pads_to_bucket():
    assert bucket_for(3, [1, 4, 8]) == 4
    assert bucket_for(8, [1, 4, 8]) == 8
    with pytest.raises(ValueError):
        bucket_for(9, [1, 4, 8])


def test_every_request_finishes_with_length_and_frees_its_blocks():
    sch = make_scheduler(num_blocks=16, block_size=4, prefill=(2,), decode=(4,))
    seqs = [make_seq(prompt_len=3, max_new=5) for _ in range(6)]
    for s in seqs:
        sch.add(s)
    run_to_end(sch)
    assert all(s.status is SeqStatus.FINISHED and s.finish_reason == "length" for s in seqs)
    assert all(len(s.output_ids) == 5 for s in seqs)
    assert sch.blocks.num_used == 0


def test_eos_stops_unless_ignored():
    sch = make_scheduler(end_token=2)
    a, b = make_seq(max_new=5, ignore_eos=False), make_seq(max_new=5, ignore_eos=True)
    sch.add(a)
    sch.add(b)
    run_to_end(sch, token=2)
    assert a.finish_reason == "eos" and len(a.output_ids) == 1
    assert b.finish_reason == "length" and len(b.output_ids) == 5


def test_preempts_newest_when_blocks_run_out_and_recomputes_later():
    # 4 usable blocks of 2 tokens; two requests of 2 + 4 tokens need 3 blocks each at full length
    sch = make_scheduler(num_blocks=5, block_size=2, prefill=(2,), decode=(2,))
    first, second = make_seq(prompt_len=2, max_new=4), make_seq(prompt_len=2, max_new=4)
    sch.add(first)
    sch.add(second)
    plans = run_to_end(sch)
    assert sch.num_preemptions >= 1
    assert second.num_preemptions >= 1 and first.num_preemptions == 0
    assert any(second in p.preempted for p in plans)
    assert first.finish_reason == second.finish_reason == "length"
    assert len(second.output_ids) == 4 and sch.blocks.num_used == 0


def test_request_larger_than_pool_is_rejected_never():
    sch = make_scheduler(num_blocks=3, block_size=2)
    seq = make_seq(prompt_len=4, max_new=4)
    sch.add(seq)
    assert seq.finish_reason == "prompt_out_of_range" and not sch.has_work()


def test_abort_frees_blocks():
    sch = make_scheduler()
    seq = make_seq()
    sch.add(seq)
    sch.schedule()
    assert sch.blocks.num_used > 0
    sch.abort(seq)
    assert sch.blocks.num_used == 0 and not sch.has_work() and seq.finish_reason == "aborted"


def test_bad_bucket_lists_are_rejected():
    with pytest.raises(ValueError, match="ascending"):
        make_scheduler(decode=(8, 4))
