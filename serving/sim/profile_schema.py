"""The latency profile file (serving/sim/profiles/<name>.yaml), typed: unknown keys and negative
costs are rejected at load, with the file and the key. A section or term left out (or left
empty) costs nothing. What each term means is in serving.sim.latency."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Seconds = Annotated[float, Field(ge=0)]
Size = Annotated[int, Field(ge=1)]
Points = dict[Size, Seconds]          # size (bucket or longest prompt) -> seconds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        """``host:`` with nothing after it means the defaults, as a missing key does."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class PrefillCompute(_Section):
    base: Seconds = 0.0
    per_row: Seconds = 0.0                 # per row of the bucket
    per_padded_token: Seconds = 0.0        # per token of bucket * longest prompt
    per_padded_token_sq: Seconds = 0.0     # per bucket * longest prompt ** 2 (attention)


class DecodeCompute(_Section):
    base: Seconds = 0.0
    per_row: Seconds = 0.0                 # per row of the bucket
    per_live_row: Seconds = 0.0
    per_context_token: Seconds = 0.0       # context of the live rows


class Host(_Section):
    base: Seconds = 0.0
    per_row: Seconds = 0.0                 # per row of the bucket (llm-serving's host work on its padded batch)
    per_live_row: Seconds = 0.0


class Prefill(_Section):
    compute: PrefillCompute = PrefillCompute()
    table: dict[Size, Points] = {}         # bucket -> longest prompt -> seconds, added to compute
    host: Host = Host()


class Decode(_Section):
    compute: DecodeCompute = DecodeCompute()
    by_bucket: Points = {}                 # bucket -> seconds, replaces base + per_row * bucket
    host: Host = Host()


class Request(_Section):
    arrival_delay: Seconds = 0.0           # client send -> request queued in the scheduler
    delivery_delay: Seconds = 0.0          # step end -> client reads the token
    arrival_cost: Seconds = 0.0            # step time added per request arriving while a step runs


class Tokenizer(_Section):
    """The profiled model's tokenizer: a trace's lengths are counted with it (serving.stacks.sim)."""
    name: str                              # what the summary calls it ("LLaMA-2 SentencePiece")
    file: str                              # a SentencePiece .model, or a Hugging Face tokenizer.json or folder
    search: list[str] = []                 # folders a relative ``file`` is looked for in ($VARS expanded)


class ProfileFile(_Section):
    name: str | None = None                # default: the file's stem
    tokenizer: Tokenizer | None = None
    single_prefill: bool = False           # one prompt per prefill step (llm-serving's PA path)
    prefill: Prefill = Prefill()
    decode: Decode = Decode()
    request: Request = Request()


PREFILL_COMPUTE = tuple(PrefillCompute.model_fields)
DECODE_COMPUTE = tuple(DecodeCompute.model_fields)
HOST = tuple(Host.model_fields)
