"""PagedAttention KV pool: ``num_blocks`` pages of ``block_size`` token slots.

Block 0 is the null block that padded batch rows point at, as in llm-serving,
so ``num_blocks - 1`` blocks hold real tokens.
"""
from __future__ import annotations

import enum
from collections import deque

from serving.engine.sequence import Sequence

NULL_BLOCK = 0


class AllocStatus(enum.Enum):
    OK = "ok"        # enough free blocks now
    LATER = "later"  # fits the pool, but not while other requests hold blocks
    NEVER = "never"  # the request at full length is larger than the whole pool


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 2:
            raise ValueError(f"num_blocks >= 2 must hold (block 0 is the null block), got {num_blocks}")
        if block_size < 1:
            raise ValueError(f"block_size >= 1 must hold, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: deque[int] = deque(range(1, num_blocks))

    @property
    def capacity_blocks(self) -> int:
        return self.num_blocks - 1

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.capacity_blocks - len(self._free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, seq: Sequence) -> AllocStatus:
        if self.blocks_for(seq.max_tokens) > self.capacity_blocks:
            return AllocStatus.NEVER
        if self.blocks_for(seq.num_tokens) > len(self._free):
            return AllocStatus.LATER
        return AllocStatus.OK

    def allocate(self, seq: Sequence) -> None:
        """Give ``seq`` blocks for all its current tokens (prompt, plus output when resumed)."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.seq_id} already holds blocks")
        need = self.blocks_for(seq.num_tokens)
        if need > len(self._free):
            raise RuntimeError(f"allocate needs {need} free blocks, {len(self._free)} free")
        seq.block_table = [self._free.popleft() for _ in range(need)]

    def deallocate(self, seq: Sequence) -> None:
        # Most recently used blocks go back first, like a stack, to keep reuse local.
        for block in reversed(seq.block_table):
            self._free.appendleft(block)
        seq.block_table = []

    def can_append(self, seq: Sequence) -> bool:
        """Whether the next decode step (KV slot for token ``num_tokens - 1``) has room."""
        return self.blocks_for(seq.num_tokens) <= len(seq.block_table) or len(self._free) > 0

    def may_append(self, seq: Sequence) -> None:
        if self.blocks_for(seq.num_tokens) > len(seq.block_table):
            if not self._free:
                raise RuntimeError(f"no free block to extend sequence {seq.seq_id}")
            seq.block_table.append(self._free.popleft())

    def slot(self, seq: Sequence, position: int) -> int:
        """Flat cache slot of token ``position`` of ``seq``."""
        return seq.block_table[position // self.block_size] * self.block_size + position % self.block_size
