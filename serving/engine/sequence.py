"""One request as the engine sees it: prompt, generated tokens, KV block table."""
from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field

_ids = itertools.count()


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 300
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 3
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False


@dataclass(eq=False)
class Sequence:
    prompt_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    arrival_time: float = 0.0
    seq_id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    status: SeqStatus = SeqStatus.WAITING
    finish_reason: str | None = None
    num_preemptions: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def max_tokens(self) -> int:
        """Tokens the request can reach: prompt plus every token it may generate."""
        return len(self.prompt_ids) + self.sampling.max_new_tokens

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def last_token(self) -> int:
        return self.all_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is SeqStatus.FINISHED
