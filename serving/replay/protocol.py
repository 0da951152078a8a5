"""How a request goes over the wire and how its answer is read: one class per serving API.

A stack names its protocol (``RunningStack.protocol``); the replay client (serving.replay.client)
owns the schedule and the errors, and asks the protocol only for the route, the body and the
parsing. Protocols stamp each stream event with ``now()`` as they parse it, never once per network
read (lines that came in one read would share a time, and a client that reads late would see
every token at one instant: docs/metrics.md). They record into a RequestRecord: a content event
through ``RequestRecord.add_chunk`` (``first_token``, ``chunk_times``, ``token_times``,
``n_tokens``), and ``finish_reason``; they raise ValueError for a line they cannot parse
(recorded as ``bad_response``).
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
        """Read a streamed answer to its end, stamping each event with ``now()`` as it is parsed."""

    @abc.abstractmethod
    def read_full(self, data: Any, rec: RequestRecord) -> None:
        """Fill ``n_tokens`` and ``finish_reason`` from a non-streamed answer's JSON."""


async def arrived_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """A stream's complete lines as they arrive, in the batches one network read brings.

    One wake-up per read, not per line, keeps a sender's CPU per request low (aiohttp's line
    iterator costs a coroutine step per line); the caller stamps each line it parses as an event,
    so lines of one read still get their own times. The last line needs no newline.
    """
    rest = b""
    content = resp.content
    while chunk := await content.readany():
        *lines, rest = (rest + chunk if rest else chunk).split(b"\n")
        if lines:
            yield lines
    if rest.strip():
        yield [rest]
