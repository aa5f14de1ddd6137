"""A minimal keep-alive HTTP/1.1 client for the load generator (uvloop + httptools).

The load generator shares two cores with the server, so it must be cheap: requests are
pre-encoded bytes, responses are parsed by httptools (the parser uvicorn itself uses),
and nothing else happens per request: about 55 µs of CPU per request on the benchmark
machine, against about 700 µs for httpx.AsyncClient (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import httptools

HOST = "127.0.0.1"


class TransportError(Exception):
    """The connection failed or was closed before a whole response arrived."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    started: float  # time.perf_counter() when the request was written
    ended: float
    cache_hit: bool = False  # the response said `X-Cache: hit`
    retry_after: bytes | None = None  # its `Retry-After` header
    etag: bytes | None = None

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


def request_bytes(
    method: str,
    path: str,
    port: int,
    body: bytes = b"",
    token: str | None = None,
    *,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One encoded request; reuse it as often as it is needed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "User-Agent: evently-bench"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT"):
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    cache_hit: bool
    retry_after: bytes | None
    etag: bytes | None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[_Answer] | None = None
        self.body: list[bytes] = []
        self.cache_hit = False
        self.retry_after: bytes | None = None
        self.etag: bytes | None = None
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(TransportError(f"connection closed: {exc or 'by the server'}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"x-cache" and value == b"hit":
            self.cache_hit = True
        elif lowered == b"etag":
            self.etag = value
        elif lowered == b"retry-after":
            self.retry_after = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = _Answer(
            self.parser.get_status_code(),
            b"".join(self.body),
            self.cache_hit,
            self.retry_after,
            self.etag,
        )
        self.body, self.cache_hit, self.retry_after, self.etag = [], False, None, None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Connection:
    """One keep-alive connection; one request at a time; reconnects when it was closed."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self._protocol: _Protocol | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(_Protocol, HOST, self.port), self.timeout
        )
        self._protocol = protocol

    async def send(self, data: bytes) -> Reply:
        if self._protocol is None or self._protocol.closed:
            await self.connect()
        protocol = self._protocol
        assert protocol is not None
        assert protocol.transport is not None
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        started = time.perf_counter()
        protocol.transport.write(data)
        try:
            answer = await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError:
            self.close()
            raise
        return Reply(
            answer.status,
            answer.body,
            started,
            time.perf_counter(),
            answer.cache_hit,
            answer.retry_after,
            answer.etag,
        )

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
