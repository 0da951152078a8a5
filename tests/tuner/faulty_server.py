"""Test-only stand-in: the real embedded engine server with one fault injected.

  python faulty_server.py --mode MODE --config C --host H --port 0 --port-file F
MODE: ok | oom (fails while allocating at start) | crash (dies after 3 requests) |
      hang (accepts requests, never answers) | garbage (answers streams with non-JSON lines)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from serving.config.schema import load_serving_yaml
from serving.engine.settings import engine_settings
from serving.engine.engine import LLMEngine
from serving.engine.server import EngineServer

CRASH_AFTER = 3


def middleware(mode: str):
    seen = {"n": 0}

    @web.middleware
    async def inject(request: web.Request, handler):
        if not request.path.startswith("/models/"):
            return await handler(request)
        seen["n"] += 1
        if mode == "crash" and seen["n"] > CRASH_AFTER:
            print("Fatal Python error: Segmentation fault (injected by faulty_server)", flush=True)
            os._exit(139)
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "garbage":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b"data: {\"data\": [{\"generated_text\": \"x\", \"tokens\": \n")
            await resp.write(b"\x00\x01 not json at all\n")
            return resp
        return await handler(request)

    return inject


async def serve(mode: str, config: str, host: str, port: int, port_file: str) -> None:
    cfg = load_serving_yaml(config)
    if mode == "oom":
        print("RuntimeError: out of memory while allocating the KV cache (injected by faulty_server)", flush=True)
        sys.exit(1)
    server = EngineServer(LLMEngine(engine_settings(cfg)), cfg.model.seq_length)
    app = server.app()
    app.middlewares.append(middleware(mode))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(site._server.sockets[0].getsockname()[1]))
    os.replace(tmp, port_file)
    print(f"faulty engine ({mode}) ready (pid {os.getpid()})", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    if mode == "hang":  # hung handlers would hold the shutdown; a hang is about requests, not stopping
        os._exit(0)
    await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("--mode", "--config", "--host", "--port-file"):
        ap.add_argument(a, required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    asyncio.run(serve(a.mode, a.config, a.host, a.port, a.port_file))


if __name__ == "__main__":
    main()
