"""How a request goes over the wire and how its answer is read: one class per serving API.

A stack names its protocol (``RunningStack.protocol``); the replay client (serving.replay.client)
owns the timing, the schedule and the errors, and asks the protocol only for the route, the body
and the parsing. Protocols record into a RequestRecord: ``first_token`` once, one entry in
``token_times`` per generated token, ``n_tokens``, ``finish_reason``; they raise ValueError for
a line they cannot parse (recorded as ``bad_response``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import aiohttp

from serving.workload import RequestRecord, TraceRequest

__all__ = ["ReplayOptions", "WireProtocol", "arrived_lines"]


@dataclass
class ReplayOptions:
    stream: bool = True
    parameters: dict = field(default_factory=lambda: {"do_sample": False, "return_full_text": True})
    request_timeout: float = 600.0
    workers: int | None = None     # sender processes; None: one, or one per CPU for a fast plan


class WireProtocol(abc.ABC):
    """One serving API: route and body of a request, reading of its (streamed) answer."""

    #: finish reasons the server uses to say a request failed
    error_reasons: frozenset[str] = frozenset()

    @abc.abstractmethod
    def route(self, stream: bool) -> str:
        """Path (from the stack's base URL) a request is POSTed to."""

    @abc.abstractmethod
    def body(self, req: TraceRequest, opts: ReplayOptions) -> dict[str, Any]:
        """JSON body asking for exactly ``req.output_len`` new tokens."""

    @abc.abstractmethod
    async def read_stream(self, resp: aiohttp.ClientResponse, rec: RequestRecord,
                          now: Callable[[], float]) -> None:
        """Read a streamed answer to its end, stamping each token with ``now()``."""

    @abc.abstractmethod
    def read_full(self, data: Any, rec: RequestRecord) -> None:
        """Fill ``n_tokens`` and ``finish_reason`` from a non-streamed answer's JSON."""


async def arrived_lines(resp: aiohttp.ClientResponse,
                        now: Callable[[], float]) -> AsyncIterator[tuple[float, list[bytes]]]:
    """A stream's complete lines as they arrive: ``(arrival time, lines)`` once per network read.

    Lines that came in one read share its time, which is when the client saw them; one wake-up
    and one clock call per read, not per line, is what keeps a sender's CPU per request low
    (aiohttp's line iterator costs a coroutine step per line). The last line needs no newline.
    """
    rest = b""
    content = resp.content
    while chunk := await content.readany():
        t = now()
        *lines, rest = (rest + chunk if rest else chunk).split(b"\n")
        if lines:
            yield t, lines
    if rest.strip():
        yield now(), [rest]
