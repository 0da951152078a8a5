"""The vLLM surrogate's worker: vLLM v1's own Scheduler on a virtual clock, no model loaded.

Runs inside vLLM's interpreter (``vllm.python``) as a script, so the tuner never imports vLLM:

    <vllm python> serving/sim/vllm_worker.py        # JSON lines on stdin, one answer line each on stdout

Requests (one JSON object per line):
  {"op": "ping"}                    -> {"ok": true, "vllm": "<version>"}
  {"op": "simulate", "engine": {vLLM flags of the trial's YAML}, "num_blocks": N,
   "steptime": {StepTime fields}, "requests": [[send offset s, prompt, prompt_len, output_len], ...],
   "concurrency": null | N}
     -> {"ok": true, "records": [[sent, first_token, done, [token times], finish_reason, error], ...],
         "steps": n, "preemptions": n, "busy": s}
  {"op": "quit"}
Any failure answers {"ok": false, "error": "<one line>"}; the worker goes on with the next line.

The scheduler is built as vLLM's engine core builds it (vllm/v1/engine/core.py) and as its own
tests do (tests/v1/core/utils.py create_scheduler): the VllmConfig from the trial's flags
(``EngineArgs(...).create_engine_config()``, so vLLM's own defaults and checks apply) and a
KVCacheConfig of ``num_blocks`` blocks of one full-attention group. Each step is
``schedule()``, then a ModelRunnerOutput with one sampled token for every request whose
computed tokens reach its length (a prefill chunk that does not finish its prompt samples
nothing, as in the model runner), then ``update_from_output()``: token budget, running-batch
limit, chunked prefill, block allocation, prefix caching and preemption are vLLM's. Requests
reach ``add_request`` between steps, as the engine core drains its input queue between steps.
Prompts are tokenised with the model folder's tokenizer (as the OpenAI server does), so prefix
caching sees the real token ids (the tokenizer and every prompt's ids are kept for the worker's life);
without a tokenizer each prompt gets distinct ids. When its stdin closes (the tuner ended, even
by SIGKILL) the worker ends too.
"""
from __future__ import annotations

import dataclasses
import gc
import heapq
import json
import os
import sys

from vllm_steptime import StepTime   # this file's folder is sys.path[0] when run as a script

_OUT = None        # the protocol's stream: fd 1 as it was before vLLM could log to it


def _protocol_stream():
    """Keep fd 1 for answers only: vLLM logs to stdout, so fd 1 becomes stderr for everyone else."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


class Engine:
    """What does not change between simulations of one configuration: the VllmConfig, the tokenizer."""

    def __init__(self, flags: dict):
        from vllm.engine.arg_utils import EngineArgs
        names = {f.name for f in dataclasses.fields(EngineArgs)}
        self.vllm_config = EngineArgs(**{k: v for k, v in flags.items() if k in names}).create_engine_config()
        self.tokenizer = _tokenizer(flags.get("model"))

    def scheduler(self, num_blocks: int):
        import copy

        import torch
        from vllm.utils.hashing import get_hash_fn_by_name
        from vllm.v1.core import kv_cache_utils as kcu
        from vllm.v1.core.sched.scheduler import Scheduler
        from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
        from vllm.v1.structured_output import StructuredOutputManager

        cfg = copy.deepcopy(self.vllm_config)        # the scheduler keeps and edits it
        cache = cfg.cache_config
        spec = FullAttentionSpec(block_size=cache.block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
        kv = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
        cache.num_gpu_blocks = num_blocks
        block, hash_block = kcu.resolve_kv_cache_block_sizes(kv, cfg)
        kv.hash_block_size = hash_block
        if hasattr(kcu, "resolve_cache_hit_alignment_tokens"):
            kv.cache_hit_alignment_tokens = kcu.resolve_cache_hit_alignment_tokens(kv, cfg, block, hash_block)
        sched = Scheduler(vllm_config=cfg, kv_cache_config=kv, structured_output_manager=StructuredOutputManager(cfg),
                          block_size=block, hash_block_size=hash_block, log_stats=False)
        hasher = None
        if cache.enable_prefix_caching:
            fn = get_hash_fn_by_name(cache.prefix_caching_hash_algo)
            kcu.init_none_hash(fn)
            hasher = kcu.get_request_block_hasher(hash_block, fn)
        return sched, hasher

    def token_ids(self, index: int, prompt: str | None, prompt_len: int) -> list[int]:
        if self.tokenizer is not None and prompt is not None:
            return self.tokenizer(prompt)
        base = 1_000 + index * 4_096       # distinct per request: no prefix is shared
        return [base + i for i in range(prompt_len + 1)]


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(model: str | None):
    """The folder's tokenizer as the OpenAI server applies it (special tokens added), else None.
    Kept, with every prompt's ids, for the worker's life: each configuration replays the same trace."""
    if not model or not os.path.isdir(model):
        return None
    if model not in _TOKENIZERS:
        try:
            from transformers import AutoTokenizer
            tok = AutoTokenizer.from_pretrained(model)
        except Exception:   # noqa: BLE001  (no tokenizer in the folder: distinct ids per prompt)
            _TOKENIZERS[model] = None
        else:
            cache: dict[str, list[int]] = {}
            _TOKENIZERS[model] = lambda text: cache.get(text) or cache.setdefault(text, tok(text).input_ids)
    return _TOKENIZERS[model]


def simulate(engine: Engine, num_blocks: int, st: StepTime, reqs: list, concurrency: int | None) -> dict:
    from vllm.sampling_params import SamplingParams
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    sched, hasher = engine.scheduler(num_blocks)
    max_len = engine.vllm_config.model_config.max_model_len
    n = len(reqs)
    sent, first, done = [None] * n, [None] * n, [None] * n
    times: list[list[float]] = [[] for _ in range(n)]
    reason, error = [None] * n, [None] * n
    arrivals: list[tuple[float, int]] = []       # (time it reaches the scheduler, index)
    waiting = iter(range(concurrency, n)) if concurrency else None

    def send(i: int, at: float) -> None:
        sent[i] = at
        heapq.heappush(arrivals, (at + st.arrival_delay, i))

    for i in range(min(concurrency, n) if concurrency else n):
        send(i, reqs[i][0])

    def finish(i: int, t: float, why: str, err: str | None = None) -> None:
        done[i], reason[i], error[i] = t, why, err
        if first[i] is None:
            first[i] = t
        if waiting is not None:
            j = next(waiting, None)
            if j is not None:
                send(j, max(reqs[j][0], t))

    now, steps, busy, token, preempted = 0.0, 0, 0.0, 7, 0
    while arrivals or sched.has_requests():
        if not sched.has_requests() and arrivals and arrivals[0][0] > now:
            now = arrivals[0][0]                      # idle until the next request reaches the engine
        while arrivals and arrivals[0][0] <= now:
            _, i = heapq.heappop(arrivals)
            _, prompt, plen, olen = reqs[i]
            ids = engine.token_ids(i, prompt, plen)
            if len(ids) + olen > max_len:             # the OpenAI server answers 400 before the engine
                finish(i, now + st.delivery_delay, "length", f"server: prompt of {len(ids)} tokens + "
                       f"{olen} exceeds max_model_len {max_len}")
                continue
            sp = SamplingParams(max_tokens=olen, min_tokens=olen, ignore_eos=True, temperature=0.0)
            sched.add_request(Request(str(i), ids, sp, None, arrival_time=now, block_hasher=hasher))
        out = sched.schedule()
        preempted += len(out.preempted_req_ids or ())
        scheduled = out.num_scheduled_tokens
        if not scheduled:
            if arrivals:
                now = max(now, arrivals[0][0])
                continue
            break                                     # nothing can ever run (cannot happen with checked configs)
        prefill = decode = context = 0
        ids, sampled = [], []
        for rid, k in scheduled.items():
            r = sched.requests[rid]
            computed = r.num_computed_tokens          # already advanced by schedule()
            context += computed
            if k == 1 and computed - 1 >= r.num_prompt_tokens:
                decode += 1
            else:
                prefill += k
            ids.append(rid)
            sampled.append([token] if computed >= r.num_tokens else [])
        dt = st.step(prefill, decode, context)
        now += dt
        busy += dt
        steps += 1
        seen = now + st.delivery_delay
        mro = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: j for j, r in enumerate(ids)},
                                sampled_token_ids=sampled)
        for rid, s in zip(ids, sampled):
            if s:
                i = int(rid)
                if first[i] is None:
                    first[i] = seen
                times[i].append(seen)
        for eco in sched.update_from_output(out, mro).values():
            for o in eco.outputs:
                if o.finish_reason is not None:
                    finish(int(o.request_id), seen, str(o.finish_reason).lower().removeprefix("finishreason."))
    return {"ok": True, "steps": steps, "busy": busy, "preemptions": preempted,
            "records": [[sent[i], first[i], done[i], times[i], reason[i], error[i]] for i in range(n)]}


def main() -> None:
    global _OUT
    _OUT = _protocol_stream()
    engines: dict[str, Engine] = {}
    for line in sys.stdin:
        try:
            msg = json.loads(line)
            op = msg.get("op")
            if op == "quit":
                break
            if op == "ping":
                import vllm
                answer = {"ok": True, "vllm": vllm.__version__}
            elif op == "simulate":
                key = json.dumps(msg["engine"], sort_keys=True)
                if key not in engines:
                    engines.clear()                   # one configuration at a time: bounded memory
                    engines[key] = Engine(msg["engine"])
                # no collector passes within a run: its per-step objects are freed by reference counts, and
                # the passes cost 5-17 % of a 1,500-request simulation here (vLLM's engine core freezes its heap alike)
                gc.disable()
                try:
                    answer = simulate(engines[key], int(msg["num_blocks"]), StepTime.from_dict(msg["steptime"]),
                                      msg["requests"], msg.get("concurrency"))
                finally:
                    gc.enable()
            else:
                answer = {"ok": False, "error": f"op must be ping, simulate or quit, got {op!r}"}
        except Exception as err:   # noqa: BLE001  (one bad request is an answer, not the worker's end)
            answer = {"ok": False, "error": f"{type(err).__name__}: {' '.join(str(err).split())}"[:2000]}
        _OUT.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
