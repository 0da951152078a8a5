"""Embedded serving engine: continuous batching over a paged KV cache, tiny real model."""
from serving.engine.block_manager import AllocStatus, BlockManager
from serving.engine.scheduler import Scheduler, StepKind, StepPlan
from serving.engine.sequence import SamplingParams, Sequence, SeqStatus

__all__ = [
    "AllocStatus", "BlockManager", "Scheduler", "StepKind", "StepPlan",
    "SamplingParams", "Sequence", "SeqStatus",
]
