"""aiohttp server with llm-serving's endpoints, JSON-lines streaming, /health and /metrics.

Run: python -m serving.engine.server --config CONFIG [--host 127.0.0.1] [--port 0] [--port-file F]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.engine.settings import engine_settings
from serving.engine import api
from serving.engine.engine import STUB_TOKEN, LLMEngine
from serving.engine.runner import EngineRunner

ROUTE = "/models/llama2"


class EngineServer:
    def __init__(self, engine: LLMEngine, seq_length: list[int], on_fatal=None):
        self.engine = engine
        self.on_fatal = on_fatal
        self.seq_length = seq_length
        self.runner: EngineRunner | None = None
        self.requests_total = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post(f"{ROUTE}/generate", self.generate)
        app.router.add_post(f"{ROUTE}/generate_stream", self.generate_stream)
        app.router.add_post(ROUTE, self.generate_either)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/metrics/steps", self.step_metrics)
        app.router.add_get("/config", self.config)
        app.router.add_get("/serving/get_bs", self.get_bs)
        app.router.add_get("/serving/get_request_numbers", self.get_request_numbers)
        app.router.add_get("/serving/get_serverd_model_info", self.model_info)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.runner = EngineRunner(self.engine, asyncio.get_running_loop(), self.on_fatal)
        self.runner.start()

    async def _stop(self, app: web.Application) -> None:
        if self.runner:
            self.runner.stop()

    # -- generation --------------------------------------------------------
    async def generate_either(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        try:
            stream = api._truthy(body.get("stream", False), "stream")
        except api.BadRequest as err:
            raise web.HTTPBadRequest(text=str(err))
        if stream:
            return await self._stream(request, body)
        return await self._complete(body)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(await self._json(request))

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, await self._json(request))

    async def _json(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, nested too deep, a 5000-digit number
            raise web.HTTPBadRequest(text=f"body must be JSON ({type(err).__name__}: {str(err)[:120]})")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=f"body must be a JSON object, got {type(body).__name__}")
        return body

    def _prepare(self, body: dict):
        try:
            prompt, sp, params = api.parse_request(body, self.engine.settings.ignore_eos)
        except api.BadRequest as err:
            raise web.HTTPBadRequest(text=str(err))
        self.requests_total += 1
        ids = self.engine.tokenizer.encode(prompt)
        if len(ids) <= 1:
            return None, sp, params, "prompt_token_ids_empty"
        if len(ids) + sp.max_new_tokens >= self.seq_length[-1]:
            return None, sp, params, "prompt_out_of_range"
        return ids, sp, params, None

    async def _tokens(self, ids, sp):
        """Yields (token, finish_reason) pairs; stub 'http' answers without the engine."""
        if self.engine.settings.stub == "http":
            for i in range(sp.max_new_tokens):
                yield STUB_TOKEN, ("length" if i == sp.max_new_tokens - 1 else None)
            return
        seq, q = self.runner.submit(ids, sp)
        try:
            while True:
                ev = await q.get()
                yield ev.token, ev.finish_reason
                if ev.finish_reason:
                    return
        finally:
            if not seq.is_finished:
                self.runner.abort(seq)

    async def _complete(self, body: dict) -> web.Response:
        ids, sp, params, err = self._prepare(body)
        tokens, reason = [], err
        if err is None:
            async for tok, reason in self._tokens(ids, sp):
                if tok is not None:
                    tokens.append(tok)
        text = api.ERROR_TEXT.get(reason) or self.engine.tokenizer.decode(tokens)
        if api._truthy(params.get("return_full_text", True)) and reason not in api.ERROR_TEXT:
            text = body["inputs"] + text
        tok = self.engine.tokenizer
        out = {"generated_text": text, "finish_reason": reason, "generated_tokens": len(tokens),
               "prefill": [], "seed": sp.seed, "top_tokens": None, "details": None,
               "tokens": [api.token_obj(t, tok.decode_one(t)) for t in tokens]}
        return web.json_response(out)

    async def _stream(self, request: web.Request, body: dict) -> web.StreamResponse:
        ids, sp, params, err = self._prepare(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if err is not None:
            await resp.write(api.stream_line(api.ERROR_TEXT[err], None, err, 0))
            return resp
        full = api._truthy(params.get("return_full_text", True))
        tok, pieces, n, reason = self.engine.tokenizer, [], 0, None
        async for token, reason in self._tokens(ids, sp):
            if token is not None:
                n += 1
                pieces.append(tok.decode_one(token))
                await resp.write(api.stream_line(pieces[-1], token, None if full else reason, n))
        if full or token is None:
            text = (body["inputs"] + "".join(pieces)) if reason not in api.ERROR_TEXT else api.ERROR_TEXT[reason]
            await resp.write(api.stream_line(text, None, reason, n))
        return resp  # the stream ends when the connection closes, as in llm-serving

    # -- probes --------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if self.runner and self.runner.error:
            return web.json_response({"status": "failed", "error": repr(self.runner.error)}, status=500)
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        m = self.engine.metrics()
        m["requests_total"] = self.requests_total
        return web.json_response(m)

    async def step_metrics(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text=f"since must be an integer, got {request.query['since'][:40]!r}")
        return web.json_response({"steps": self.engine.step_records(since), "next": self.engine.step_count})

    async def config(self, request: web.Request) -> web.Response:
        """The serving YAML's keys as this engine runs them: read from its block manager and scheduler,
        not echoed from the file (serving.stacks.readback compares them with the trial's config)."""
        e, blocks, sched = self.engine, self.engine.blocks, self.engine.scheduler
        return web.json_response({
            "pa_config.num_blocks": blocks.num_blocks, "pa_config.block_size": blocks.block_size,
            "model_config.prefill_batch_size": list(sched.prefill_buckets),
            "model_config.decode_batch_size": list(sched.decode_buckets),
            "model_config.max_generate_length": sched.max_generate_length, "model_config.end_token": sched.end_token,
            "model_config.seq_length": list(self.seq_length), "model_config.seq_type": e.settings.seq_type,
            "engine_config.backend": e.settings.backend, "engine_config.stub": e.settings.stub,
            "engine_config.ignore_eos": e.settings.ignore_eos})

    async def get_bs(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.engine.settings.decode_batch_size))

    async def get_request_numbers(self, request: web.Request) -> web.Response:
        m = self.engine.metrics()
        return web.json_response(m["waiting"] + m["running"])

    async def model_info(self, request: web.Request) -> web.Response:
        s = self.engine.settings
        return web.json_response({"docker_label": "serving-tuner-embedded", "max_batch_total_tokens": s.num_blocks * s.block_size,
                                  "max_concurrent_requests": s.decode_batch_size[-1],
                                  "max_input_length": s.seq_length[-1], "max_total_tokens": s.max_generate_length,
                                  "model_dtype": "float32", "model_id": "tiny-llama"})


# Open handlers get this long to finish when the server stops; a stopping trial has finished its
# replay, so waiting longer (aiohttp's default is a minute) only delays the next trial.
SHUTDOWN_S = 2.0


async def serve(config: str, host: str, port: int, port_file: str | None) -> int:
    """Serve until SIGTERM/SIGINT (exit status 0) or until the engine's compute thread dies (1)."""
    cfg = load_serving_yaml(config)
    engine = LLMEngine(engine_settings(cfg))
    stop = asyncio.Event()
    server = EngineServer(engine, cfg.model.seq_length, on_fatal=stop.set)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:  # a taken port, a host not ours: the caller's input, one line (main)
        await runner.cleanup()
        raise ConfigError(f"a free port on a local address must be given; binding {host}:{port} failed: "
                          f"{err.strerror or err}", key="--port") from None
    bound = site._server.sockets[0].getsockname()[1]
    if port_file:  # written atomically so a reader never sees half a number
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(bound))
        os.replace(tmp, port_file)
    print(f"engine ready on http://{host}:{bound} (pid {os.getpid()})", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 1 if server.runner and server.runner.error else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.engine.server", description="serving-tuner embedded serving engine")
    ap.add_argument("--config", required=True, help="serving YAML (llm-serving layout)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error(f"--port: a port in 0..65535 must be given, got {args.port}")
    try:
        return asyncio.run(serve(args.config, args.host, args.port, args.port_file))
    except ConfigError as err:  # a missing or bad config, a taken port: one line and exit 2, like tune
        print(f"{ap.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
