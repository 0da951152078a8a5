"""The step loop: schedule, run the model (or a stub), sample, post-process, count."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from serving.engine.model import ModelDims
from serving.engine.sampler import sample
from serving.engine.scheduler import SchedulerSettings, StepKind, StepPlan, bucket_for
from serving.engine.sequence import SamplingParams, Sequence
from serving.engine.tokenizer import WordTokenizer

# Where a request stops short of the real model, like the seeds' RUN_LEVEL.
STUBS = ("http", "scheduler")
STUB_TOKEN = 3


@dataclass(frozen=True)
class EngineSettings(SchedulerSettings):
    seq_type: str = "dynamic"          # "static" pads every prefill to a seq_length bucket
    dims: ModelDims = field(default_factory=ModelDims)
    backend: str = "numpy"             # or "mindspore"
    stub: str | None = None            # None = real model; "http" / "scheduler" stop early
    ignore_eos: bool = True            # keep trace output lengths exact with random weights


@dataclass
class StepRecord:
    """One step's timing, as /metrics serves it for calibration."""
    kind: str
    rows: int
    bucket: int
    tokens: int
    context: int      # total context tokens attended (decode) or prompt tokens (prefill)
    start: float
    duration: float
    waiting: int = 0  # requests still queued once the step was planned
    arrivals: int = 0  # requests queued since the previous step began (arrived during it or the gap)
    after_idle: bool = False  # the engine waited for work before this step: the gap is not host time


def build_model(settings: EngineSettings):
    max_pos = max(settings.max_generate_length, settings.seq_length[-1]) + 1
    if settings.backend == "numpy":
        from serving.engine.model import NumpyLlama
        return NumpyLlama(settings.dims, settings.num_blocks, settings.block_size, max_pos)
    if settings.backend == "mindspore":
        from serving.engine.model_mindspore import MindSporeLlama
        return MindSporeLlama(settings.dims, settings.num_blocks, settings.block_size, max_pos)
    raise ValueError(f"engine backend must be 'numpy' or 'mindspore', got {settings.backend!r}")


class LLMEngine:
    def __init__(self, settings: EngineSettings, history: int = 200_000):
        if settings.stub not in (None, *STUBS):
            raise ValueError(f"stub must be one of None, {STUBS}, got {settings.stub!r}")
        self.settings = settings
        self.tokenizer = WordTokenizer(settings.dims.vocab_size)
        self.blocks, self.scheduler = settings.build()
        self.model = None if settings.stub else build_model(settings)
        self._rngs: dict[int, np.random.Generator] = {}
        self.steps: deque[StepRecord] = deque(maxlen=history)
        self.step_count = 0
        self.busy_s = 0.0
        self.tokens_generated = 0
        self.started = time.monotonic()
        self._arrivals = 0
        self._idled = False

    def add_request(self, prompt_ids: list[int], sampling: SamplingParams) -> Sequence:
        seq = Sequence(prompt_ids, sampling, arrival_time=time.monotonic())
        self.admit(seq)
        return seq

    def admit(self, seq: Sequence) -> None:
        """Queue ``seq`` (counted for the next step record); one that can never fit is finished."""
        self._arrivals += 1
        self.scheduler.add(seq)

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def note_idle(self) -> None:
        """The caller is about to wait for requests; the next step record says so."""
        self._idled = True

    def step(self) -> tuple[StepPlan | None, list[tuple[Sequence, int]]]:
        """Run one step; returns the plan and the (sequence, new token) pairs it produced."""
        t0 = time.monotonic()
        plan = self.scheduler.schedule()
        if plan is None or not plan.seqs:
            return plan, []
        tokens = self._run(plan)
        produced = list(zip(plan.seqs, tokens))
        for seq in self.scheduler.postprocess(plan, tokens):
            self._rngs.pop(seq.seq_id, None)
        dt = time.monotonic() - t0
        self.busy_s += dt
        self.step_count += 1
        self.tokens_generated += len(tokens)
        context = sum(s.num_tokens for s in plan.seqs)
        self.steps.append(StepRecord(plan.kind.value, len(plan.seqs), plan.bucket, plan.num_tokens, context,
                                     t0 - self.started, dt, len(self.scheduler.waiting), self._arrivals, self._idled))
        self._arrivals, self._idled = 0, False
        return plan, produced

    def _run(self, plan: StepPlan) -> list[int]:
        if self.model is None:
            return [STUB_TOKEN] * len(plan.seqs)
        if plan.kind is StepKind.PREFILL:
            pad = None
            if self.settings.seq_type == "static":
                pad = bucket_for(max(s.num_tokens for s in plan.seqs), list(self.settings.seq_length))
            logits = self.model.prefill([s.all_ids for s in plan.seqs], [s.block_table for s in plan.seqs],
                                        plan.bucket, pad)
        else:
            logits = self.model.decode([s.last_token for s in plan.seqs], [s.num_tokens - 1 for s in plan.seqs],
                                       [s.block_table for s in plan.seqs], plan.bucket)
        return sample(logits, plan.seqs, self._rngs)

    def metrics(self) -> dict:
        sch = self.scheduler
        return {
            "uptime_s": time.monotonic() - self.started,
            "busy_s": self.busy_s,
            "steps": self.step_count,
            "tokens_generated": self.tokens_generated,
            "waiting": len(sch.waiting),
            "running": len(sch.running),
            "preemptions": sch.num_preemptions,
            "kv_blocks_total": self.blocks.capacity_blocks,
            "kv_blocks_used": self.blocks.num_used,
        }

    def step_records(self, since: int = 0) -> list[dict]:
        first = self.step_count - len(self.steps)
        return [asdict(r) for r in list(self.steps)[max(0, since - first):]]
