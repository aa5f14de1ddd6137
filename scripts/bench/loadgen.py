"""The asyncio load generator: many clients with per-client logic, or a closed loop.

Used for the scenarios whose clients react to answers (hot-event: a seat of their
choosing, then "any 1" on 409; ga-rush), and instead of wrk when wrk is missing. It runs
on uvloop with the lean client of `scripts.bench.client`, records every request (kind,
status, start, end) and its own CPU time, so its share of the two cores is known.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from scripts.bench.client import Connection, Reply, TransportError, request_bytes

CONNECT_CONCURRENCY = 200  # connections opened at once while setting up
_ID = re.compile(rb'"id":(\d+)')
_USER_ID = re.compile(rb'"user_id":(\d+)')


@dataclass(frozen=True)
class Sample:
    kind: str
    status: int  # 0: no HTTP answer (see Run.transport_errors)
    started: float
    ended: float
    code: str = ""  # the error body's `code` for 4xx answers we care about
    cache_hit: bool = False
    retry_after: bool = False  # the answer carried `Retry-After`

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


@dataclass
class Run:
    started: float = 0.0
    ended: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    exhausted: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def statuses(self, kind: str | None = None) -> dict[int, int]:
        counted = Counter(s.status for s in self.samples if kind is None or s.kind == kind)
        return dict(sorted(counted.items()))


class Recorder:
    """Sends one request on a connection and records it, whatever happens."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def send(self, conn: Connection, kind: str, data: bytes) -> Reply | None:
        started = time.perf_counter()
        try:
            reply = await conn.send(data)
        except (TransportError, OSError, TimeoutError) as exc:
            name = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            self.run.transport_errors[name] += 1
            self.run.samples.append(Sample(kind, 0, started, time.perf_counter()))
            conn.close()
            return None
        code = ""
        if reply.status >= 400:
            found = re.search(rb'"code":"([a-z_]+)"', reply.body)
            code = found.group(1).decode() if found else ""
        self.run.samples.append(
            Sample(
                kind,
                reply.status,
                reply.started,
                reply.ended,
                code,
                reply.cache_hit,
                reply.retry_after is not None,
            )
        )
        return reply


async def _open(port: int, count: int, request_timeout: float) -> list[Connection]:
    """`count` connected and used (GET /health) connections, opened 200 at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    health = request_bytes("GET", "/health", port)

    async def one() -> Connection:
        async with gate:
            conn = Connection(port, request_timeout)
            await conn.connect()
            reply = await conn.send(health)
            if reply.status != 200:
                raise TransportError(f"GET /health answered {reply.status}")
            return conn

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def clients(
    port: int,
    count: int,
    request_timeout: float,
    behaviour: Callable[[int, Connection, Recorder], Awaitable[None]],
) -> Run:
    """`count` clients, each on its own connection (opened beforehand), all let go at once."""
    conns = await _open(port, count, request_timeout)
    run = Run()
    recorder = Recorder(run)
    cpu = time.process_time()
    run.started = time.perf_counter()
    await asyncio.gather(*(behaviour(i, c, recorder) for i, c in enumerate(conns)))
    run.ended = time.perf_counter()
    run.cpu_seconds = time.process_time() - cpu
    for conn in conns:
        conn.close()
    return run


Step = Callable[[Connection, Recorder], Awaitable[bool]]


async def closed_loop(
    port: int, connections: int, seconds: float, request_timeout: float, step: Step
) -> Run:
    """`connections` loops calling `step` until the time is up or a step returns False."""
    conns = await _open(port, connections, request_timeout)
    run = Run()
    recorder = Recorder(run)
    deadline = 0.0

    async def loop(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            if not await step(conn, recorder):
                run.exhausted = True
                return

    cpu = time.process_time()
    run.started = time.perf_counter()
    deadline = run.started + seconds
    await asyncio.gather(*(loop(c) for c in conns))
    run.ended = time.perf_counter()
    run.cpu_seconds = time.process_time() - cpu
    for conn in conns:
        conn.close()
    return run


# -- the steps of the closed-loop scenarios -------------------------------------------


def get_step(port: int, path: str) -> Step:
    data = request_bytes("GET", path, port)

    async def step(conn: Connection, recorder: Recorder) -> bool:
        await recorder.send(conn, "get", data)
        return True

    return step


def hold_step(port: int, requests: Sequence[tuple[int, str, bytes]], confirm: bool) -> Step:
    """Holds from a pool used once each; with `confirm`, each 201 is then confirmed."""
    pool: Iterator[tuple[int, str, bytes]] = iter(requests)
    tokens = {user_id: token for user_id, token, _ in requests}
    empty = b"{}"

    async def step(conn: Connection, recorder: Recorder) -> bool:
        item = next(pool, None)
        if item is None:
            return False
        _, token, body = item
        reply = await recorder.send(
            conn, "hold", request_bytes("POST", "/bookings/", port, body, token)
        )
        if confirm and reply is not None and reply.status == 201:
            found, user = _ID.search(reply.body), _USER_ID.search(reply.body)
            if found and user:
                path = f"/bookings/{found.group(1).decode()}/confirm"
                owner = tokens[int(user.group(1))]
                await recorder.send(
                    conn, "confirm", request_bytes("POST", path, port, empty, owner)
                )
        return True

    return step
