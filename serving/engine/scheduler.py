"""Continuous batching over two queues, in the way llm-serving's PA path batches.

Each step is either a prefill of up to ``prefill_batch_size[-1]`` waiting
prompts, or one decode token for every running request (at most
``decode_batch_size[-1]``). Batches are padded up to the next configured bucket,
so a bucket list of [1, 8, 32] costs a 32-row step for 9 live requests, as on
the device. When a decode step runs out of KV blocks, the newest running
request is preempted: its blocks are freed and it is recomputed later.
"""
from __future__ import annotations

import bisect
import enum
from collections import deque
from dataclasses import dataclass, field

from typing import TYPE_CHECKING, Any

from serving.engine.block_manager import AllocStatus, BlockManager
from serving.engine.sequence import Sequence, SeqStatus

if TYPE_CHECKING:
    from serving.config.schema import ServingYaml


@dataclass(frozen=True)
class SchedulerSettings:
    """What the Scheduler and BlockManager are built from: the KV pool, the batch buckets and the
    length limits. The engine's settings add the model to these; the simulator uses them alone."""
    num_blocks: int = 256
    block_size: int = 16
    prefill_batch_size: tuple[int, ...] = (1,)
    decode_batch_size: tuple[int, ...] = (8,)
    seq_length: tuple[int, ...] = (512,)
    max_generate_length: int = 512
    end_token: int = 2

    @classmethod
    def from_config(cls, cfg: ServingYaml, **extra: Any):
        """The serving YAML's scheduling keys, plus ``extra`` fields of a subclass."""
        m, pa = cfg.model, cfg.pa_config
        return cls(num_blocks=pa.num_blocks, block_size=pa.block_size,
                   prefill_batch_size=tuple(m.prefill_batch_size), decode_batch_size=tuple(m.decode_batch_size),
                   seq_length=tuple(m.seq_length), max_generate_length=m.max_generate_length,
                   end_token=m.end_token, **extra)

    def build(self) -> tuple[BlockManager, Scheduler]:
        """The KV pool and the scheduler over it."""
        blocks = BlockManager(self.num_blocks, self.block_size)
        return blocks, Scheduler(blocks, list(self.prefill_batch_size), list(self.decode_batch_size),
                                 self.end_token, self.max_generate_length)


class StepKind(enum.Enum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass
class StepPlan:
    kind: StepKind
    seqs: list[Sequence]          # live rows, in batch order
    bucket: int                   # rows the device computes (live rows padded to a bucket)
    preempted: list[Sequence] = field(default_factory=list)  # swapped out to make room

    @property
    def num_tokens(self) -> int:
        """Tokens the step feeds the model (prompt tokens for prefill, one per row for decode)."""
        if self.kind is StepKind.PREFILL:
            return sum(s.num_tokens for s in self.seqs)
        return len(self.seqs)


def bucket_for(n: int, buckets: list[int]) -> int:
    """Smallest configured bucket that holds ``n`` rows."""
    i = bisect.bisect_left(buckets, n)
    if i == len(buckets):
        raise ValueError(f"{n} rows exceed the largest bucket {buckets[-1]}")
    return buckets[i]


class Scheduler:
    def __init__(self, block_manager: BlockManager, prefill_batch_size: list[int],
                 decode_batch_size: list[int], end_token: int = 2, max_generate_length: int | None = None):
        for name, value in (("prefill_batch_size", prefill_batch_size), ("decode_batch_size", decode_batch_size)):
            if not value or any(v < 1 for v in value) or list(value) != sorted(value):
                raise ValueError(f"{name} must be a non-empty ascending list of positive ints, got {value}")
        self.blocks = block_manager
        self.prefill_buckets = list(prefill_batch_size)
        self.decode_buckets = list(decode_batch_size)
        self.end_token = end_token
        self.max_generate_length = max_generate_length
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> AllocStatus:
        """Queue ``seq``; a request that can never fit is finished at once and NEVER returned."""
        status = self.blocks.can_allocate(seq)
        if status is AllocStatus.NEVER:
            seq.status = SeqStatus.FINISHED
            seq.finish_reason = "prompt_out_of_range"
            return status
        self.waiting.append(seq)
        return status

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> StepPlan | None:
        plan = self._schedule_prefill()
        if plan is None:
            plan = self._schedule_decode()
        return plan

    def _schedule_prefill(self) -> StepPlan | None:
        room = min(self.prefill_buckets[-1], self.decode_buckets[-1] - len(self.running))
        batch: list[Sequence] = []
        while self.waiting and len(batch) < room:
            seq = self.waiting[0]
            if self.blocks.can_allocate(seq) is not AllocStatus.OK:
                break  # FCFS: a head that must wait blocks the ones behind it
            self.waiting.popleft()
            self.blocks.allocate(seq)
            seq.status = SeqStatus.RUNNING
            batch.append(seq)
        if not batch:
            return None
        self.running.extend(batch)
        return StepPlan(StepKind.PREFILL, batch, bucket_for(len(batch), self.prefill_buckets))

    def _schedule_decode(self) -> StepPlan | None:
        preempted: list[Sequence] = []
        batch: list[Sequence] = []
        for seq in list(self.running):
            if seq.status is not SeqStatus.RUNNING:
                continue  # preempted earlier in this loop
            while not self.blocks.can_append(seq):
                victim = self.running[-1]
                self._preempt(victim)
                preempted.append(victim)
                if victim is seq:
                    break
            if seq.status is SeqStatus.RUNNING:
                self.blocks.may_append(seq)
                batch.append(seq)
        if not batch:
            return StepPlan(StepKind.DECODE, [], 0, preempted) if preempted else None
        return StepPlan(StepKind.DECODE, batch, bucket_for(len(batch), self.decode_buckets), preempted)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.deallocate(seq)
        seq.status = SeqStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(self, plan: StepPlan, token_ids: list[int]) -> list[Sequence]:
        """Append one new token per row; return the rows that finished (their blocks freed)."""
        finished = []
        for seq, token in zip(plan.seqs, token_ids):
            seq.output_ids.append(int(token))
            reason = self._finish_reason(seq, int(token))
            if reason:
                seq.status = SeqStatus.FINISHED
                seq.finish_reason = reason
                self.running.remove(seq)
                self.blocks.deallocate(seq)
                finished.append(seq)
        return finished

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        if token == self.end_token and not seq.sampling.ignore_eos:
            return "eos"
        if len(seq.output_ids) >= seq.sampling.max_new_tokens:
            return "length"
        if self.max_generate_length is not None and seq.num_tokens >= self.max_generate_length:
            return "length"
        return None

    def abort(self, seq: Sequence) -> None:
        """Drop a request whose client went away; frees its blocks."""
        if seq in self.waiting:
            self.waiting.remove(seq)
        elif seq in self.running:
            self.running.remove(seq)
            self.blocks.deallocate(seq)
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = seq.finish_reason or "aborted"
