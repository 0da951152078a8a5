"""Test-only stand-in: the real embedded engine server with one fault injected.

  python faulty_server.py --mode MODE --config C --host H --port 0 --port-file F
MODE: ok | oom (fails while allocating at start) | crash (dies after 3 requests) |
      hang (accepts requests, never answers) | garbage (answers streams with non-JSON lines) |
      import_error (a module missing at start) | worker_dies (its worker process dies after 3
      requests, later requests are held open, never answered) | launcher_dies (started by a
      launcher process that dies after 3 requests; the server goes on)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from serving.config.schema import load_serving_yaml
from serving.engine.settings import engine_settings
from serving.engine.engine import LLMEngine
from serving.engine.server import EngineServer

CRASH_AFTER = 3


def middleware(mode: str, worker=None):
    seen = {"n": 0}

    @web.middleware
    async def inject(request: web.Request, handler):
        if not request.path.startswith("/models/"):
            return await handler(request)
        seen["n"] += 1
        if mode == "worker_dies" and seen["n"] > CRASH_AFTER:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
                print(f"worker {worker.pid} died (injected by faulty_server)", flush=True)
            await asyncio.sleep(3600)   # as a server whose worker is gone: the request is never answered
        if mode == "launcher_dies" and seen["n"] == CRASH_AFTER + 1:
            print(f"killing the launcher {os.getppid()} (injected by faulty_server)", flush=True)
            os.kill(os.getppid(), signal.SIGKILL)
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
    if mode == "import_error":
        import importlib
        importlib.import_module("faulty_server_no_such_module")   # Traceback ... ModuleNotFoundError
    worker = None
    if mode == "worker_dies":   # a process of the stack's group that does the work (as llm-serving's agents)
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    server = EngineServer(LLMEngine(engine_settings(cfg)), cfg.model.seq_length)
    app = server.app()
    app.middlewares.append(middleware(mode, worker))
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
    if mode in ("hang", "worker_dies"):  # hung handlers would hold the shutdown; a hang is about requests
        if worker is not None:
            worker.kill()
        os._exit(0)
    await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("--mode", "--config", "--host", "--port-file"):
        ap.add_argument(a, required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    if a.mode == "launcher_dies":   # this process is the launcher: the server runs in a child, same group
        child = subprocess.Popen([sys.executable, __file__, "--mode", "launcher_child", "--config", a.config,
                                  "--host", a.host, "--port", str(a.port), "--port-file", a.port_file])
        signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(0)))
        sys.exit(child.wait())
    mode = "launcher_dies" if a.mode == "launcher_child" else a.mode
    asyncio.run(serve(mode, a.config, a.host, a.port, a.port_file))


if __name__ == "__main__":
    main()
