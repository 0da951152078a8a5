"""A stack written only in the test folder: its own options, config format, wire protocol and
probes. Registered with ``register_stack("toy", ...)``, it runs a whole study without any change
to tuner/ — the plug-in seam, tested.

The "server" is an aiohttp app on a thread of this process (so ``pgids`` is empty): POST /gen
with ``{"text", "n"}`` streams ``n`` lines ``tok`` after ``step_ms`` each; a request whose ``n``
is over ``max_tokens`` of the config gets a 400.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from serving.config.errors import ConfigError
from serving.config.format import ConfigFormat
from serving.probes.base import Probe
from serving.replay.protocol import WireProtocol
from serving.stacks import LaunchSpec, RunningStack, Stack, StackOptions


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_ms: float = Field(gt=0)
    max_tokens: int = Field(ge=1)


class ToyFormat(ConfigFormat):
    """Flat YAML; render replaces top-level keys only."""

    def render(self, base: Path, params: dict[str, Any], out: Path) -> None:
        data = yaml.safe_load(Path(base).read_text())
        for key, value in params.items():
            if key not in data:
                raise ConfigError("tuned key must exist in the base config", base, key)
            data[key] = value
        Path(out).write_text(yaml.safe_dump(data))

    def load(self, path: Path) -> ToyConfig:
        return ToyConfig.model_validate(yaml.safe_load(Path(path).read_text()))

    def check(self, cfg: ToyConfig, max_request_len: int, options: dict[str, Any]) -> list[str]:
        return [] if cfg.step_ms <= options["max_step_ms"] else [
            f"step_ms <= toy.max_step_ms ({options['max_step_ms']}) must hold, got {cfg.step_ms}"]


class ToyProtocol(WireProtocol):
    def route(self, stream: bool) -> str:
        return "/gen"

    def body(self, req, opts) -> dict[str, Any]:
        return {"text": req.prompt, "n": req.output_len}

    async def read_stream(self, resp, rec, now) -> None:
        async for line in resp.content:
            if line.strip() == b"tok":
                t = now()
                rec.first_token = rec.first_token or t
                rec.token_times.append(t)
                rec.n_tokens += 1
        rec.finish_reason = "length"

    def read_full(self, data, rec) -> None:
        rec.n_tokens, rec.finish_reason = int(data["n"]), "length"


class Constant(Probe):
    def __init__(self, name: str, value: float):
        self.name, self.value = name, value

    def sample(self) -> float:
        return self.value


class ToyOptions(StackOptions):
    max_step_ms: float = 50.0
    busy: float = Field(42.0, ge=0, le=100)   # what the utilisation probe reads


class ToyRunning(RunningStack):
    protocol = ToyProtocol()
    utilisation = "toy_busy"
    pgids: list[int] = []

    def __init__(self, cfg: ToyConfig, opts: ToyOptions):
        self.cfg, self.opts = cfg, opts
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def gen(request):
            body = await request.json()
            if body["n"] > self.cfg.max_tokens:
                raise web.HTTPBadRequest(text="n over max_tokens")
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(body["n"]):
                await asyncio.sleep(self.cfg.step_ms / 1000)
                await resp.write(b"tok\n")
            return resp

        async def start():
            app = web.Application()
            app.router.add_post("/gen", gen)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            self._started.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def probes(self) -> list[Probe]:
        # the decoy sorts first by name: the utilisation must still be the stack's own choice
        return [Constant("aaa_decoy", 1.0), Constant("toy_busy", self.opts.busy)]

    def alive(self) -> bool:
        return self._thread.is_alive()

    def log_tail(self, max_chars: int = 4000) -> str:
        return ""

    def _stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class ToyStack(Stack):
    name = "toy"
    options_model = ToyOptions
    config_format = ToyFormat()

    def launch(self, spec: LaunchSpec) -> ToyRunning:
        return ToyRunning(self.config_format.load(spec.config_path), ToyOptions.model_validate(spec.options))
