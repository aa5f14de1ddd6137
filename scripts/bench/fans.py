"""The fans of the waiting-room scenario (scripts/bench/waiting_room.py): each is an
asyncio task that joins at its arrival time, polls at the pace the answers ask, and once
admitted holds and confirms; or, without a queue, holds at once. Their requests share a
pool of keep-alive connections split evenly between the API workers. Also the warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uvloop

from scripts.bench import loadgen
from scripts.bench.client import Connection, Reply, request_bytes
from scripts.bench.environment import BenchError
from scripts.bench.loadgen import Recorder, Run
from scripts.bench.scenarios import Context, _sockets

BUSY_TRIES = 3  # sends of one request answered 429/503 (after its Retry-After)
OPENS_AT = 1.0  # the sale opens this far into the arrival window: as the last fan joins
LAG_PROBE_S = 0.005
LAG_REPORTED_S = 0.02
WARM_FANS = 32
WARM_CONNECTIONS = 128
WARM_BURST_POLLS = 10


@dataclass(frozen=True)
class Sizes:
    fans: int
    seats: int
    rate: int  # admit_per_second; arrivals (fans / join_s) are many times this
    join_s: float
    connections: int  # the fans' shared keep-alive pool
    capacity_s: float
    capacity_connections: int
    deadline_s: float


# -- the fans ----------------------------------------------------------------------------


async def _open_evenly(port: int, count: int, pids: list[int]) -> list[Connection]:
    """`count` used keep-alive connections, split evenly between the API workers `pids`,
    as a load balancer in front of them would. uvicorn's workers accept from one shared
    socket, and a burst of connections mostly lands on whichever wakes first (splits of
    350/160 were seen): each connection is opened alone, its worker found from the
    sockets each one holds (/proc), and one landing on a worker that has its share is
    closed and opened again."""
    share = -(-count // len(pids))
    kept: dict[int, list[Connection]] = {pid: [] for pid in pids}
    sockets = {pid: _sockets(pid) for pid in pids}
    for _ in range(20 * count):
        if sum(len(c) for c in kept.values()) >= count:
            break
        (conn,) = await loadgen._open(port, 1, 30.0)
        now = {pid: _sockets(pid) for pid in pids}
        grew = [pid for pid in pids if now[pid] > sockets[pid]]
        owner = grew[0] if len(grew) == 1 else None
        if owner is not None and len(kept[owner]) >= share:
            conn.close()
            await asyncio.sleep(0.002)  # let the worker see the close before counting again
            now = {pid: _sockets(pid) for pid in pids}
        else:
            kept[owner if owner is not None else min(kept, key=lambda p: len(kept[p]))].append(conn)
        sockets = now
    # Interleaved, and used in turn by the pool: each worker gets every other request.
    mixed = [conn for round_ in itertools.zip_longest(*kept.values()) for conn in round_]
    return [conn for conn in mixed if conn is not None][:count]


class Pool:
    """Keep-alive connections shared by the fans, used in turn (first in, first out: a
    stack would keep reusing the few on top, all on one worker); the wait for one is
    measured apart."""

    def __init__(self, conns: list[Connection]) -> None:
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        for conn in conns:
            self.idle.put_nowait(conn)
        self.all = conns
        self.waits: defaultdict[str, list[float]] = defaultdict(list)

    async def send(self, recorder: Recorder, kind: str, data: bytes) -> Reply | None:
        asked = time.perf_counter()
        conn = await self.idle.get()
        self.waits[kind].append(time.perf_counter() - asked)
        try:
            return await recorder.send(conn, kind, data)
        finally:
            self.idle.put_nowait(conn)

    def close(self) -> None:
        for conn in self.all:
            conn.close()


@dataclass
class Sale:
    run: Run = field(default_factory=Run)
    seats: int = 0  # held by 201s
    sold_out_at: float | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    busy: Counter[int] = field(default_factory=Counter)  # 429/503 answers waited out
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, admitted)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (token, queue token)
    pool_waits: dict[str, list[float]] = field(default_factory=dict)  # by kind of request
    per_worker: list[int] = field(default_factory=list)  # the pool's connections
    lags: list[tuple[float, float]] = field(default_factory=list)  # the harness's own loop

    def took(self, seats: int, capacity: int) -> None:
        self.seats += seats
        if self.seats >= capacity and self.sold_out_at is None:
            self.sold_out_at = time.perf_counter()


class Fans:
    def __init__(self, ctx: Context, sizes: Sizes, event_id: int, tokens: list[str]) -> None:
        self.ctx, self.sizes, self.event_id, self.tokens = ctx, sizes, event_id, tokens
        self.sale = Sale()
        self.recorder = Recorder(self.sale.run)
        self.pool: Pool | None = None
        self.rng = random.Random(20261122)

    def _bytes(self, method: str, path: str, token: str, body: bytes = b"", **h: str) -> bytes:
        headers = [(k.replace("_", "-"), v) for k, v in h.items()]
        return request_bytes(method, path, self.ctx.port, body, token, headers=headers)

    async def send(self, kind: str, data: bytes) -> Reply | None:
        """One request, sent again after Retry-After on 429/503 (BUSY_TRIES sends)."""
        assert self.pool is not None
        for _ in range(BUSY_TRIES):
            reply = await self.pool.send(self.recorder, kind, data)
            if reply is None or reply.status not in (429, 503):
                return reply
            self.sale.busy[reply.status] += 1
            await asyncio.sleep(min(5.0, float(reply.retry_after or b"1")))
        return reply

    async def prepare(self) -> None:
        """Just before the first fan arrives."""

    async def run(self, fan: Callable[[str], Any]) -> Sale:
        pids = self.ctx.server.worker_pids()
        before = {pid: _sockets(pid) for pid in pids}
        conns = await _open_evenly(self.ctx.port, self.sizes.connections, pids)
        self.sale.per_worker = [_sockets(pid) - before[pid] for pid in pids]
        self.pool = Pool(conns)
        await self.prepare()
        run = self.sale.run
        lagging = asyncio.ensure_future(self._lag())
        cpu = time.process_time()
        run.started = time.perf_counter()
        tasks: list[asyncio.Task[Any]] = []
        dispatching = asyncio.ensure_future(self._dispatch(fan, tasks))
        deadline = run.started + self.sizes.deadline_s
        await asyncio.wait([dispatching], timeout=self.sizes.deadline_s)
        left = max(0.0, deadline - time.perf_counter())
        done, pending = await asyncio.wait(tasks, timeout=left) if tasks else (set(), set())
        lagging.cancel()
        dispatching.cancel()
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a bug in the harness is not a figure
        run.ended = time.perf_counter()
        run.cpu_seconds = time.process_time() - cpu
        if pending:
            self.sale.outcomes["cut short at the deadline"] += len(pending)
        self.sale.pool_waits = dict(self.pool.waits)
        self.pool.close()
        return self.sale

    async def _lag(self) -> None:
        """How late this process's own event loop runs (it inflates measured latencies)."""
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            late = time.perf_counter() - asked - LAG_PROBE_S
            if late > LAG_REPORTED_S:
                self.sale.lags.append((asked, late))

    async def _dispatch(self, fan: Callable[[str], Any], tasks: list[Any]) -> None:
        """Each fan's task starts at its arrival time (evenly over join_s): starting
        10,000 tasks at once kept this process busy for the first 100-200 ms, and the
        replies it read late looked like slow joins."""
        count = len(self.tokens)
        for i, token in enumerate(self.tokens):
            at = self.sale.run.started + self.sizes.join_s * i / count
            if at > time.perf_counter():
                await asyncio.sleep(at - time.perf_counter())
            tasks.append(asyncio.ensure_future(fan(token)))

    async def buy(self, token: str, headers: dict[str, str]) -> None:
        """Hold 1-4 seats ("any N"), confirm; a 409 with none available means sold out."""
        quantity = self.rng.randint(1, 4)
        body = orjson.dumps({"event_id": self.event_id, "quantity": quantity})
        reply = await self.send("hold", self._bytes("POST", "/bookings/", token, body, **headers))
        if reply is None or reply.status != 201:
            if reply is not None and reply.status == 409 and b'"available":0' in reply.body:
                self.sale.took(self.sizes.seats, self.sizes.seats)  # seen sold out
            self.sale.outcomes[f"hold {reply.status if reply else 'failed'}"] += 1
            return
        self.sale.took(quantity, self.sizes.seats)
        booking = orjson.loads(reply.body)["id"]
        confirmed = await self.send(
            "confirm", self._bytes("POST", f"/bookings/{booking}/confirm", token, b"{}")
        )
        self.sale.outcomes[f"confirm {confirmed.status if confirmed else 'failed'}"] += 1


class Queued(Fans):
    organizer = ""
    opens = 0.0  # perf_counter() time of the sale's start

    async def prepare(self) -> None:
        """The organizer sets the sale's start (`PUT /admin/events/{id}`, as the README
        says) at the end of the arrival window: the fans join before the advertised time,
        as they do for a big on-sale, and their places are drawn when it opens (arrival
        order after the opening is the tests' business: tests/test_waiting_room.py)."""
        ahead = self.sizes.join_s * OPENS_AT
        at = datetime.now(UTC) + timedelta(seconds=ahead)
        body = orjson.dumps({"sale_starts_at": at.isoformat()})
        path = f"/admin/events/{self.event_id}"
        assert self.pool is not None
        reply = await self.pool.send(
            self.recorder, "organizer", self._bytes("PUT", path, self.organizer, body)
        )
        if reply is None or reply.status != 200:
            raise BenchError(f"setting the sale's start failed: {reply}")
        self.opens = time.perf_counter() + ahead
        self.sale.run.samples.clear()  # the organizer's request is not a fan's

    async def fan(self, token: str) -> None:
        path = f"/events/{self.event_id}/queue"
        reply = await self.send("join", self._bytes("POST", path, token))
        if reply is None or reply.status != 200:
            self.sale.outcomes[f"join {reply.status if reply else 'failed'}"] += 1
            return
        status = orjson.loads(reply.body)
        queue_token = status["queue_token"] or ""
        poll = self._bytes("GET", f"{path}/me", token, Queue_Token=queue_token)
        while status["state"] == "waiting" and self.sale.sold_out_at is None:
            await asyncio.sleep(status["poll_after_s"] * self.rng.uniform(0.8, 1.2))
            if self.sale.sold_out_at is not None:
                break
            reply = await self.send("poll", poll)
            if reply is None or reply.status != 200:
                self.sale.outcomes[f"poll {reply.status if reply else 'failed'}"] += 1
                return
            status = orjson.loads(reply.body)
        if status["state"] == "admitted" and self.sale.sold_out_at is None:
            await self.buy(token, {"Admission_Token": status["admission_token"]})
        elif status["state"] == "waiting":
            self.sale.outcomes["still waiting when it sold out"] += 1
            self.sale.waiting.append((token, queue_token))
        else:
            self.sale.outcomes[status["state"]] += 1

    async def watch(self, organizer: str, stop: asyncio.Event) -> None:
        """The organizer's stats every 0.25 s: how many were admitted, when."""
        conn = Connection(self.ctx.port, 30.0)
        data = request_bytes(
            "GET", f"/admin/events/{self.event_id}/queue", self.ctx.port, token=organizer
        )
        try:
            while not stop.is_set():
                reply = await conn.send(data)
                if reply.status == 200:
                    self.sale.samples.append((reply.ended, orjson.loads(reply.body)["admitted"]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            conn.close()


class Direct(Fans):
    async def fan(self, token: str) -> None:
        await self.buy(token, {})


# -- the runs ---------------------------------------------------------------------------


def warm(ctx: Context, event_id: int) -> None:
    """A few customers join, poll, hold and confirm on a small queued event first, then
    poll it 128 at a time for a moment: the first confirm of a process sets up Celery's
    producer, the first hold compiles, Redis connections are opened as requests need
    them, and a cold server's first second is not what is being measured."""
    tokens = [token for _, token in ctx.data.users[-WARM_FANS:]]

    async def one(i: int, conn: Connection, recorder: Recorder) -> None:
        join = request_bytes("POST", f"/events/{event_id}/queue", ctx.port, token=tokens[i])
        poll = request_bytes("GET", f"/events/{event_id}/queue/me", ctx.port, token=tokens[i])
        reply = await recorder.send(conn, "join", join)
        status: dict[str, Any] = {}
        while reply is not None and reply.status == 200:
            status = orjson.loads(reply.body)
            if status["state"] != "waiting":
                break
            await asyncio.sleep(0.05)
            reply = await recorder.send(conn, "poll", poll)
        if reply is None or reply.status != 200 or not status.get("admission_token"):
            raise BenchError(f"warming up: no admission ({reply})")
        body = orjson.dumps({"event_id": event_id, "quantity": 1})
        admitted = [("Admission-Token", status["admission_token"])]
        hold = request_bytes("POST", "/bookings/", ctx.port, body, tokens[i], headers=admitted)
        held = await recorder.send(conn, "hold", hold)
        if held is None or held.status != 201:
            raise BenchError(f"warming up: hold answered {held}")
        path = f"/bookings/{orjson.loads(held.body)['id']}/confirm"
        await recorder.send(
            conn, "confirm", request_bytes("POST", path, ctx.port, b"{}", tokens[i])
        )

    polls = [
        request_bytes("GET", f"/events/{event_id}/queue/me", ctx.port, token=t) for t in tokens
    ]

    async def burst(conns: list[Connection], recorder: Recorder) -> None:
        """Many polls at once, so the processes' Redis pools have grown to their size."""

        async def loop(n: int, conn: Connection) -> None:
            for k in range(WARM_BURST_POLLS):
                await recorder.send(conn, "poll", polls[(n + k) % len(polls)])

        await asyncio.gather(*(loop(n, c) for n, c in enumerate(conns)))

    async def everyone() -> None:
        pids = ctx.server.worker_pids()
        conns = await _open_evenly(ctx.port, WARM_CONNECTIONS, pids)  # every worker warmed
        recorder = Recorder(Run())
        try:
            await asyncio.gather(*(one(i, c, recorder) for i, c in enumerate(conns[:WARM_FANS])))
            await burst(conns, recorder)
        finally:
            for conn in conns:
                conn.close()

    uvloop.run(everyone())


async def queued_sale(fans: Queued, organizer: str) -> Sale:
    stop = asyncio.Event()
    watching = asyncio.ensure_future(fans.watch(organizer, stop))
    try:
        return await fans.run(fans.fan)
    finally:
        stop.set()
        await watching
