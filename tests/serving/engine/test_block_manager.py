import pytest

from serving.engine.block_manager import NULL_BLOCK, AllocStatus, BlockManager
from tests.serving.engine.factories import make_seq


def test_null_block_is_never_handed_out():
    bm = BlockManager(num_blocks=4, block_size=2)
    seq = make_seq(prompt_len=6, max_new=0)
    bm.allocate(seq)
    assert NULL_BLOCK not in seq.block_table
    assert sorted(seq.block_table) == [1, 2, 3]
    assert bm.num_free == 0 and bm.num_used == 3


def test_can_allocate_answers_ok_later_never():
    bm = BlockManager(num_blocks=5, block_size=4)          # 4 usable blocks = 16 tokens
    assert bm.can_allocate(make_seq(prompt_len=8, max_new=8)) is AllocStatus.OK
    assert bm.can_allocate(make_seq(prompt_len=8, max_new=9)) is AllocStatus.NEVER
    holder = make_seq(prompt_len=12, max_new=1)
    bm.allocate(holder)                                     # 3 blocks taken, 1 free
    assert bm.can_allocate(make_seq(prompt_len=8, max_new=1)) is AllocStatus.LATER
    bm.deallocate(holder)
    assert bm.can_allocate(make_seq(prompt_len=8, max_new=1)) is AllocStatus.OK


def test_append_takes_a_block_only_at_a_block_boundary():
    bm = BlockManager(num_blocks=4, block_size=4)
    seq = make_seq(prompt_len=4, max_new=8)
    bm.allocate(seq)
    assert len(seq.block_table) == 1
    seq.output_ids.append(7)                                # 5 tokens: slot 4 needs block 2
    assert bm.can_append(seq)
    bm.may_append(seq)
    assert len(seq.block_table) == 2
    seq.output_ids.append(7)                                # 6 tokens: still within block 2
    bm.may_append(seq)
    assert len(seq.block_table) == 2
    assert bm.slot(seq, 5) == seq.block_table[1] * 4 + 1


def test_can_append_false_when_pool_is_full():
    bm = BlockManager(num_blocks=2, block_size=2)
    seq = make_seq(prompt_len=2, max_new=0)
    bm.allocate(seq)
    seq.output_ids.append(5)
    assert not bm.can_append(seq)
    with pytest.raises(RuntimeError):
        bm.may_append(seq)


def test_bad_sizes_are_rejected_with_the_rule():
    with pytest.raises(ValueError, match="num_blocks >= 2"):
        BlockManager(1, 16)
    with pytest.raises(ValueError, match="block_size >= 1"):
        BlockManager(8, 0)
