"""Small builders for engine unit tests (CPU, no server)."""
from __future__ import annotations

from serving.engine.block_manager import BlockManager
from serving.engine.scheduler import Scheduler
from serving.engine.sequence import SamplingParams, Sequence


def make_seq(prompt_len: int = 4, max_new: int = 4, ignore_eos: bool = True) -> Sequence:
    return Sequence(list(range(3, 3 + prompt_len)), SamplingParams(max_new_tokens=max_new, ignore_eos=ignore_eos))


def make_scheduler(num_blocks: int = 8, block_size: int = 4, prefill=(1,), decode=(4,), end_token: int = 2) -> Scheduler:
    return Scheduler(BlockManager(num_blocks, block_size), list(prefill), list(decode), end_token)
