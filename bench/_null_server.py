"""Null servers for bench/replay.py: answer every request at once in llm-serving's stream format.

Two kinds, each a child process on 127.0.0.1 (port 0) that stamps every arrival
(``time.monotonic()``, system-wide, so the client can compare it with its own clock):

- ``lean``: an asyncio.Protocol speaking just enough HTTP/1.1 (keep-alive, Content-Length bodies,
  one chunked answer per request). Measured here it costs a fraction of the client's CPU per
  request, so the client, not the server, is what the rate ladder finds the limit of.
- ``aiohttp``: aiohttp's web server, as before; it costs about as much CPU per request as the
  client it serves, which on 2 cores halves what either can do.

The parent stops a server by sending anything on the pipe it was given.
"""
from __future__ import annotations

import asyncio
import json
import time

from serving.engine import api

KINDS = ("lean", "aiohttp")


def stream_body(n: int, cache: dict[int, bytes]) -> bytes:
    """``n`` token lines and llm-serving's summary line (return_full_text), as the engine writes them."""
    if n not in cache:
        lines = [api.stream_line(" w", 5, None, i + 1) for i in range(n)]
        cache[n] = b"".join(lines) + api.stream_line("w" * n, None, "length", n)
    return cache[n]


def request_key(body: bytes) -> tuple[int, int]:
    """(request index, max_new_tokens) of a generate body: the index is the prompt's first word."""
    req = json.loads(body)
    return int(req["inputs"].split(None, 1)[0]), int(req["parameters"]["max_new_tokens"])


class LeanHttp(asyncio.Protocol):
    """One connection of the lean server: requests in, whole answers out, in arrival order."""

    def __init__(self, arrivals: list[tuple[int, float]], bodies: dict[int, bytes]):
        self.arrivals, self.bodies = arrivals, bodies
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        t = time.monotonic()
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + size:
                return                                   # the body is still coming
            body, self.buf = self.buf[end + 4:end + 4 + size], self.buf[end + 4 + size:]
            if head.startswith(b"get /arrivals"):
                out = json.dumps(self.arrivals).encode()
                self.arrivals.clear()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                continue
            index, n = request_key(body)
            self.arrivals.append((index, t))
            answer = stream_body(n, self.bodies)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(answer), answer))


async def _lean(conn) -> None:
    arrivals: list[tuple[int, float]] = []
    bodies: dict[int, bytes] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LeanHttp(arrivals, bodies), "127.0.0.1", 0, backlog=4096)
    conn.send(server.sockets[0].getsockname()[1])
    await loop.run_in_executor(None, conn.recv)
    server.close()


async def _aiohttp(conn) -> None:
    from aiohttp import web
    arrivals: list[tuple[int, float]] = []
    bodies: dict[int, bytes] = {}

    async def stream(request: web.Request) -> web.StreamResponse:
        t = time.monotonic()
        index, n = request_key(await request.read())
        arrivals.append((index, t))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(stream_body(n, bodies))
        return resp

    async def take_arrivals(request: web.Request) -> web.Response:
        out = list(arrivals)
        arrivals.clear()
        return web.json_response(out)

    app = web.Application()
    app.router.add_post("/models/llama2/generate_stream", stream)
    app.router.add_get("/arrivals", take_arrivals)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    conn.send(site._server.sockets[0].getsockname()[1])
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # parent says stop
    await runner.cleanup()


def serve(conn, kind: str) -> None:
    """Child-process entry: serve until the parent sends on ``conn`` (it gets the port first)."""
    asyncio.run({"lean": _lean, "aiohttp": _aiohttp}[kind](conn))
