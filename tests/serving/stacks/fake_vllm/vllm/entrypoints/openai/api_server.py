"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` in the vLLM stack's unit tests
(real vLLM is launched in tests/serving/stacks/test_vllm_real.py). FAKE_VLLM_MODE picks what it
does: ``ok`` serves /health, /metrics (a real vLLM scrape) and streamed /v1/completions;
``engine_died`` logs the engine core's start failure and lives on answering 500, as vLLM's API
process was seen to; ``kv_pool`` logs vLLM's KV-pool refusal and exits; ``die_mid_replay`` exits
on its first completion."""
import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from aiohttp import web

METRICS = Path(__file__).resolve().parents[5] / "probes" / "data" / "vllm_metrics_busy.txt"
MODE = os.environ.get("FAKE_VLLM_MODE", "ok")


async def health(request):
    return web.Response(status=500 if MODE == "engine_died" else 200)


async def metrics(request):
    return web.Response(text=METRICS.read_text(), content_type="text/plain")


async def completions(request):
    body = await request.json()
    if MODE == "die_mid_replay":
        print("(EngineCore pid=1) ERROR EngineCore encountered a fatal error.", flush=True)
        os._exit(1)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(body["max_tokens"]):
        await asyncio.sleep(0.002)
        choice = {"index": 0, "text": "", "finish_reason": "length" if i == body["max_tokens"] - 1 else None}
        await resp.write(b"data: " + json.dumps({"model": body["model"], "choices": [choice]}).encode() + b"\n\n")
    usage = {"completion_tokens": body["max_tokens"]}
    await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]\n\n")
    return resp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    print(f"non-default args: {open(args.config).read()!r} env KV={os.environ.get('VLLM_CPU_KVCACHE_SPACE')} "
          f"tag={os.environ.get('TUNER_TRIAL_TAG')}", flush=True)
    if MODE == "kv_pool":
        print("(EngineCore pid=2) ERROR ValueError: To serve at least one request with the model's max seq len "
              "(512), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB).",
              flush=True)
        sys.exit(1)
    if MODE == "engine_died":
        print("(EngineCore pid=2) ERROR EngineCore failed to start.", flush=True)
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/completions", completions)
    web.run_app(app, host=args.host, port=args.port, print=lambda *a: None)


if __name__ == "__main__":
    main()
